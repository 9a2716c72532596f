# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest_exec paths the real guest cannot produce on demand (a kill that fails, odd replies).
The peer is an in-process stand-in for QGASession; the real behaviour is covered in
tests/system/test_guest_exec.py and test_connection_qga.py."""

from __future__ import annotations

import base64

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._guest import process as gx
from ansible_collections.qemu.vm.plugins.module_utils._guest.errors import ExecTimeoutError, ProgramNotFoundError
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import wait_until
from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    QemuTimeoutError,
    QemuVMError,
)
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import Deadline, classify_command_error


def b64(data):
    return base64.b64encode(data).decode('ascii')


class FakeAgent:
    """guest-exec starts pids from 100; `statuses` gives each pid's guest-exec-status replies in turn."""

    def __init__(self, statuses=None, exec_error=None, kill_works=True):
        self.statuses = statuses or {}
        self.exec_error = exec_error
        self.kill_works = kill_works
        self.sent = []
        self.next_pid = 100
        self.killed = set()

    def execute(self, command, arguments=None, timeout=None):
        self.sent.append((command, arguments))
        if command == 'guest-exec':
            if self.exec_error is not None:
                raise self.exec_error
            pid = self.next_pid
            self.next_pid += 1
            if arguments['path'] == '/bin/sh' and arguments['arg'][1] == gx._KILL_TREE:
                if self.kill_works:
                    self.killed.add(int(arguments['arg'][-1]))
                self.statuses[pid] = [{'exited': True, 'exitcode': 0}]
            return {'pid': pid}
        if command == 'guest-exec-status':
            pid = arguments['pid']
            if pid in self.killed:
                return {'exited': True, 'signal': 9, 'out-data': b64(b'partial')}
            replies = self.statuses.get(pid) or [{'exited': False}]
            return replies.pop(0) if len(replies) > 1 else replies[0]
        raise AssertionError(command)


def no_sleep(_seconds):
    pass


def test_run_collects_output_and_flags():
    agent = FakeAgent({100: [{'exited': False}, {'exited': True, 'exitcode': 3, 'out-data': b64(b'out\xff'),
                                                 'err-data': b64(b'err'), 'out-truncated': True}]})
    result = gx.GuestExec(agent, sleep=no_sleep).run(['prog', 'a'], 5, env={'B': '2', 'A': '1'}, stdin=b'in')
    assert (result.rc, result.stdout, result.stderr) == (3, b'out\xff', b'err')
    assert result.stdout_truncated and not result.stderr_truncated
    assert result.as_dict()['stdout'] == 'out\ufffd'
    assert agent.sent[0] == ('guest-exec', {'path': 'prog', 'arg': ['a'], 'capture-output': True,
                                            'env': ['A=1', 'B=2'], 'input-data': b64(b'in')})


def test_signal_gives_negative_rc():
    agent = FakeAgent({100: [{'exited': True, 'signal': 15}]})
    assert gx.GuestExec(agent, sleep=no_sleep).run(['prog'], 5).rc == -15


def test_timeout_kills_and_reports_partial_output():
    agent = FakeAgent()
    with pytest.raises(ExecTimeoutError) as info:
        gx.GuestExec(agent, sleep=no_sleep).run(['sleep', '99'], 0.05)
    assert info.value.killed and info.value.pid == 100
    assert 'timed out after 0.05 s' in str(info.value) and 'killed in the guest' in str(info.value)
    assert info.value.details()['stdout'] == 'partial'
    kill = [args for command, args in agent.sent if command == 'guest-exec'][1]
    assert kill['arg'][-1] == '100' and kill['capture-output'] is False


def test_timeout_when_the_kill_fails():
    agent = FakeAgent(kill_works=False)
    runner = gx.GuestExec(agent, sleep=no_sleep)
    original = gx.KILL_GRACE
    gx.KILL_GRACE = 0.05
    try:
        with pytest.raises(ExecTimeoutError) as info:
            runner.run(['sleep', '99'], 0.05)
    finally:
        gx.KILL_GRACE = original
    assert not info.value.killed
    assert 'may still run there as pid 100' in str(info.value)


def test_missing_program():
    error = CommandError('guest-exec', 'GenericError',
                         'Guest agent command failed, error was \'Failed to execute child process "nope" '
                         '(No such file or directory)\'')
    with pytest.raises(ProgramNotFoundError) as info:
        gx.GuestExec(FakeAgent(exec_error=error)).run(['nope'], 5)
    assert info.value.details()['program'] == 'nope'


def test_blocked_guest_exec_names_the_rpc_and_the_options():
    error = classify_command_error('guest-exec', 'CommandNotFound', 'Command guest-exec has been disabled')
    with pytest.raises(CommandDisabledError) as info:
        gx.GuestExec(FakeAgent(exec_error=error)).run(['true'], 5)
    message = str(info.value)
    assert message.startswith('guest-exec is blocked by the guest agent configuration')
    assert '--allow-rpcs' in message and '--block-rpcs' in message


def test_bad_base64_is_a_family_error():
    agent = FakeAgent({100: [{'exited': True, 'exitcode': 0, 'out-data': '@@@'}]})
    with pytest.raises(QemuVMError):
        gx.GuestExec(agent, sleep=no_sleep).run(['x'], 5)


def test_wait_until_backs_off_and_times_out():
    delays = []
    with pytest.raises(QemuTimeoutError):
        wait_until(lambda: None, Deadline(0.05), 'nothing', interval=gx.FIRST_POLL, max_interval=gx.MAX_POLL,
                   sleep=delays.append)
    assert delays[0] == gx.FIRST_POLL and max(delays) <= gx.MAX_POLL
    values = iter([None, None, 'done'])
    assert wait_until(lambda: next(values), Deadline(5), 'x', sleep=no_sleep) == 'done'


def test_command_argv_wraps_chdir_only_when_asked():
    assert gx.command_argv(['ls', '-l']) == ['ls', '-l']
    assert gx.command_argv(cmd='echo $X') == ['/bin/sh', '-c', 'echo $X']
    argv = gx.command_argv(['ls'], chdir='/srv')
    assert argv[:2] == ['/bin/sh', '-c'] and argv[3:] == ['qemu-vm-exec', '/srv', 'ls']


class EnvironAgent(FakeAgent):
    """guest-exec of the environment reader prints `environ`; other programs run until killed."""

    def __init__(self, environ, exitcode=0):
        super().__init__()
        self.environ = environ
        self.exitcode = exitcode

    def execute(self, command, arguments=None, timeout=None):
        if command == 'guest-exec' and arguments['arg'][1:] == [gx._ENVIRON]:
            reply = super().execute(command, arguments, timeout)
            self.statuses[reply['pid']] = [{'exited': True, 'exitcode': self.exitcode, 'out-data': b64(self.environ),
                                            'err-data': b64(b'cat: no /proc')}]
            return reply
        return super().execute(command, arguments, timeout)


def test_the_agents_environment_is_read_from_proc_or_env():
    runner = gx.GuestExec(EnvironAgent(b'PATH=/bin:/usr/bin\0HOME=/\0A=x=y\nz\0'), sleep=no_sleep)
    assert runner.environment(5) == {'PATH': '/bin:/usr/bin', 'HOME': '/', 'A': 'x=y\nz'}
    runner = gx.GuestExec(EnvironAgent(b'PATH=/bin\nHOME=/\n=odd\n'), sleep=no_sleep)  # `env`: no NUL
    assert runner.environment(5) == {'PATH': '/bin', 'HOME': '/'}
    with pytest.raises(QemuVMError, match="cannot read the guest agent's environment.*no /proc"):
        gx.GuestExec(EnvironAgent(b'', exitcode=1), sleep=no_sleep).environment(5)


def test_env_values_stay_out_of_arguments_and_errors():
    agent = EnvironAgent(b'PATH=/bin\0')
    runner = gx.GuestExec(agent, sleep=no_sleep)
    env = dict(runner.environment(5), TOKEN='s3cr3t-value')
    with pytest.raises(gx.ExecTimeoutError) as info:
        runner.run(gx.command_argv(cmd='sleep 99', chdir='/srv'), 0.05, env=env, shown='sleep 99')
    assert 'the guest command sleep 99 timed out' in str(info.value)
    assert 's3cr3t' not in str(info.value) and 's3cr3t' not in str(info.value.details())
    started = [args for command, args in agent.sent if command == 'guest-exec']
    assert started[1]['env'] == ['PATH=/bin', 'TOKEN=s3cr3t-value']
    assert not [args for args in started if 's3cr3t' in ' '.join([args['path']] + args['arg'])]


def test_exec_arguments_need_a_program():
    with pytest.raises(ValueError):
        gx.exec_arguments([])
