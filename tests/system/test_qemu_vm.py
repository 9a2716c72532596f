# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu.vm.qemu_vm run as users run it (the `ansible` command, the collection on its path), on real QEMU.

The VMs boot the tiny test guest by direct kernel boot from an overlay of its data disk, under TCG
(nested KVM does not boot guests on these machines). Related checks share one VM where the state
allows, because a TCG boot costs seconds. Every VM a test starts is killed at teardown, found by
its pid file's path in /proc, whatever the test did.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import time
import uuid

import pytest

from harness.ansible import BIN, ansible_env, run_module
from harness.guest import qga_command, qmp_command

# Hide /dev/kvm from the module (a private mount namespace binds /dev/null over it): KVM unusable.
WITHOUT_KVM = ('unshare', '-m', 'sh', '-c', 'mount --bind /dev/null /dev/kvm && exec "$@"', 'sh')
# Hide the OVMF firmware the same way (an empty tmpfs over its directory): UEFI unavailable.
WITHOUT_OVMF = ('unshare', '-m', 'sh', '-c', 'mount -t tmpfs none /usr/share/OVMF && exec "$@"', 'sh')
APPEND = 'console=ttyS0 panic=-1 qemu_vm.acpid=1'  # the guest powers off on the ACPI button


def qemu_pids(pidfile):
    """Pids of live processes started with `-pidfile pidfile`."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/cmdline', 'rb') as handle:
                argv = handle.read().split(b'\0')
        except OSError:
            continue
        if any(argv[i] == b'-pidfile' and argv[i + 1] == pidfile.encode() for i in range(len(argv) - 1)):
            found.append(int(entry))
    return found


def wait_gone(pid, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as handle:
                if not handle.read():
                    return  # a zombie
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f'process {pid} still alive after {seconds} s')


@pytest.fixture
def new_vm(guest_images, tmp_path_factory):
    """new_vm(**overrides) -> the qemu_vm arguments of a new VM (own name, run dir, disk); all killed at teardown."""
    run_dirs = []

    def make(**overrides):
        home = tmp_path_factory.mktemp('vm')  # short: the sockets' paths must fit in 107 bytes
        args = dict(name=f'qvm-{uuid.uuid4().hex[:8]}', run_dir=str(home / 'run'), accel='tcg', machine='pc',
                    memory='256M', kernel=guest_images.kernel, initrd=guest_images.initrd, append=APPEND,
                    disks=[{'path': str(home / 'disk0.qcow2'), 'backing': guest_images.data_disk}],
                    wait='agent', wait_timeout=120)
        args.update(overrides)
        run_dirs.append(args['run_dir'])
        return args

    yield make
    for run_dir in run_dirs:
        for pid in qemu_pids(os.path.join(run_dir, 'qemu.pid')):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid)


def vm(args, check=False, diff=False, prefix=(), **overrides):
    result = run_module('qemu_vm', dict(args, **overrides), check=check, diff=diff, prefix=prefix)
    assert 'Traceback' not in result['output'], result['output']
    return result


def ok(result):
    assert not result.failed, result['output']
    return result


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def hold(path):
    """A raw QMP client accepted by QEMU (greeting received), kept open: the monitor is taken."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(path)
    received = b''
    while b'"QMP"' not in received:
        chunk = sock.recv(4096)
        assert chunk, 'QEMU closed the monitor before its greeting'
        received += chunk
    return sock


def inventory_hosts(tmp_path):
    path = tmp_path / 'vms.qemu.yml'
    path.write_text(json.dumps({'plugin': 'qemu.vm.qemu', 'timeout': 5}))
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', str(path), '--list'], env=ansible_env(),
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hostvars = json.loads(proc.stdout)['_meta']['hostvars']
    return {name: {k: _plain(v) for k, v in values.items()} for name, values in hostvars.items()}


def _plain(value):
    """ansible-inventory writes values an inventory plugin read as {'__ansible_unsafe': value}."""
    return value['__ansible_unsafe'] if isinstance(value, dict) and set(value) == {'__ansible_unsafe'} else value


def test_lifecycle_from_a_base_image(new_vm, tmp_path):
    args = new_vm()
    del args['machine']  # the default, q35
    run_dir, disk = args['run_dir'], args['disks'][0]['path']

    # check mode: it would start, creating the overlay; nothing is made
    check = ok(vm(args, check=True, diff=True))
    assert check.changed and check['state'] == 'running' and check['created_disks'] == [disk]
    assert not os.path.exists(run_dir) and not os.path.exists(disk)

    started = ok(vm(args))
    assert started.changed and started['created_disks'] == [disk] and not started['recovered']
    assert (started['accel'], started['stopped_by'], started['restart_required']) == ('tcg', None, False)
    pid = started['pid']
    assert qemu_pids(os.path.join(run_dir, 'qemu.pid')) == [pid]
    assert qga_command(started['qga'], 'guest-ping') == {}
    assert qga_command(started['qga'], 'guest-get-host-name')['host-name'] == 'qemuvm-guest'
    assert mode(run_dir) == 0o700 and mode(os.path.join(run_dir, 'vm.json')) == 0o600 and mode(disk) == 0o600
    for sock in (started['qmp'], started['monitor'], started['qga']):
        assert stat.S_ISSOCK(os.lstat(sock).st_mode) and not mode(sock) & 0o007, sock
    assert started['argv'][started['argv'].index('-name') + 1] == args['name'] and '-no-shutdown' not in started['argv']

    again = ok(vm(args))
    assert not again.changed and again['pid'] == pid and again['created_disks'] == []

    # monitor.sock answers while another client holds qmp.sock; the module needs neither to say unchanged
    held = hold(started['qmp'])
    try:
        assert qmp_command(started['monitor'], 'query-status', timeout=10)['status'] == 'running'
        assert not ok(vm(args, timeout=5)).changed
    finally:
        held.close()

    # the inventory lists the VM by its name, with no configuration
    hosts = inventory_hosts(tmp_path)
    assert hosts[args['name']]['qemu_qmp'] == started['qmp'] and hosts[args['name']]['qemu_qga'] == started['qga']
    assert hosts[args['name']]['qemu_pid'] == pid and hosts[args['name']]['qemu_run_dir'] == run_dir

    # the collection's modules work on its disks by id, through the returned sockets
    sockets = {'qmp': started['qmp'], 'qga': started['qga']}
    snap = ok(run_module('qemu_snapshot', dict(sockets, name='first', devices=['disk0'], ram=False)))
    assert snap.changed and snap['devices'] == ['disk0']
    (tmp_path / 'backup').mkdir(mode=0o700)
    backup = ok(run_module('qemu_backup', dict(sockets, dest=str(tmp_path / 'backup'), devices=['disk0'])))
    assert backup.changed and [f['device'] for f in backup['files']] == ['disk0']

    # a memory change: reported (with its diff), not applied
    bigger = dict(args, memory=320)
    pending = ok(vm(bigger, diff=True))
    assert pending.changed and pending['restart_required'] and pending['differences'] == ['memory']
    assert pending['pid'] == pid and 'differs in memory; restart: true or state: restarted applies it' in pending['output']
    assert re.search(r'^-\s*"memory": 256', pending['output'], re.M), pending['output']
    assert re.search(r'^\+\s*"memory": 320', pending['output'], re.M), pending['output']
    assert qmp_command(started['monitor'], 'query-memory-size-summary')['base-memory'] == 256 << 20

    restarted = ok(vm(bigger, restart=True))
    assert restarted.changed and not restarted['restart_required'] and restarted['stopped_by'] == 'guest'
    assert restarted['pid'] != pid and restarted['created_disks'] == []
    assert qmp_command(restarted['monitor'], 'query-memory-size-summary')['base-memory'] == 320 << 20
    assert not ok(vm(bigger)).changed

    # killed: found dead, started again
    os.kill(restarted['pid'], signal.SIGKILL)
    wait_gone(restarted['pid'])
    recovered = ok(vm(bigger))
    assert recovered.changed and recovered['recovered'] and recovered['pid'] != restarted['pid']
    assert qga_command(recovered['qga'], 'guest-ping') == {}

    stopped = ok(vm(bigger, state='stopped', diff=True))
    assert stopped.changed and stopped['stopped_by'] == 'guest' and stopped['pid'] is None
    wait_gone(recovered['pid'])
    with open(os.path.join(run_dir, 'serial.log'), encoding='utf-8', errors='replace') as console:
        assert 'Power down' in console.read()
    assert not ok(vm(bigger, state='stopped')).changed
    assert not ok(vm(bigger, state='running', check=True)).get('recovered')  # stopped on purpose: not a recovery

    gone = ok(vm(bigger, state='absent', remove_disks=True))
    assert gone.changed and gone['removed_disks'] == [disk]
    assert not os.path.exists(run_dir) and not os.path.exists(disk)
    assert not ok(vm(bigger, state='absent')).changed


def test_quit_for_a_guest_ignoring_the_button_seed_and_start_refusals(new_vm, tmp_path):
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    user_data = f'#cloud-config\npassword: not-{uuid.uuid4().hex}\n'
    args = new_vm(append='console=ttyS0 panic=-1', wait='qmp', stop_timeout=3, network='user',
                  hostfwd=[f'tcp:127.0.0.1:{port}-:22'], cloud_init={'user_data': user_data})
    started = ok(vm(args))
    assert started.changed and user_data not in started['output']
    seed = os.path.join(args['run_dir'], 'seed.iso')
    assert mode(seed) == 0o600
    volume = subprocess.run(['isoinfo', '-d', '-i', seed], capture_output=True, text=True, check=True).stdout
    assert 'Volume id: cidata' in volume
    read_back = subprocess.run(['isoinfo', '-i', seed, '-J', '-x', '/user-data'], capture_output=True, text=True, check=True)
    assert read_back.stdout == user_data
    with socket.create_connection(('127.0.0.1', port), timeout=10):
        pass  # QEMU listens on the forwarded port

    # refusals of QEMU itself: its message, and nothing left behind
    for label, extra, words in (('port', {}, 'Could not set up host forwarding rule'),
                                ('disk', {'network': 'none', 'hostfwd': [], 'cloud_init': None,
                                          'disks': args['disks']}, 'Failed to get "write" lock')):
        other = new_vm(**dict(dict(wait='qmp', network='user', hostfwd=[f'tcp:127.0.0.1:{port}-:22']), **extra))
        refused = vm(other)
        assert refused.failed and refused['error_type'] == 'QemuStartError', (label, refused['output'])
        assert words in refused['msg'], (label, refused['msg'])
        assert not os.path.exists(other['run_dir']), label
        if label == 'port':
            assert not os.path.exists(other['disks'][0]['path'])

    # a changed seed is a changed definition
    changed_seed = ok(vm(dict(args, cloud_init={'user_data': user_data + 'ssh_pwauth: true\n'}), check=True))
    assert changed_seed['restart_required'] and changed_seed['differences'] == ['cloud_init']

    stopped = ok(vm(args, state='stopped'))
    assert stopped.changed and stopped['stopped_by'] == 'quit', stopped['output']
    assert 'did not power off within stop_timeout=3 s' in stopped['output']
    wait_gone(started['pid'])
    assert ok(vm(args, state='absent')).changed and not os.path.exists(args['run_dir'])
    assert os.path.exists(args['disks'][0]['path'])  # kept without remove_disks


def test_accel_auto_without_kvm_runs_tcg_and_says_why(new_vm):
    args = new_vm(accel='auto', wait='none')
    started = ok(vm(args, prefix=WITHOUT_KVM))
    assert started['accel'] == 'tcg' and '-accel' in started['argv']
    assert started['argv'][started['argv'].index('-accel') + 1] == 'tcg'
    assert 'accel: auto chose TCG' in started['output'] and 'not a KVM device' in started['output']
    assert ok(vm(args, state='absent', remove_disks=True, stop_timeout=1)).changed


def bad_inputs(home, images):
    file_run_dir = home / 'a-file'
    file_run_dir.write_text('not a directory')
    return [
        ('slash', dict(name='a/b'), 'name', 'no "/"'),
        ('dots', dict(name='..'), 'name', 'no ".."'),
        ('backing', dict(disks=[{'path': str(home / 'new.qcow2'), 'backing': str(home / 'missing.qcow2')}]), 'disks',
         f'the base image {home}/missing.qcow2 does not exist'),
        ('memory', dict(memory='12X'), 'memory', "memory: '12X' is not a size"),
        ('run_dir', dict(run_dir=str(file_run_dir)), 'run_dir', 'exists and is not a directory'),
        ('uefi', dict(firmware='uefi'), 'firmware', 'install the package ovmf'),
        ('kvm', dict(accel='kvm'), 'accel', 'kvm cannot be used on this host: /dev/kvm is not a KVM device'),
    ]


@pytest.mark.parametrize('label', ['slash', 'dots', 'backing', 'memory', 'run_dir', 'uefi', 'kvm'])
def test_bad_input_is_named_and_creates_nothing(new_vm, guest_images, tmp_path, label):
    args = new_vm()
    home = os.path.dirname(args['run_dir'])
    _label, overrides, parameter, words = next(case for case in bad_inputs(tmp_path, guest_images) if case[0] == label)
    before = sorted(os.listdir(tmp_path)), sorted(os.listdir(home))
    result = vm(dict(args, **overrides), prefix={'kvm': WITHOUT_KVM, 'uefi': WITHOUT_OVMF}.get(label, ()))
    assert result.failed and result['error_type'] == 'ParameterError', result['output']
    assert result['parameter'] == parameter and words in result['msg'], result['msg']
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(home))) == before


def test_stopped_and_absent_of_a_missing_vm_are_unchanged(new_vm):
    args = new_vm()
    for state in ('stopped', 'absent'):
        result = ok(vm(args, state=state))
        assert not result.changed and result['state'] == 'absent' and result['pid'] is None
    assert not os.path.exists(args['run_dir'])


def test_a_task_waits_for_the_vm_lock_and_an_untrusted_run_dir_is_refused(new_vm, tmp_path):
    args = new_vm()
    os.mkdir(args['run_dir'], 0o700)
    with open(os.path.join(args['run_dir'], 'lock'), 'w', encoding='ascii') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waited = vm(args, state='stopped', timeout=2)
    assert waited.failed and waited['error_type'] == 'QemuTimeoutError', waited['output']
    assert 'another task holds the lock of this VM' in waited['msg']

    os.chown(args['run_dir'], 65534, 65534)  # another user's directory at the run directory's path
    refused = vm(args)
    assert refused.failed and refused['error_type'] == 'UntrustedPathError' and 'belongs to uid 65534' in refused['msg']
    assert os.listdir(args['run_dir']) == ['lock'] and not os.path.exists(args['disks'][0]['path'])

    victim = tmp_path / 'victim'
    victim.mkdir()
    linked = new_vm(run_dir=str(tmp_path / 'link'))
    os.symlink(victim, linked['run_dir'])
    refused = vm(linked)
    assert refused.failed and refused['error_type'] == 'UntrustedPathError' and 'symbolic link' in refused['msg']
    assert os.listdir(victim) == []


def guest_has(qga, path):
    """Whether `path` exists in the guest (qemu.vm.qemu_guest_exec: test -e)."""
    result = run_module('qemu_guest_exec', {'qga': qga, 'argv': ['test', '-e', path], 'timeout': 60})
    assert 'Traceback' not in result['output'], result['output']
    return result['module_rc'] == 0


@pytest.fixture
def qemu_user():
    """A throwaway system user for QEMU's -runas (removed at teardown)."""
    name = f'qvmrun{uuid.uuid4().hex[:8]}'
    subprocess.run(['useradd', '--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent',
                    '--shell', '/usr/sbin/nologin', name], check=True, capture_output=True, timeout=60)
    yield name
    subprocess.run(['userdel', name], check=False, capture_output=True, timeout=60)


def test_uefi_firmware_and_an_unprivileged_qemu(new_vm, qemu_user):
    args = new_vm(firmware='uefi', user=qemu_user)
    del args['machine']  # q35, OVMF's usual machine
    started = ok(vm(args))
    assert started.changed and started['argv'][started['argv'].index('-runas') + 1] == qemu_user
    # the guest booted through OVMF: the kernel's EFI stub made /sys/firmware/efi; a BIOS boot has none
    assert guest_has(started['qga'], '/sys/firmware/efi')
    with open(f'/proc/{started["pid"]}/status', encoding='ascii') as status:
        uids = next(line.split()[1:] for line in status if line.startswith('Uid:'))
    assert set(uids) == {str(pwd.getpwnam(qemu_user).pw_uid)}, uids  # QEMU dropped root, all four uids
    # its variables store is the VM's own copy, private; the installed template is untouched
    vars_copies = [name for name in os.listdir(args['run_dir']) if 'vars' in name.lower()]
    assert len(vars_copies) == 1, os.listdir(args['run_dir'])
    assert not mode(os.path.join(args['run_dir'], vars_copies[0])) & 0o077
    assert not ok(vm(args)).changed  # an unprivileged QEMU is still found and matched
    stopped = ok(vm(args, state='absent', remove_disks=True))
    assert stopped.changed and stopped['stopped_by'] == 'guest'
    wait_gone(started['pid'])
