# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ssh command line, what ssh's failures mean, and the bundle run by a real python3 (no sshd here:
tests/system/test_connection_ssh.py runs real ones)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from ansible_collections.qemu.vm.plugins.plugin_utils._remote import bundle
from ansible_collections.qemu.vm.plugins.plugin_utils._remote.ssh import SSHHost, explain_ssh_failure

RELAY = 'ansible_collections.qemu.vm.plugins.plugin_utils._remote.relay'


@pytest.fixture(autouse=True)
def private_runtime(tmp_path, monkeypatch):
    monkeypatch.setattr('ansible_collections.qemu.vm.plugins.module_utils._transport.lock.runtime_dir',
                        lambda *args, **kwargs: str(tmp_path / 'qemu-vm'))


def test_default_arguments_share_a_master_and_never_prompt(tmp_path):
    argv = SSHHost('hv1', user='root', port=2222, private_key_file='/k').argv('true', 2.5)
    assert argv[:5] == ['ssh', '-o', 'ControlMaster=auto', '-o', 'ControlPersist=60s']
    assert '-o' in argv and f"ControlPath={tmp_path / 'qemu-vm' / 'ssh'}/%C" in argv
    assert 'BatchMode=yes' in argv and 'ConnectTimeout=3' in argv
    assert argv[-9:] == ['-p', '2222', '-l', 'root', '-i', '/k', '--', 'hv1', 'true']
    assert os.stat(tmp_path / 'qemu-vm' / 'ssh').st_mode & 0o777 == 0o700


def test_user_arguments_come_first_and_may_set_the_control_path():
    argv = SSHHost('hv1', ssh_args='-o ControlPath=none -v').argv('true', 1)
    assert argv[:4] == ['ssh', '-o', 'ControlPath=none', '-v']
    assert not any(arg.startswith('ControlPath=/') for arg in argv)
    assert SSHHost('hv1', user='u', port=22).shown == 'u@hv1:22'


@pytest.mark.parametrize('stderr, status, said', [
    ('Host key verification failed.\n', 255, 'host key is not known or has changed'),
    ('root@hv: Permission denied (publickey).\n', 255, 'SSH authentication was refused'),
    ('ssh: connect to host hv port 22: Connection refused\n', 255, 'cannot reach it over SSH'),
    ('ssh: Could not resolve hostname nohost: Name or service not known\n', 255, 'cannot reach it over SSH'),
    ('sh: 1: python3: not found\n', 127, 'python3 is not found there'),
    ('kex_exchange_identification: read: Connection reset by peer\n', 255, 'the SSH connection failed'),
    ('', 3, 'exited with status 3 and said nothing'),
])
def test_ssh_failures_are_said_in_words_a_user_can_act_on(stderr, status, said):
    assert said in explain_ssh_failure(stderr, status)


def test_the_bundle_carries_what_the_relay_imports():
    sources = bundle.sources(RELAY)
    assert RELAY in sources
    assert 'ansible_collections.qemu.vm.plugins.module_utils._transport.lock' in sources
    assert not any('plugin_utils._inventory' in name for name in sources)


def _run_relay(address, lock='take', stdin=subprocess.DEVNULL):
    """The relay run as ssh would run it, but by this machine's sh and Python."""
    command = bundle.remote_command(RELAY, 'relay', {'address': address, 'lock': lock, 'timeout': 2}, sys.executable)
    return subprocess.run(['sh', '-c', command], stdin=stdin, capture_output=True, timeout=60, check=False)


def test_the_relay_says_why_it_cannot_connect(tmp_path):
    proc = _run_relay(str(tmp_path / 'none.sock'))
    status = json.loads(proc.stdout.decode().splitlines()[0])
    assert proc.returncode == 0
    assert status['error'] == 'SocketMissingError' and 'no such socket' in status['reason']


def test_the_relay_moves_bytes_both_ways_until_stdin_ends(tmp_path):
    path = str(tmp_path / 'echo.sock')
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def echo():
        conn = server.accept()[0]
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    payload = os.urandom(3 * 1024 * 1024)
    command = bundle.remote_command(RELAY, 'relay', {'address': path, 'lock': 'take', 'timeout': 2}, sys.executable)
    proc = subprocess.Popen(['sh', '-c', command], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert json.loads(proc.stdout.readline()) == {'ok': True, 'frozen': False}
        feeder = threading.Thread(target=lambda: proc.stdin.write(payload), daemon=True)
        feeder.start()
        echoed = b''
        while len(echoed) < len(payload):
            chunk = proc.stdout.read1(1 << 20)
            assert chunk, 'the relay ended early'
            echoed += chunk
        assert echoed == payload
        feeder.join(10)
        proc.stdin.close()  # the controller ends the session: the relay lets go and exits
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    thread.join(10)
    server.close()
