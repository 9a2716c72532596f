# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The qemu.vm.qga connection over SSH (ansible_qemu_host): a real sshd as the hypervisor.

ansible-playbook runs as a throwaway user who cannot open the VM's sockets locally (they are in
root's 0700 directories), and logs in to a real sshd (tests/harness/sshd.py) as root, who can: so
each task reaches the guest only through SSH. Checked independently through the harness' own
guest-exec: the copied file's SHA-256 and mode in the guest, the fetched file byte for byte here.
Then each fault: unreachable, authentication refused, unknown host key, no python3 on the
hypervisor, a missing socket there, the connection dropped in the middle of a fetch.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from harness.ansible import ansible_env
from harness.guest import VM
from harness.sshd import SSHD, ControllerUser, keygen

from test_connection_qga import PLAY

MIB = 1024 * 1024


@pytest.fixture(scope='module')
def controller():
    user = ControllerUser()
    yield user
    user.close()


@pytest.fixture(scope='module')
def hypervisor(controller, tmp_path_factory):
    server = SSHD(tmp_path_factory.mktemp('sshd'), controller.public_key).start()
    controller.trust(server)
    yield server
    server.stop()


@pytest.fixture(scope='module')
def python_vm(guest_images, tmp_path_factory):
    machine = VM(tmp_path_factory.mktemp('qga-ssh'), images=guest_images, python=True)
    machine.start()
    yield machine
    machine.stop()


def host_vars(vm, server, controller, **override):
    values = {
        'ansible_connection': 'qemu.vm.qga',
        'ansible_qemu_qga': vm.qga_path,
        'ansible_qemu_host': '127.0.0.1',
        'ansible_qemu_host_port': str(server.port),
        'ansible_qemu_host_user': 'root',
        'ansible_qemu_host_private_key_file': controller.key,
        'ansible_python_interpreter': '/usr/bin/python3',
        'ansible_qemu_qga_timeout': '20',
    }
    values.update(override)
    return values


def write_inventory(controller, name, variables):
    path = os.path.join(controller.home, f'{name}.ini')
    line = 'guest ' + ' '.join(f"{key}='{value}'" for key, value in variables.items())
    return controller.write(path, line + '\n', mode=0o644)


def as_controller(controller, argv, env=None, timeout=600, **kwargs):
    return controller.run(argv, controller.env(ansible_env(env)), timeout=timeout, **kwargs)


def test_the_controller_user_cannot_open_the_socket_locally(python_vm, controller):
    """The premise of every test here: without SSH, this user has no way to the agent."""
    probe = ('import socket, sys\n'
             's = socket.socket(socket.AF_UNIX)\n'
             'try:\n'
             '    s.connect(sys.argv[1])\n'
             'except PermissionError:\n'
             '    print("denied")\n')
    proc = as_controller(controller, ['/usr/bin/python3', '-c', probe, python_vm.qga_path], timeout=60)
    assert proc.stdout.strip() == 'denied', proc.stdout


@pytest.mark.parametrize('pipelining', [False, True], ids=['pipelining-off', 'pipelining-on'])
def test_playbook_in_the_guest_over_ssh(python_vm, hypervisor, controller, pipelining):
    work = controller.mkdir(os.path.join(controller.home, f'play-{pipelining}'))
    data = os.urandom(8 * MIB)
    blob = controller.write(os.path.join(work, 'blob.bin'), '', mode=0o644)
    with open(blob, 'wb') as handle:
        handle.write(data)
    fetched = os.path.join(work, 'fetched.bin')
    guest_dir = '/tmp/ssh-play-{0}'.format('on' if pipelining else 'off')
    inventory = write_inventory(controller, f'play-{pipelining}', host_vars(python_vm, hypervisor, controller))
    playbook = controller.write(os.path.join(work, 'play.yml'), PLAY, mode=0o644)
    extra = json.dumps({'blob': blob, 'fetched': fetched, 'guest_dir': guest_dir})
    proc = as_controller(controller, controller.ansible_argv('ansible-playbook', '-i', inventory, playbook, '-e', extra),
                         env={'ANSIBLE_PIPELINING': str(pipelining)})
    assert proc.returncode == 0, proc.stdout
    assert 'failed=0' in proc.stdout and 'unreachable=0' in proc.stdout
    assert 'Traceback' not in proc.stdout

    code, out, err = python_vm.guest_exec(['sh', '-c', 'sha256sum "$0"; stat -c %a "$0"', guest_dir + '/blob.bin'],
                                          timeout=120)
    assert code == 0, err
    digest, mode = out.decode().split()[0], out.decode().split()[-1]
    assert digest == hashlib.sha256(data).hexdigest()
    assert mode == '640'
    with open(fetched, 'rb') as handle:
        assert handle.read() == data
    assert os.stat(fetched).st_uid == controller.uid


def ping(controller, inventory, timeout=300):
    return as_controller(controller, controller.ansible_argv('ansible', 'guest', '-i', inventory, '-m', 'ansible.builtin.ping'),
                         timeout=timeout)


def _closed_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]  # nothing listens there once this socket is closed


def _unreachable(proc):
    assert proc.returncode != 0, proc.stdout
    assert 'UNREACHABLE!' in proc.stdout, proc.stdout
    assert 'Traceback' not in proc.stdout
    return proc.stdout


# No master connection for these: an existing one would be used, skipping the very check each test is about.
NO_MASTER = '-o ControlPath=none'


def test_unreachable_hypervisor(python_vm, hypervisor, controller):
    port = _closed_port()
    variables = host_vars(python_vm, hypervisor, controller, ansible_qemu_host_port=str(port))
    inventory = write_inventory(controller, 'closed', variables)
    out = _unreachable(ping(controller, inventory))
    assert f'root@127.0.0.1:{port}' in out and 'cannot reach it over SSH' in out and 'Connection refused' in out


def test_authentication_refused(python_vm, hypervisor, controller):
    other = os.path.join(controller.home, 'other_key')
    if not os.path.exists(other):
        keygen(other)
        os.chown(other, controller.uid, controller.gid)
    inventory = write_inventory(controller, 'badkey', host_vars(
        python_vm, hypervisor, controller, ansible_qemu_host_private_key_file=other,
        ansible_qemu_host_ssh_args=NO_MASTER + ' -o IdentitiesOnly=yes'))
    out = _unreachable(ping(controller, inventory))
    assert f'root@127.0.0.1:{hypervisor.port}' in out and 'SSH authentication was refused' in out


def test_unknown_host_key(python_vm, hypervisor, controller):
    empty = controller.write(os.path.join(controller.home, 'empty_known_hosts'), '')
    inventory = write_inventory(controller, 'hostkey', host_vars(
        python_vm, hypervisor, controller, ansible_qemu_host_ssh_args=f'{NO_MASTER} -o UserKnownHostsFile={empty}'))
    out = _unreachable(ping(controller, inventory))
    assert f'root@127.0.0.1:{hypervisor.port}' in out and 'host key is not known' in out


def test_missing_socket_on_the_hypervisor(python_vm, hypervisor, controller):
    path = os.path.join(os.path.dirname(python_vm.qga_path), 'nothing-here.sock')
    inventory = write_inventory(controller, 'missing', host_vars(python_vm, hypervisor, controller, ansible_qemu_qga=path))
    out = _unreachable(ping(controller, inventory))
    assert f'root@127.0.0.1:{hypervisor.port}:{path}' in out and 'no such socket' in out


@pytest.fixture(scope='module')
def hypervisor_without_python(controller, tmp_path_factory):
    """An sshd whose sessions get a PATH without python3: it stands for a host without Python."""
    server = SSHD(tmp_path_factory.mktemp('sshd-nopy'), controller.public_key, extra_config=['SetEnv PATH=/nonexistent']).start()
    controller.trust(server)
    yield server
    server.stop()


def test_hypervisor_without_python3(python_vm, hypervisor_without_python, controller):
    inventory = write_inventory(controller, 'nopython', host_vars(
        python_vm, hypervisor_without_python, controller,
        ansible_qemu_host_ssh_args=NO_MASTER))
    out = _unreachable(ping(controller, inventory))
    assert f'root@127.0.0.1:{hypervisor_without_python.port}' in out and 'python3 is not found there' in out


FETCH_PLAY = '''
- hosts: guest
  gather_facts: false
  tasks:
    - name: A big file in the guest
      ansible.builtin.shell: head -c {size} /dev/urandom > /tmp/big.bin
      args:
        creates: /tmp/big.bin
    - name: Fetch it
      ansible.builtin.fetch:
        src: /tmp/big.bin
        dest: "{dest}"
        flat: true
'''


def _relays_of(server):
    """Pids of the relays the sshd `server` runs (processes under it whose argv is the relay's boot line)."""
    from ansible_collections.qemu.vm.plugins.plugin_utils._remote.bundle import BOOT
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/cmdline', 'rb') as handle:
                argv = handle.read().split(b'\0')
        except OSError:
            continue
        if len(argv) > 2 and argv[1] == b'-c' and argv[2] == BOOT.encode() and _descends_from(int(entry), server.proc.pid):
            found.append(int(entry))
    return found


def _descends_from(pid, ancestor):
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            with open(f'/proc/{pid}/stat', encoding='ascii') as handle:
                pid = int(handle.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def test_connection_dropped_in_the_middle_of_a_fetch(python_vm, hypervisor, controller):
    """The relay killed while a fetch streams: the host is unreachable, and no partial file is left here."""
    work = controller.mkdir(os.path.join(controller.home, 'dropped'))
    dest = os.path.join(work, 'big.bin')
    # The big file first, on its own: only the fetch runs while we watch.
    play = controller.write(os.path.join(work, 'play.yml'), FETCH_PLAY.format(size=32 * MIB, dest=dest), mode=0o644)
    inventory = write_inventory(controller, 'dropped', host_vars(python_vm, hypervisor, controller))
    argv = controller.ansible_argv('ansible-playbook', '-i', inventory, play)
    proc = subprocess.Popen(argv, user=controller.uid, group=controller.gid, extra_groups=[],
                            env=controller.env(ansible_env()), cwd=controller.home,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        partial = []
        while not partial:  # the fetch has begun writing here
            assert time.monotonic() < deadline and proc.poll() is None, 'the fetch never started'
            partial = [name for name in os.listdir(work) if name.endswith('.part')]
            time.sleep(0.05)
        relays = _relays_of(hypervisor)
        assert relays, 'no relay is running for the fetch'
        for pid in relays:
            os.kill(pid, 9)
        out = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, out
    assert 'UNREACHABLE!' in out and f'root@127.0.0.1:{hypervisor.port}:{python_vm.qga_path}' in out, out
    assert 'Traceback' not in out
    assert sorted(os.listdir(work)) == ['play.yml'], 'a partial file was left behind'


PUT_PLAY = '''
- hosts: guest
  gather_facts: false
  tasks:
    - name: Copy a big file in
      ansible.builtin.copy:
        src: "{src}"
        dest: /tmp/put-dropped.bin
        mode: '0644'
'''


def test_connection_dropped_in_the_middle_of_a_put(python_vm, hypervisor, controller):
    """The relay killed once the file has begun to stream into the guest: unreachable, and no file at the
    copy's destination in the guest (the module that moves it into place never ran)."""
    work = controller.mkdir(os.path.join(controller.home, 'put-dropped'))
    src = controller.write(os.path.join(work, 'big.bin'), '', mode=0o644)
    with open(src, 'wb') as handle:
        handle.write(os.urandom(32 * MIB))
    play = controller.write(os.path.join(work, 'play.yml'), PUT_PLAY.format(src=src), mode=0o644)
    inventory = write_inventory(controller, 'put-dropped', host_vars(python_vm, hypervisor, controller))
    proc = subprocess.Popen(controller.ansible_argv('ansible-playbook', '-vvv', '-i', inventory, play),
                            user=controller.uid, group=controller.gid, extra_groups=[],
                            env=controller.env(ansible_env()), cwd=controller.home,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    watchdog = threading.Timer(300, proc.kill)  # the bound on reading its output
    watchdog.start()
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith('PUT ') or ' PUT ' in line:
                relays = _relays_of(hypervisor)
                assert relays, 'no relay is running for the put'
                for pid in relays:
                    os.kill(pid, 9)
                break
        seen.append(proc.communicate(timeout=300)[0])
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    out = ''.join(seen)
    assert proc.returncode != 0, out
    assert 'UNREACHABLE!' in out and f'root@127.0.0.1:{hypervisor.port}:{python_vm.qga_path}' in out, out
    code, listed, _err = python_vm.guest_exec(['sh', '-c', 'ls /tmp/put-dropped.bin 2>&1; true'], timeout=60)
    assert code == 0 and b'No such file' in listed, listed


def test_the_connection_waits_for_the_lock_modules_take_on_the_hypervisor(python_vm, hypervisor, controller):
    """The relay takes the per-socket lock of the SSH user on the hypervisor (root's, as a module run there as
    root): while this test holds it, the connection waits for it, up to its timeout, then says who holds it."""
    from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import SocketLock
    lock = SocketLock(python_vm.qga_path)
    lock.acquire(10)
    try:
        variables = host_vars(python_vm, hypervisor, controller, ansible_qemu_qga_timeout='2')
        inventory = write_inventory(controller, 'locked', variables)
        out = _unreachable(ping(controller, inventory))
    finally:
        lock.release()
    assert 'another qemu.vm task' in out and 'held this socket for longer than timeout=' in out, out
    assert f'root@127.0.0.1:{hypervisor.port}:{python_vm.qga_path}' in out
    proc = ping(controller, inventory)  # once it is free, the same inventory works
    assert proc.returncode == 0 and '"ping": "pong"' in proc.stdout, proc.stdout
