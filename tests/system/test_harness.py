"""Self-tests of the real-VM harness: the guest boots, its agent works, the harness cleans up."""

import os
import socket
import time

import pytest

from harness.guest import VM, running_qemu_pids


def test_guest_boots_and_agent_answers(vm):
    assert vm.is_running()
    assert vm.boot_seconds is not None and vm.boot_seconds < 60
    print(f'boot-to-agent: {vm.boot_seconds:.2f} s')
    assert vm.status() == 'running'
    info = vm.qga('guest-info')
    assert info['version'].startswith('7.')
    assert vm.qga('guest-get-host-name')['host-name'] == 'qemuvm-guest'


def test_guest_exec_reads_data_disk(vm):
    code, out, err = vm.guest_exec(['cat', '/data/hello.txt'])
    assert (code, out, err) == (0, b'hello from qemu.vm guest\n', b'')


def test_guest_exec_reports_failure_and_stdin(vm):
    code, out, err = vm.guest_exec(['sh', '-c', 'cat; echo oops >&2; exit 3'], input=b'in\n')
    assert (code, out, err) == (3, b'in\n', b'oops\n')
    code, out, _err = vm.guest_exec(['id', '-u', 'alice'])
    assert (code, out) == (0, b'1000\n')


def test_disk0_is_a_private_overlay(vm, guest_images):
    disk0 = vm.disks[0]
    assert (disk0['node'], disk0['file_node'], disk0['format']) == ('disk0', 'disk0-file', 'qcow2')
    nodes = {n['node-name']: n for n in vm.qmp('query-named-block-nodes', flat=True)}
    assert nodes['disk0']['backing_file'] == guest_images.data_disk
    assert nodes['disk0']['file'] == os.path.join(vm.workdir, 'disk0.qcow2')


def test_noagent_guest_has_qmp_but_no_agent(vm_noagent):
    assert vm_noagent.qmp('query-status')['status'] == 'running'
    # Let the guest finish booting, so the silence below means "no agent", not "not booted yet".
    deadline = time.monotonic() + 60
    while 'guest agent disabled' not in vm_noagent.console_text():
        assert time.monotonic() < deadline, vm_noagent.console_text()[-2000:]
        time.sleep(0.2)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(3)
    try:
        sock.connect(vm_noagent.qga_path)
        sock.sendall(b'\xff{"execute": "guest-sync-delimited", "arguments": {"id": 1}}')
        deadline = time.monotonic() + 3
        received = b''
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(4096)
            except socket.timeout:
                break
            if not chunk:
                break
            received += chunk
        assert received == b''
    finally:
        sock.close()


def test_extra_disks_are_attached(vm_factory):
    machine = vm_factory(disks=[{'format': 'qcow2', 'size': '16M'},
                                {'format': 'raw', 'size': '8M', 'readonly': True}])
    assert machine.node_names == ['disk0', 'disk1', 'disk2']
    nodes = {n['node-name']: n for n in machine.qmp('query-named-block-nodes', flat=True)}
    for name in ('disk0', 'disk0-file', 'disk1', 'disk1-file', 'disk2', 'disk2-file'):
        assert name in nodes
    assert nodes['disk1']['drv'] == 'qcow2'
    assert nodes['disk2']['drv'] == 'raw'
    assert nodes['disk2']['ro'] is True
    assert nodes['disk1']['ro'] is False
    code, out, _err = machine.guest_exec(['sh', '-c', 'cat /sys/block/vdb/size /sys/block/vdc/ro'])
    assert (code, out) == (0, b'32768\n1\n')


def test_ga_block_list_reaches_the_agent(vm_factory):
    machine = vm_factory(ga_block=['guest-file-open', 'guest-exec'])
    enabled = {c['name']: c['enabled'] for c in machine.qga('guest-info')['supported_commands']}
    assert enabled['guest-file-open'] is False
    assert enabled['guest-exec'] is False
    assert enabled['guest-ping'] is True


def test_stop_leaves_no_process(guest_images, tmp_path):
    machine = VM(tmp_path, images=guest_images, name='stop-test')
    machine.start()
    pid = machine.pid
    assert pid in running_qemu_pids()
    machine.stop()
    assert machine.proc.returncode is not None
    assert pid not in running_qemu_pids()
    with pytest.raises(OSError):
        os.kill(pid, 0)
    machine.stop()  # idempotent


def test_long_workdir_uses_short_sockets(guest_images, tmp_path):
    workdir = tmp_path / ('x' * 90)
    machine = VM(workdir, images=guest_images, agent=False)
    assert len(machine.qmp_path) < 108
    try:
        machine.start()
        assert machine.qmp('query-status')['status'] == 'running'
    finally:
        machine.stop()
    assert not os.path.exists(machine.socket_dir)
