# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The qemu.vm.qemu inventory plugin, run as users run it: ansible-inventory on real VMs.

Other QEMU processes may run on the machine (other test runs): the zero-config runs
assert on this test's VMs only; the `sockets` runs list exactly this test's VMs.

The attacker tests act as another local user would: a throwaway system user (useradd) runs a fake
`qemu-system-x86_64` (Python listening on unix sockets of its own) that claims a real VM's name and
names its sockets, started before the VM (most likely a lower pid) and after it.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from harness.ansible import BIN, ansible_env
from harness.guest import qga_command

from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import SocketLock, open_runtime_dir

BOUND = 2  # the inventory's per-socket timeout in these tests


def _unique(label):
    return f'inv-{uuid.uuid4().hex[:6]}-{label}'


def run_inventory(tmp_path, config, args=()):
    """ansible-inventory --list on a vms.qemu.yml holding `config` -> (inventory, stderr, seconds)."""
    path = tmp_path / 'vms.qemu.yml'
    path.write_text(json.dumps(dict(config, plugin='qemu.vm.qemu')))  # JSON is YAML
    started = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', str(path), '--list'] + list(args),
                          env=ansible_env(), capture_output=True, text=True, timeout=180, check=False)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr
    print(f'ansible-inventory took {seconds:.2f} s')  # informational, never asserted
    return _plain(json.loads(proc.stdout)), proc.stderr, seconds


def _plain(value):
    """ansible-inventory writes values an inventory plugin read as {'__ansible_unsafe': value}."""
    if isinstance(value, dict):
        if set(value) == {'__ansible_unsafe'}:
            return value['__ansible_unsafe']
        return dict((k, _plain(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def group_hosts(inventory, group):
    return set(inventory.get(group, {}).get('hosts', []))


def mentioned(stderr, names):
    """Names of ours that stderr mentions (a warning or error about our VMs; others' VMs may be warned about)."""
    return [name for name in names if name in stderr]


def assert_agent_vm(hostvars, vm):
    assert hostvars['qemu_qmp'] == vm.qmp_path
    assert hostvars['qemu_qga'] == vm.qga_path
    assert hostvars['qemu_name'] == vm.name
    assert hostvars['qemu_uuid'] == vm.uuid
    assert hostvars['qemu_pid'] == vm.pid
    assert hostvars['qemu_status'] == 'running'
    assert re.match(r'^\d+\.\d+\.\d+$', hostvars['qemu_version'])
    assert hostvars['qemu_agent_available'] is True
    assert hostvars['qemu_guest_hostname'] == 'qemuvm-guest'
    assert hostvars['qemu_guest_os']['id'] == 'qemuvm'
    assert hostvars['qemu_guest_os']['pretty_name'] == 'qemu.vm test guest'
    ips = hostvars['qemu_guest_ips']
    assert '10.0.2.15' in ips  # eth0; an IPv6 address from the router advertisement may follow
    assert not [ip for ip in ips if ip.startswith(('127.', '::1', 'fe80:'))]  # loopback, link-local
    assert hostvars['ansible_connection'] == 'qemu.vm.qga'
    assert hostvars['ansible_qemu_qga'] == vm.qga_path


def assert_no_agent_vm(hostvars, vm, status='running'):
    assert hostvars['qemu_qmp'] == vm.qmp_path
    assert hostvars['qemu_qga'] == vm.qga_path  # the port exists; nobody answers on it
    assert hostvars['qemu_name'] == vm.name
    assert hostvars['qemu_uuid'] == vm.uuid
    assert hostvars['qemu_pid'] == vm.pid
    assert hostvars['qemu_status'] == status
    assert hostvars['qemu_agent_available'] is False
    for absent in ('qemu_guest_os', 'qemu_guest_hostname', 'qemu_guest_ips', 'ansible_connection',
                   'ansible_qemu_qga'):
        assert absent not in hostvars


def test_two_vms_with_and_without_agent(vm_factory, tmp_path):
    with_agent = vm_factory(name=_unique('agent'), nic=True)
    without = vm_factory(name=_unique('noagent'), agent=False)
    names = [with_agent.name, without.name]

    # Zero configuration: every visible QEMU process (others' VMs may be listed too).
    inventory, stderr, _seconds = run_inventory(tmp_path, {'timeout': BOUND})
    hostvars = inventory['_meta']['hostvars']
    assert_agent_vm(hostvars[with_agent.name], with_agent)
    assert_no_agent_vm(hostvars[without.name], without)
    assert set(names) <= group_hosts(inventory, 'qemu_running')
    assert with_agent.name in group_hosts(inventory, 'qemu_agent')
    assert without.name not in group_hosts(inventory, 'qemu_agent')
    assert mentioned(stderr, names) == [], stderr

    # The same two through the sockets option: exactly these VMs, and no warning at all.
    sockets = [{'qmp': vm.qmp_path, 'qga': '{dir}/qga.sock'} for vm in (with_agent, without)]
    inventory, stderr, _seconds = run_inventory(tmp_path, {'timeout': BOUND, 'sockets': sockets})
    hostvars = inventory['_meta']['hostvars']
    assert set(hostvars) == set(names)
    assert_agent_vm(hostvars[with_agent.name], with_agent)
    assert_no_agent_vm(hostvars[without.name], without)
    assert stderr.strip() == '', stderr  # no warning, nothing at all


def _hold_qmp(path, timeout=30):
    """A raw client that QEMU has accepted on the monitor (it sent the greeting), kept open."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    received = b''
    while b'"QMP"' not in received:
        chunk = sock.recv(4096)
        assert chunk, 'QEMU closed the monitor before its greeting'
        received += chunk
    return sock


def _stop_agent(vm, timeout=30):
    """SIGSTOP qemu-ga in the guest; return once a sync goes unanswered (the agent is hung)."""
    qga_command(vm.qga_path, 'guest-exec', {'path': '/bin/sh', 'arg': ['-c', 'kill -STOP $(pidof qemu-ga)']},
                timeout=10, expect_reply=False)
    deadline = time.monotonic() + timeout
    while True:
        try:
            qga_command(vm.qga_path, 'guest-ping', timeout=1)
        except (OSError, ValueError):
            return
        assert time.monotonic() < deadline, f'the agent in {vm.name} still answers'


def test_paused_held_and_hung_vms_are_listed_within_the_bound(vm_factory, tmp_path):
    paused = vm_factory(name=_unique('paused'))
    held = vm_factory(name=_unique('held'))
    hung = vm_factory(name=_unique('hung'))
    names = [paused.name, held.name, hung.name]
    paused.qmp('stop')
    assert paused.status() == 'paused'
    _stop_agent(hung)
    holder = _hold_qmp(held.qmp_path)
    agent_lock = SocketLock(held.qga_path)  # as a qemu.vm task using the agent would
    agent_lock.acquire(10)
    try:
        sockets = [{'qmp': vm.qmp_path, 'qga': '{dir}/qga.sock'} for vm in (paused, held, hung)]
        for config in ({'timeout': BOUND}, {'timeout': BOUND, 'sockets': sockets}):
            inventory, stderr, _seconds = run_inventory(tmp_path, config)
            hostvars = inventory['_meta']['hostvars']
            assert mentioned(stderr, names) == [], stderr
            if 'sockets' in config:  # only our VMs: nothing at all on stderr
                assert stderr.strip() == '', stderr

            assert_no_agent_vm(hostvars[paused.name], paused, status='paused')
            assert paused.name in group_hosts(inventory, 'qemu_paused')
            assert paused.name not in group_hosts(inventory, 'qemu_running')

            # Neither the held monitor nor the locked agent answered: listed with what the command line says.
            assert_no_agent_vm(hostvars[held.name], held, status=None)
            assert hostvars[held.name]['qemu_version'] is None
            assert held.name not in group_hosts(inventory, 'qemu_running')

            assert_no_agent_vm(hostvars[hung.name], hung)
            assert hung.name in group_hosts(inventory, 'qemu_running')
            assert hung.name not in group_hosts(inventory, 'qemu_agent')
    finally:
        agent_lock.release()
        holder.close()
    assert paused.status() == 'paused'  # read-only: the inventory resumed nothing


def test_glob_patterns_and_cache(vm_factory, tmp_path):
    vm = vm_factory(name=_unique('cached'), agent=False)
    cache_dir = tmp_path / 'cache'
    # '*mp.sock' matches qmp.sock but not qmp-harness.sock; {0} is what '*' matched ('q').
    config = {
        'timeout': BOUND,
        'sockets': [{'qmp': os.path.join(vm.socket_dir, '*mp.sock'), 'qga': '{dir}/{0}ga.sock'}],
        'cache': True,
        'cache_plugin': 'ansible.builtin.jsonfile',
        'cache_connection': str(cache_dir),
        'cache_timeout': 3600,
        'compose': {'vm_label': 'qemu_name ~ "@" ~ qemu_status'},
        'keyed_groups': [{'key': 'qemu_status', 'prefix': 'state'}],
    }
    inventory, stderr, _seconds = run_inventory(tmp_path, config)
    hostvars = inventory['_meta']['hostvars']
    assert list(hostvars) == [vm.name]
    assert_no_agent_vm(hostvars[vm.name], vm)
    assert hostvars[vm.name]['vm_label'] == vm.name + '@running'
    assert vm.name in group_hosts(inventory, 'state_running')
    assert stderr.strip() == '', stderr  # no warning, nothing at all
    assert os.listdir(str(cache_dir))

    # With the VM gone, the cached inventory still lists it; a refresh does not.
    vm.stop()
    inventory, _stderr, _seconds = run_inventory(tmp_path, config)
    assert list(inventory['_meta']['hostvars']) == [vm.name]
    inventory, _stderr, _seconds = run_inventory(tmp_path, config, ['--flush-cache'])
    assert inventory['_meta'].get('hostvars', {}) == {}


def test_ping_reaches_the_guest_through_the_qga_connection(vm_factory, tmp_path):
    vm = vm_factory(name=_unique('ping'), python=True)
    config = {'plugin': 'qemu.vm.qemu', 'timeout': BOUND,
              'sockets': [{'qmp': vm.qmp_path, 'qga': '{dir}/qga.sock'}],
              # The tiny guest's Python is on its read-only second disk, at the usual path.
              'compose': {'ansible_python_interpreter': "'/usr/bin/python3'"}}
    path = tmp_path / 'vms.qemu.yml'
    path.write_text(json.dumps(config))
    proc = subprocess.run([os.path.join(BIN, 'ansible'), vm.name, '-i', str(path), '-m', 'ansible.builtin.ping'],
                          env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout
    assert f'{vm.name} | SUCCESS' in proc.stdout and '"ping": "pong"' in proc.stdout, proc.stdout


# -- another local user -------------------------------------------------------------

# The fake QEMU: listens on the sockets of FAKE_LISTEN, says 'ready', then accepts and drops every client.
FAKE_QEMU = """
import os, selectors, socket
selector = selectors.DefaultSelector()
for path in os.environ['FAKE_LISTEN'].split(':'):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    selector.register(server, selectors.EVENT_READ)
print('ready', flush=True)
while True:
    for key, _events in selector.select():
        key.fileobj.accept()[0].close()
"""


class Fake:
    def __init__(self, proc, qmp, qga):
        self.proc = proc
        self.pid = proc.pid
        self.qmp = qmp  # the sockets it holds
        self.qga = qga


class Attacker:
    """A throwaway local user and the processes she runs (removed at teardown)."""

    def __init__(self):
        self.name = f'qvmatk{uuid.uuid4().hex[:8]}'
        subprocess.run(['useradd', '--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent',
                        '--shell', '/usr/sbin/nologin', self.name], check=True, capture_output=True, timeout=60)
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.dir = tempfile.mkdtemp(prefix='qvmatk')  # short: unix socket paths are at most 107 bytes
        os.chmod(self.dir, 0o755)
        self.fakes = []

    def start_fake(self, name, qmp=None, qga=None):
        """Her fake QEMU named `name`, holding qmp.sock and qga.sock in a directory of hers; its command
        line names `qmp` and `qga` (by default, those it holds)."""
        own = tempfile.mkdtemp(dir=self.dir)
        os.chown(own, self.uid, self.gid)
        held = [os.path.join(own, 'qmp.sock'), os.path.join(own, 'qga.sock')]
        argv = ['qemu-system-x86_64', '-c', FAKE_QEMU, '-name', name,
                '-qmp', f'unix:{qmp or held[0]},server=on,wait=off',
                '-chardev', f'socket,id=qga0,path={qga or held[1]},server=on,wait=off',
                '-device', 'virtio-serial-pci', '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0']
        proc = subprocess.Popen(argv, executable='/usr/bin/python3', user=self.uid, group=self.gid, extra_groups=[],
                                env={'FAKE_LISTEN': ':'.join(held), 'PATH': '/usr/bin:/bin'}, cwd=own,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        fake = Fake(proc, *held)
        self.fakes.append(fake)
        readable, _w, _x = select.select([proc.stdout], [], [], 30)
        assert readable and proc.stdout.readline() == b'ready\n', 'the fake QEMU did not start'
        with open(f'/proc/{proc.pid}/status') as status:
            uids = [line.split()[1:] for line in status if line.startswith('Uid:')][0]
        assert uids == [str(self.uid)] * 4  # really hers
        return fake

    def close(self):
        for fake in self.fakes:
            fake.proc.kill()
            fake.proc.wait(30)
            fake.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        subprocess.run(['userdel', self.name], check=True, capture_output=True, timeout=60)


@pytest.fixture
def attacker():
    """Set up before vm_factory (name it first), so her VMs stop before userdel."""
    made = Attacker()
    try:
        yield made
    finally:
        made.close()


def _by_pid(hostvars):
    return dict((variables.get('qemu_pid'), host) for host, variables in hostvars.items())


def test_another_users_fake_qemu_gets_no_name_and_no_socket(attacker, vm_factory, tmp_path):
    name = _unique('victim')
    early = attacker.start_fake(name)  # before the VM: most likely the lower pid
    vm = vm_factory(name=name, agent=False)
    late = attacker.start_fake(name, qmp=vm.qmp_path, qga=vm.qga_path)  # names the VM's own sockets
    fakes = (early.pid, late.pid)

    # Zero configuration: her processes are not read at all; the VM keeps its name and its sockets.
    inventory, stderr, _seconds = run_inventory(tmp_path, {'timeout': BOUND})
    hostvars = inventory['_meta']['hostvars']
    assert_no_agent_vm(hostvars[name], vm)
    assert hostvars[name]['qemu_user'] == 'root'
    assert not set(fakes) & set(_by_pid(hostvars)), hostvars
    assert not [host for host in hostvars if host.startswith(name + '-')]
    assert mentioned(stderr, [name, attacker.name]) == [], stderr

    # The sockets option: the VM's monitor belongs to the VM, not to a process that names it; her socket
    # files are left out, with a warning.
    config = {'timeout': BOUND, 'sockets': [{'qmp': vm.qmp_path}, {'qmp': os.path.join(attacker.dir, '*', 'qmp.sock')}]}
    inventory, stderr, _seconds = run_inventory(tmp_path, config)
    hostvars = inventory['_meta']['hostvars']
    assert list(hostvars) == [name]
    assert_no_agent_vm(hostvars[name], vm)  # the agent socket the VM's process holds
    for fake in (early, late):
        assert f'{fake.qmp} belongs to {attacker.name} (uid {attacker.uid}), who is not root, you or in owners: not listed' in stderr


def test_a_trusted_users_process_cannot_take_a_name_or_a_socket(attacker, vm_factory, tmp_path):
    name = _unique('shared')
    early = attacker.start_fake(name)
    vm = vm_factory(name=name, agent=False)
    late = attacker.start_fake(name, qmp=vm.qmp_path, qga=vm.qga_path)

    for owner in (attacker.name, attacker.uid):
        inventory, stderr, _seconds = run_inventory(tmp_path, {'timeout': BOUND, 'owners': [owner]})
        hostvars = inventory['_meta']['hostvars']
        # Three processes claim the name: none gets it, each is marked by its pid, one warning names all.
        assert name not in hostvars
        real = hostvars[f'{name}-pid{vm.pid}']
        assert_no_agent_vm(real, vm)
        assert real['qemu_user'] == 'root'
        first = hostvars[f'{name}-pid{early.pid}']
        assert (first['qemu_qmp'], first['qemu_qga'], first['qemu_user']) == (early.qmp, early.qga, attacker.name)
        assert first['qemu_status'] is None and first['qemu_agent_available'] is False
        # a command line naming the VM's sockets gets neither of them
        second = hostvars[f'{name}-pid{late.pid}']
        assert (second['qemu_qmp'], second['qemu_qga'], second['qemu_user']) == (None, None, attacker.name)
        warning = [line for line in stderr.splitlines() if f'claim the name {name}' in line]
        assert len(warning) == 1, stderr
        assert warning[0].count(f'user {attacker.name}') == 2 and warning[0].count('user root') == 1
        for pid, qmp in ((vm.pid, vm.qmp_path), (early.pid, early.qmp), (late.pid, 'none')):
            assert f'{name}-pid{pid} (pid {pid}, user ' in warning[0] and f'QMP {qmp}, ' in warning[0]

    # The sockets option, the VM's monitor: its owner is the VM's process, whatever else names it.
    config = {'timeout': BOUND, 'owners': [attacker.name], 'sockets': [{'qmp': vm.qmp_path}]}
    inventory, stderr, _seconds = run_inventory(tmp_path, config)
    hostvars = inventory['_meta']['hostvars']
    assert list(hostvars) == [name]
    assert_no_agent_vm(hostvars[name], vm)
    assert stderr.strip() == '', stderr


def test_a_vm_that_runs_as_another_user(attacker, vm_factory, tmp_path):
    """QEMU started by root with -runas: its process is the user's, its sockets root's (made before it dropped root)."""
    vm = vm_factory(name=_unique('runas'), agent=False, extra_args=['-runas', attacker.name])
    with open(f'/proc/{vm.pid}/status') as status:
        assert [line.split()[1:] for line in status if line.startswith('Uid:')][0] == [str(attacker.uid)] * 4
    assert os.stat(vm.qmp_path).st_uid == 0

    inventory, _stderr, _seconds = run_inventory(tmp_path, {'timeout': BOUND})
    assert vm.pid not in _by_pid(inventory['_meta']['hostvars'])  # her process: not trusted by default

    inventory, stderr, _seconds = run_inventory(tmp_path, {'timeout': BOUND, 'owners': [attacker.name]})
    hostvars = inventory['_meta']['hostvars'][vm.name]
    assert_no_agent_vm(hostvars, vm)
    assert hostvars['qemu_user'] == attacker.name
    assert mentioned(stderr, [vm.name]) == [], stderr


def test_a_fifo_at_the_lock_path_does_not_hang_the_inventory(vm_factory, tmp_path):
    """Whatever sits where a task's lock file would be, the inventory neither waits on it nor hangs.

    (Another user plants it where she may write; here root does, at the path the lock would take.)
    """
    vm = vm_factory(name=_unique('fifo'), agent=False)
    lock_path = SocketLock(vm.qmp_path).path
    os.close(open_runtime_dir()[0])  # the private directory tasks make
    os.mkfifo(lock_path)
    try:
        config = {'timeout': BOUND, 'sockets': [{'qmp': vm.qmp_path, 'qga': '{dir}/qga.sock'}]}
        inventory, _stderr, _seconds = run_inventory(tmp_path, config)  # hangs forever if it opens the FIFO
        hostvars = inventory['_meta']['hostvars'][vm.name]
        assert (hostvars['qemu_qmp'], hostvars['qemu_pid'], hostvars['qemu_qga']) == (vm.qmp_path, vm.pid, vm.qga_path)
        assert hostvars['qemu_status'] is None  # the monitor behind a lock path that is a FIFO was not asked
    finally:
        os.unlink(lock_path)
    assert vm.status() == 'running'
