# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The transport against a real QEMU and the real qemu-ga inside the tiny guest."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import QGASession, wait_for_agent
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession


def dirty_client(path, payloads, read_nothing=True):
    """A careless earlier client: writes, never reads its replies, goes away."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    for payload in payloads:
        sock.sendall(payload)
        time.sleep(0.2)  # let the agent act on it, so its replies are pending when we leave
    sock.close()


def test_session_after_half_request_and_unread_reply(vm):
    dirty_client(vm.qga_path, [
        b'{"execute": "guest-info"}',                      # its reply is never read
        b'{"execute": "guest-sync-delimited", "arguments": {"id": 7}}',  # a stale 0xFF-delimited reply
        b'{"execute": "guest-get-osinfo", "argu',          # a half-written request
    ])
    with QGASession(vm.qga_path, timeout=10) as qga:
        assert qga.execute('guest-ping') == {}
        info = qga.execute('guest-info')
    assert 'version' in info and info['supported_commands']


def test_garbage_and_invalid_utf8_then_clean_session(vm):
    dirty_client(vm.qga_path, [b'\x80\x81 }}} not json [[', b'\xc3\x28 {"execute": '])
    with QGASession(vm.qga_path, timeout=10) as qga:
        assert qga.execute('guest-ping') == {}


def test_many_sessions_in_a_row_on_a_dirty_channel(vm):
    for i in range(10):
        if i % 3 == 0:
            dirty_client(vm.qga_path, [b'{"execute": "guest-info"}'])
        with QGASession(vm.qga_path, timeout=10) as qga:
            assert qga.execute('guest-ping') == {}


def test_agent_not_running_is_classified_within_timeout(vm_noagent):
    start = time.monotonic()
    with pytest.raises(errors.AgentNotRespondingError) as caught:
        QGASession(vm_noagent.qga_path, timeout=3).open()
    assert time.monotonic() - start < 5
    assert vm_noagent.qga_path in str(caught.value)
    # QEMU itself is fine: the failure is the agent's, not the monitor's.
    with QMPSession(vm_noagent.qmp_path, timeout=5) as qmp:
        assert qmp.run_state() == 'running'


def test_wait_for_agent_times_out_on_agentless_guest(vm_noagent):
    start = time.monotonic()
    with pytest.raises(errors.QemuTimeoutError) as caught:
        wait_for_agent(vm_noagent.qga_path, timeout=3, attempt_timeout=1)
    assert time.monotonic() - start < 6
    assert 'guest agent' in str(caught.value)


def test_wait_for_agent_answers_on_running_guest(vm):
    assert wait_for_agent(vm.qga_path, timeout=10) < 10


def test_missing_socket(tmp_path):
    with pytest.raises(errors.SocketMissingError):
        QMPSession(str(tmp_path / 'nope.sock'), timeout=2).open()


HOLDER = textwrap.dedent('''
    import sys, time
    from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession
    with QMPSession(sys.argv[1], timeout=10) as qmp:
        print(qmp.run_state(), flush=True)
        time.sleep(float(sys.argv[2]))
''')


def hold_monitor(path, seconds):
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, '-c', HOLDER, path, str(seconds)], stdout=subprocess.PIPE,
                            universal_newlines=True, env=env)
    assert proc.stdout.readline().strip() == 'running'
    return proc


def test_busy_monitor_waits_its_turn(vm):
    holder = hold_monitor(vm.qmp_path, 1.5)
    try:
        start = time.monotonic()
        with QMPSession(vm.qmp_path, timeout=15) as qmp:
            assert qmp.run_state() == 'running'
        assert time.monotonic() - start >= 1.0
    finally:
        holder.wait()


def test_busy_monitor_gives_up_after_timeout(vm):
    holder = hold_monitor(vm.qmp_path, 5)
    try:
        with pytest.raises(errors.SocketBusyError):
            QMPSession(vm.qmp_path, timeout=0.5).open()
    finally:
        holder.kill()
        holder.wait()
    # and the monitor is usable again once the holder is gone
    with QMPSession(vm.qmp_path, timeout=10) as qmp:
        assert qmp.run_state() == 'running'


def test_qmp_events_and_version_from_real_qemu(vm):
    version = subprocess.run(['qemu-system-x86_64', '--version'], stdout=subprocess.PIPE,
                             text=True, check=True).stdout
    with QMPSession(vm.qmp_path, timeout=10) as qmp:
        assert qmp.version_string in version
        with qmp.events('STOP', 'RESUME') as watcher:
            qmp.execute('stop')
            stop = watcher.wait(lambda e: e['event'] == 'STOP', 5)
            qmp.execute('cont')
            resume = watcher.wait(lambda e: e['event'] == 'RESUME', 5)
        assert resume['timestamp']['seconds'] >= stop['timestamp']['seconds']
        assert qmp.run_state() == 'running'
    assert json.dumps(stop)


def hold_and_fill_backlog(path):
    """Hold the monitor with a plain client (not ours: no host lock) and fill its listen backlog.

    QEMU serves one client; further connects queue in the backlog until it is full, and then
    a unix-socket connect() fails with EAGAIN. Returns the sockets, holder first.
    """
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    holder.settimeout(10)
    holder.connect(path)
    assert b'"QMP"' in holder.recv(65536)  # served: the greeting
    queued = []
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            break
        queued.append(sock)
        assert len(queued) < 256, 'the listen backlog never filled'
    return [holder] + queued


def test_full_backlog_waits_for_the_holder(vm):
    from harness.ansible import run_module  # pylint: disable=import-outside-toplevel
    sockets = hold_and_fill_backlog(vm.qmp_path)
    # Released while the task waits; a margin of seconds both ways on a loaded 2-core machine:
    # the task starts (ansible, the module) within a few seconds and its timeout is 60 s.
    release = threading.Timer(3.0, lambda: [s.close() for s in sockets])
    release.start()
    try:
        result = run_module('qemu_vm_info', {'qmp': vm.qmp_path, 'timeout': 60})
    finally:
        release.cancel()
        for sock in sockets:
            sock.close()
    assert not result.failed, result['output']
    assert result['status'] == 'running'


def test_full_backlog_at_the_deadline_says_the_socket_is_held(vm):
    from harness.ansible import run_module  # pylint: disable=import-outside-toplevel
    sockets = hold_and_fill_backlog(vm.qmp_path)
    try:
        start = time.monotonic()
        result = run_module('qemu_vm_info', {'qmp': vm.qmp_path, 'timeout': 3})
        elapsed = time.monotonic() - start
    finally:
        for sock in sockets:
            sock.close()
    assert result.failed and result['error_type'] == 'SocketBusyError', result['output']
    assert 'another client holds this socket' in result['msg'] and '3 s' in result['msg']
    assert elapsed >= 3.0  # it waited its timeout instead of failing at once
    with QMPSession(vm.qmp_path, timeout=30) as qmp:
        assert qmp.run_state() == 'running'
