# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Examples that cannot rot: every EXAMPLES block and every guide playbook, run with ansible-playbook.

The examples are taken from where users read them: the EXAMPLES of every module, of the connection
and of the inventory plugin, and every playbook (a ``yaml+jinja`` code block holding a play) of the
guides in docs/docsite/rst/. Each is run as written against real QEMU VMs (TCG) of the tiny test
guest, with only these substitutions, made on the parsed YAML:

* socket paths (``/run/qemu/web1/qmp.sock``, ``/run/qemu-vm/web1/qga.sock``, ...) become the test
  VM's, and host paths (``/srv/backup``, ``/var/lib/qemu``, ...) a temporary directory;
* disk names of the examples (``system``, ``data``) become the test guest's device ids (``vda``,
  ``vdb``), and a backup point id the one the run wrote;
* ``qemu.vm.qemu_vm`` tasks boot the test guest's kernel (the example's cloud image, given as
  ``backing``, becomes the test guest's disk) under TCG, in a private run directory;
* the plays' hosts come from a static inventory: ``localhost`` and ``hypervisor`` run locally,
  ``web1`` is the test VM through the ``qemu.vm.qga`` connection, with the variables the
  ``qemu.vm.qemu`` inventory plugin would give it (``qemu_qmp``, ``qemu_qga``, groups
  ``qemu_running`` and ``qemu_agent``), so a play over "every VM" touches the test VM only.

The guest is prepared the way the examples assume (users ``admin`` and ``app``, ``/srv/app``,
``/var/log/app.log``, a ``systemctl`` that answers), and so is the play's directory (``files/``).
The dbus-vmstate example gets a private bus with a helper (tests/harness/dbus.py).
Examples that cannot run here are listed in NOT_RUN with the reason; a test fails when an example
is neither run nor listed. Examples that take a VM's state somewhere (backups keep dirty bitmaps,
which keep internal snapshots from loading; a power-off) get a VM of their own.
"""

from __future__ import annotations

import ast
import copy
import glob
import json
import os
import re
import subprocess
import textwrap

import pytest
import yaml

from harness.ansible import BIN, REPO, ansible_env, run_module, run_playbook
from harness.dbus import Bus
from harness.guest import VM
from harness.sshd import SSHD, keygen

APPEND = 'console=ttyS0 panic=-1 qemu_vm.acpid=1'
GUEST_SETUP = r'''
set -e
grep -q '^admin:' /etc/passwd || {
  echo 'admin:x:1002:1002:Admin:/home/admin:/bin/sh' >> /etc/passwd
  echo 'admin::20000:0:99999:7:::' >> /etc/shadow
  echo 'admin:x:1002:' >> /etc/group
  echo 'app:x:1003:1003:App:/home/app:/bin/sh' >> /etc/passwd
  echo 'app:!:20000:0:99999:7:::' >> /etc/shadow
  echo 'app:x:1003:' >> /etc/group
}
mkdir -p /home/admin /home/app /srv/app /var/lib /var/log /opt
chown admin:admin /home/admin; chown app:app /home/app
printf '#!/bin/sh\necho indexed "$LANG"\n' > /srv/app/rebuild-index; chmod 0755 /srv/app/rebuild-index
printf '#!/bin/sh\necho active\n' > /usr/bin/systemctl; chmod 0755 /usr/bin/systemctl
echo 'app started' > /var/log/app.log
'''

#: Examples that are not run here, and why.
NOT_RUN = {}

#: Which VM each example runs on, in the order they run (module scope: one VM per name).
#: world: guest operations and internal snapshots; backups: external backups (their bitmaps keep
#: internal snapshots from loading); power: powered off and on; guides: the guides' web1.
RUN = [
    ('module:qemu_vm_info', 'world'),
    ('module:qemu_guest_agent_wait', 'world'),
    ('module:qemu_guest_facts', 'world'),
    ('module:qemu_guest_exec', 'world'),
    ('module:qemu_guest_file', 'world'),
    ('module:qemu_guest_authorized_key', 'world'),
    ('module:qemu_guest_user', 'world'),
    ('module:qemu_guest_fsfreeze', 'world'),
    ('connection:qga', 'world'),
    ('module:qemu_snapshot', 'world'),
    ('module:qemu_snapshot_info', 'world'),
    ('module:qemu_guest_time', 'world'),
    ('inventory:qemu', 'world'),
    ('module:qemu_dbus_vmstate', 'world'),    # last on world: a helper bus beside it (test_dbus_vmstate.py's)
    ('module:qemu_backup', 'backups'),
    ('module:qemu_backup_info', 'backups'),
    ('module:qemu_backup_restore', 'backups'),
    ('module:qemu_guest_power', 'power'),
    ('module:qemu_vm', None),
    ('guide:guide_getting_started:1', None),
    ('guide:guide_getting_started:2', 'guides'),
    ('guide:guide_backups:5', 'guides'),      # the roll back first: a backup's bitmaps would refuse it
    ('guide:guide_backups:1', 'guides'),
    ('guide:guide_backups:2', 'guides'),
    ('guide:guide_backups:3', 'guides'),
    ('guide:guide_backups:4', 'guides'),
    ('guide:guide_backups:6', 'guides'),
    ('guide:guide_guests:1', 'guides'),
    ('guide:guide_guests:2', 'guides'),
    ('guide:guide_guests:3', 'guides'),
    ('guide:guide_inventory:1', 'guides'),
    ('guide:guide_inventory:2', 'guides'),
    ('guide:guide_inventory:3', 'guides'),
]


# -- where the examples are ---------------------------------------------------------------------

def docstring_examples(path):
    for node in ast.parse(open(path, encoding='utf-8').read()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == 'EXAMPLES':
            return node.value.value
    raise AssertionError(f'{path} has no EXAMPLES')


def guide_playbooks(path):
    """The plays of a guide: yaml+jinja code blocks whose YAML is a list of plays."""
    lines = open(path, encoding='utf-8').read().split('\n')
    blocks = []
    for index, line in enumerate(lines):
        if line.strip() != '.. code-block:: yaml+jinja':
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for follow in lines[index + 1:]:
            if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                break
            body.append(follow)
        text = textwrap.dedent('\n'.join(body)).strip('\n') + '\n'
        parsed = yaml.safe_load(text)
        if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict) and 'hosts' in parsed[0]:
            blocks.append(text)
    return blocks


def all_examples():
    found = {}
    for path in sorted(glob.glob(os.path.join(REPO, 'plugins', 'modules', '*.py'))):
        found['module:' + os.path.basename(path)[:-3]] = docstring_examples(path)
    for kind in ('connection', 'inventory'):
        for path in sorted(glob.glob(os.path.join(REPO, 'plugins', kind, '*.py'))):
            found[f'{kind}:' + os.path.basename(path)[:-3]] = docstring_examples(path)
    for path in sorted(glob.glob(os.path.join(REPO, 'docs', 'docsite', 'rst', 'guide_*.rst'))):
        for number, text in enumerate(guide_playbooks(path), 1):
            found[f'guide:{os.path.basename(path)[:-4]}:{number}'] = text
    return found


EXAMPLES = all_examples()


def test_every_example_is_run_or_listed_with_a_reason():
    run = [name for name, _vm in RUN]
    assert len(run) == len(set(run))
    assert sorted(set(run) | set(NOT_RUN)) == sorted(EXAMPLES), 'an example is neither in RUN nor in NOT_RUN'
    assert not set(run) & set(NOT_RUN)
    assert all(len(reason) > 20 for reason in NOT_RUN.values())  # a reason, not a word


# -- substitutions ----------------------------------------------------------------------------

SOCKET = re.compile(r'/run/(?:qemu/|qemu-vm/|vms/)?[\w.-]+/(qmp|qga|monitor)\.sock')
DISK_IDS = {'system': 'vda', 'data': 'vdb'}


def substitute(value, world):
    """`value` (parsed YAML) with sockets and host paths replaced, recursively."""
    if isinstance(value, dict):
        return {k: substitute(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, world) for v in value]
    if not isinstance(value, str):
        return value
    text = SOCKET.sub(lambda m: world['qga'] if m.group(1) == 'qga' else world['qmp'], value)
    for old, new in world['paths'].items():
        text = text.replace(old, new)
    return text


def adapt_task(task, world, guest):
    """Per-module adjustments of one task (after substitute())."""
    for key in ('qemu.vm.qemu_backup', 'qemu.vm.qemu_snapshot', 'qemu.vm.qemu_snapshot_info'):
        args = task.get(key)
        if isinstance(args, dict):
            if isinstance(args.get('devices'), list):
                args['devices'] = [DISK_IDS.get(d, d) for d in args['devices']]
            if args.get('vmstate') in DISK_IDS:
                args['vmstate'] = DISK_IDS[args['vmstate']]
    args = task.get('qemu.vm.qemu_vm')
    if isinstance(args, dict):
        args.update(name=world['vm_name'], run_dir=world['vm_run_dir'], accel='tcg', machine='pc', kernel=guest.kernel,
                    initrd=guest.initrd, append=APPEND, wait_timeout=240)
        args['memory'] = '256M' if str(args.get('memory', '')).upper() != '4G' else '320M'
        args.pop('cpus', None)
        if 'hostfwd' in args:
            args['hostfwd'] = [f'tcp:127.0.0.1:{world["port"]}-:22']
        if args.get('state') == 'stopped':
            args['stop_timeout'] = 60
        for disk in args.get('disks', []):
            if disk.get('backing'):
                disk['backing'] = guest.data_disk
    for key in ('block', 'rescue', 'always'):
        for inner in task.get(key, []):
            adapt_task(inner, world, guest)
    return task


def as_plays(example_id, text, world, guest):
    docs = yaml.safe_load(text)
    if example_id.startswith('module:'):
        docs = [{'name': f'Example of {example_id}', 'hosts': 'localhost', 'gather_facts': False, 'tasks': docs}]
    plays = substitute(docs, world)
    for play in plays:
        for section in ('tasks', 'pre_tasks', 'post_tasks'):
            for task in play.get(section, []):
                adapt_task(task, world, guest)
    return plays


# -- the worlds the examples run in ------------------------------------------------------------

def start_vm(tmp_path_factory, guest_images, name, **kwargs):
    vm = VM(tmp_path_factory.mktemp(name), images=guest_images, python=True,
            disks=[{'format': 'qcow2', 'size': '16M'}], **kwargs)
    vm.start(wait_agent=True, timeout=180)
    rc, _out, err = vm.guest_exec(['sh', '-c', GUEST_SETUP])
    assert rc == 0, err
    return vm


@pytest.fixture(scope='module')
def vms(tmp_path_factory, guest_images):
    started = {}

    def get(name):
        if name not in started:
            started[name] = start_vm(tmp_path_factory, guest_images, name)
        return started[name]

    yield get
    for vm in started.values():
        vm.stop()


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    """The play directory (files/ as the examples expect) and the host paths the examples name."""
    root = tmp_path_factory.mktemp('ex')
    files = root / 'play' / 'files'
    files.mkdir(parents=True)
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'deploy@example', '-f',
                    str(root / 'deploy')], check=True)
    (files / 'deploy.pub').write_text((root / 'deploy.pub').read_text())
    (files / 'app.conf').write_text('listen 127.0.0.1\n')
    subprocess.run(['tar', '-czf', str(files / 'app-1.2.tar.gz'), '-C', str(files), 'app.conf'], check=True)
    for sub in ('backup/web1', 'backup/db1', 'lib/web1', 'lib/images', 'images', 'vartmp', 'vmrun'):
        (root / sub).mkdir(parents=True, mode=0o700)
    (root / 'images' / 'seed.img').write_bytes(os.urandom(4096))
    return root


def world_of(vm, workdir):
    root = str(workdir)
    return {
        'qmp': vm.qmp_path if vm else '', 'qga': vm.qga_path if vm else '', 'vm': vm,
        'paths': {'/srv/backup': f'{root}/backup', '/var/lib/qemu': f'{root}/lib', '/srv/images': f'{root}/images',
                  '/var/tmp/': f'{root}/vartmp/', '/srv/data': '/data'},
        'vm_run_dir': f'{root}/vmrun/web1', 'vm_name': f'qvm-examples-{os.getpid()}', 'port': 20000 + os.getpid() % 20000,
    }


def inventory(world, workdir):
    # become: true of the plays is su to root here (the test machine has no sudo)
    local = {'ansible_connection': 'local', 'ansible_python_interpreter': os.path.join(BIN, 'python'),
             'ansible_become_method': 'ansible.builtin.su'}
    web1 = {'ansible_connection': 'qemu.vm.qga', 'ansible_qemu_qga': world['qga'],
            'ansible_python_interpreter': '/usr/bin/python3', 'ansible_pipelining': True,
            'qemu_qmp': world['qmp'], 'qemu_qga': world['qga'], 'qemu_agent_available': True, 'qemu_status': 'running'}
    data = {'all': {'hosts': {'localhost': local, 'hypervisor': local},
                    'children': {'qemu_running': {'hosts': {'web1': web1}}, 'qemu_agent': {'hosts': {'web1': None}}}}}
    path = workdir / 'play' / 'inventory.yml'
    path.write_text(yaml.safe_dump(data))
    return str(path)


EXTRA_VARS = {
    'vault_root_password_hash': '$6$examples$2ovz9Yp8yv/4XvGchEt1fC6sKAYgGMC0wnONo0lB.DOBCNObcRiZxyDhDF8KJYxRK1bbBzTSu6Sj4z/E2ZQGw.',
    'vault_admin_password_hash': '$6$examples$2ovz9Yp8yv/4XvGchEt1fC6sKAYgGMC0wnONo0lB.DOBCNObcRiZxyDhDF8KJYxRK1bbBzTSu6Sj4z/E2ZQGw.',
    'tester_password': 'tester-password',
}


def play(example_id, world, workdir, guest_images):
    plays = as_plays(example_id, EXAMPLES[example_id], world, guest_images)
    path = workdir / 'play' / (example_id.replace(':', '_') + '.yml')
    path.write_text(yaml.safe_dump(plays, sort_keys=False, width=1000))
    proc = run_playbook(str(path), EXTRA_VARS, args=['-i', inventory(world, workdir)], cwd=str(workdir / 'play'),
                        timeout=900)
    assert proc.returncode == 0, f'{example_id} failed:\n{path.read_text()}\n{proc.stdout[-6000:]}'
    return proc


# -- running them ------------------------------------------------------------------------------

def first_point(dest):
    chains = sorted(os.listdir(dest))
    with open(os.path.join(dest, chains[0], 'manifest.json'), encoding='utf-8') as handle:
        return json.load(handle)['points'][0]['point']


def loopback_hypervisors(entries, sshd, key, known_hosts):
    """The example's hypervisors, each remote one pointed at the test's sshd on 127.0.0.1 (no traffic leaves
    the machine; the names, and so qemu_hypervisor and the groups, stay the example's)."""
    ssh_args = f'-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes'
    out = []
    for entry in entries:
        if entry == 'localhost':
            out.append(entry)
            continue
        if isinstance(entry, str):
            user, _at, host = entry.rpartition('@')
            entry = {'host': host, 'user': user or 'root'}
        out.append(dict(entry, host='127.0.0.1', port=sshd.port, private_key_file=key, ssh_args=ssh_args,
                        name=entry.get('name') or entry['host']))
    return out


def run_inventory_examples(world, workdir):
    configs = [c for c in yaml.safe_load_all(EXAMPLES['inventory:qemu']) if c]
    assert len(configs) == 4, configs
    key = str(workdir / 'hypervisor_key')
    sshd = SSHD(workdir / 'sshd', keygen(key)).start()
    known_hosts = workdir / 'known_hosts'
    known_hosts.write_text(sshd.known_hosts_line() + '\n')
    try:
        for number, config in enumerate(configs, 1):
            run_inventory_example(number, config, world, workdir, (sshd, key, str(known_hosts)))
    finally:
        sshd.stop()


def run_inventory_example(number, config, world, workdir, ssh):
    config = substitute(config, world)
    for entry in config.get('sockets', []):
        # the test VM's sockets, still as a glob (the harness' own monitor, qmp-harness.sock, does not match)
        entry['qmp'] = os.path.dirname(world['qmp']) + '/q*p.sock'
        entry['qga'] = '{dir}/qga.sock'
    config.pop('owners', None)  # the example's user `qemu` does not exist here; root's VMs are trusted anyway
    if config.get('cache_connection'):
        config['cache_connection'] = str(workdir / 'inventory-cache')
    if config.get('hypervisors'):
        config['hypervisors'] = loopback_hypervisors(config['hypervisors'], *ssh)
    path = workdir / f'vms{number}.qemu.yml'
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', str(path), '--list'], env=ansible_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hostvars = json.loads(proc.stdout)['_meta']['hostvars']
    listed = [plain(v.get('qemu_qmp')) for v in hostvars.values()]
    seen_from = sorted(set(plain(v.get('qemu_hypervisor')) for v in hostvars.values()
                           if plain(v.get('qemu_qmp')) == world['qmp']))
    if config.get('hypervisors'):  # the test VM, seen from every hypervisor the example names
        names = ['localhost' if h == 'localhost' else h['name'] for h in config['hypervisors']]
        assert seen_from == sorted(names), hostvars
    elif config.get('sockets'):
        assert listed == [world['qmp']], hostvars
    else:  # every VM of the host, the test VM among them
        assert world['qmp'] in listed, hostvars


def plain(value):
    """A value of ansible-inventory's JSON (2.19 wraps strings as {'__ansible_unsafe': ...})."""
    return value.get('__ansible_unsafe') if isinstance(value, dict) else value


@pytest.mark.parametrize('example_id, vm_name', RUN, ids=[name for name, _vm in RUN])
def test_example_runs(example_id, vm_name, vms, workdir, guest_images):
    vm = vms(vm_name) if vm_name else None
    world = world_of(vm, workdir)
    if example_id == 'inventory:qemu':
        run_inventory_examples(world, workdir)
        return
    if example_id == 'module:qemu_backup_restore':
        world['paths']['20261201T004512Z'] = first_point(str(workdir / 'backup' / 'web1'))
    if example_id == 'module:qemu_snapshot':
        run_snapshot_examples(world, workdir, guest_images)
        return
    if example_id == 'module:qemu_dbus_vmstate':
        with Bus(workdir / 'bus') as bus:
            bus.helper('net0', state=b'net state')
            world['paths']['/run/qemu/web1/helpers.bus'] = bus.socket_path
            play(example_id, world, workdir, guest_images)
        return
    if example_id == 'module:qemu_guest_power':
        run_power_examples(world, workdir, guest_images)
        return
    try:
        play(example_id, world, workdir, guest_images)
    finally:
        if vm_name is None:  # a VM the example started with qemu.vm.qemu_vm: gone, whatever happened
            removed = run_module('qemu_vm', {'name': world['vm_name'], 'run_dir': world['vm_run_dir'],
                                             'state': 'absent', 'stop_timeout': 5})
            assert not removed.failed, removed['output']


def run_snapshot_examples(world, workdir, guest_images):
    """Everything on the running VM, then the offline revert once QEMU has quit."""
    tasks = yaml.safe_load(EXAMPLES['module:qemu_snapshot'])
    online = [t for t in tasks if 'images' not in t.get('qemu.vm.qemu_snapshot', {})]
    offline = [t for t in tasks if 'images' in t.get('qemu.vm.qemu_snapshot', {})]
    assert len(offline) == 1
    EXAMPLES['module:qemu_snapshot#online'] = yaml.safe_dump(online, sort_keys=False)
    play('module:qemu_snapshot#online', world, workdir, guest_images)
    vm = world['vm']
    disks = [d['path'] for d in vm.disks]
    vm.stop()
    world['paths'].update({f'{workdir}/lib/web1/system.qcow2': disks[0], f'{workdir}/lib/web1/data.qcow2': disks[1]})
    EXAMPLES['module:qemu_snapshot#offline'] = yaml.safe_dump(offline, sort_keys=False)
    play('module:qemu_snapshot#offline', world, workdir, guest_images)
    info = subprocess.run(['qemu-img', 'snapshot', '-l', disks[1]], capture_output=True, text=True, check=True)
    assert 'nightly-disks' in info.stdout
    vm.start(wait_agent=True, timeout=180)  # the next examples use it again


def run_power_examples(world, workdir, guest_images):
    """Each power example from a running guest (they are alternatives, not a sequence)."""
    vm = world['vm']
    for index, task in enumerate(yaml.safe_load(EXAMPLES['module:qemu_guest_power'])):
        if vm.status() != 'running':
            vm.qmp('system_reset')
            vm.qmp('cont')
            vm.wait_agent(timeout=180)
        name = f'module:qemu_guest_power#{index}'
        EXAMPLES[name] = yaml.safe_dump([task], sort_keys=False)
        play(name, world, workdir, guest_images)
    assert vm.status() in ('shutdown', 'running'), vm.status()


def test_substitutions_leave_no_example_path_behind(workdir, guest_images):
    world = world_of(None, workdir)
    world.update(qmp='/tmp/t/qmp.sock', qga='/tmp/t/qga.sock')
    world['paths']['/run/qemu/web1/helpers.bus'] = '/tmp/t/bus'  # as the dbus-vmstate example's run does
    text = json.dumps([as_plays(name, EXAMPLES[name], world, guest_images) for name, _vm in RUN
                       if not name.startswith('inventory:')])
    for leftover in ('/srv/backup', '/var/lib/qemu', '/run/qemu/', '/run/qemu-vm/web1/', 'debian-12-genericcloud'):
        assert leftover not in text, leftover
    assert copy.deepcopy(DISK_IDS) == {'system': 'vda', 'data': 'vdb'}
