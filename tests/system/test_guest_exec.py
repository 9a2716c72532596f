# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_guest_exec against the real qemu-ga in the tiny guest.

What the module claims is observed through the harness' own guest-exec (files and
processes in the guest), never through the module itself.
"""

from __future__ import annotations

import time
import uuid

import pytest

from harness.ansible import run_module, run_playbook
from harness.guest import VM


SKIP_PLAY = '''
- hosts: localhost
  gather_facts: false
  tasks:
    - qemu.vm.qemu_guest_exec:
        qga: "{{ qga }}"
        cmd: "touch {{ marker }}"
      register: skipped
    - ansible.builtin.assert:
        that: skipped is skipped and skipped is not changed
'''


@pytest.fixture(scope='module')
def shared_vm(guest_images, tmp_path_factory):
    """One VM for the tests that leave nothing behind but files under /tmp/<test>."""
    machine = VM(tmp_path_factory.mktemp('exec'), images=guest_images)
    machine.start()
    yield machine
    machine.stop()


def guest_run(vm, script):
    code, out, err = vm.guest_exec(['/bin/sh', '-c', script])
    return code, out.decode(), err.decode()


def guest_exists(vm, path):
    return guest_run(vm, 'test -e "$0"'.replace('$0', path))[0] == 0


def test_failing_command_returns_rc_stdout_stderr(shared_vm):
    result = run_module('qemu_guest_exec', {
        'qga': shared_vm.qga_path, 'cmd': 'echo out; echo line2; echo err >&2; exit 3'})
    assert result.failed
    assert result['msg'] == 'non-zero return code'
    assert result['module_rc'] == 3
    assert result['stdout'] == 'out\nline2'
    assert result['stdout_lines'] == ['out', 'line2']
    assert result['stderr'] == 'err'
    assert result['stdout_truncated'] is False and result['stderr_truncated'] is False
    assert 'Traceback' not in result['output']


def test_argv_stdin_env_chdir(shared_vm):
    result = run_module('qemu_guest_exec', {
        'qga': shared_vm.qga_path, 'argv': ['tr', 'a-z', 'A-Z'], 'stdin': 'secret text\nline two'})
    assert not result.failed, result
    assert result['changed'] and result['module_rc'] == 0
    # Upper-cased, so Ansible's no_log masking of the stdin value does not hide it.
    assert result['stdout'] == 'SECRET TEXT\nLINE TWO'
    assert result['cmd'] == ['tr', 'a-z', 'A-Z']
    assert isinstance(result['pid'], int) and result['delta'].startswith('0:')
    assert 'secret text' not in result['output']

    result = run_module('qemu_guest_exec', {
        'qga': shared_vm.qga_path, 'argv': ['/bin/sh', '-c', 'echo "$GREETING $1"; pwd', 'sh', 'a b'],
        'env': {'GREETING': 'hello world'}, 'chdir': '/data'})
    assert not result.failed, result
    assert result['stdout_lines'] == ['hello world a b', '/data']


def test_creates_removes_idempotency_and_check_mode(shared_vm):
    qga = shared_vm.qga_path
    marker = '/tmp/exec-marker'
    args = {'qga': qga, 'cmd': f'echo made > {marker}', 'creates': marker}

    result = run_module('qemu_guest_exec', args, check=True)
    assert result['changed'] and not result.failed, result
    assert not guest_exists(shared_vm, marker)

    result = run_module('qemu_guest_exec', args)
    assert result['changed'] and result['module_rc'] == 0, result
    assert guest_run(shared_vm, 'cat ' + marker)[1] == 'made\n'

    for check in (True, False):
        result = run_module('qemu_guest_exec', args, check=check)
        assert not result['changed'] and not result.failed, result
        assert result['msg'] == f'{marker} exists, matching creates option'

    # A glob, relative to chdir.
    result = run_module('qemu_guest_exec', dict(args, creates='exec-mark*', chdir='/tmp'))
    assert not result['changed'], result

    removes = {'qga': qga, 'cmd': f'rm {marker}', 'removes': marker}
    result = run_module('qemu_guest_exec', removes)
    assert result['changed'] and not result.failed, result
    assert not guest_exists(shared_vm, marker)
    result = run_module('qemu_guest_exec', removes)
    assert not result['changed'] and not result.failed, result
    assert result['msg'] == f'{marker} does not exist, matching removes option'

    # Check mode without creates/removes: skipped, nothing run.
    proc = run_playbook(SKIP_PLAY, extra_vars={'qga': qga, 'marker': marker}, check=True)
    assert proc.returncode == 0, proc.stdout
    assert 'skipped=1' in proc.stdout, proc.stdout
    assert not guest_exists(shared_vm, marker)


def test_timeout_kills_the_command_in_the_guest(shared_vm):
    # The shell records its pid and starts a child; both must be gone afterwards.
    script = 'echo $$ > /tmp/exec-timeout.pid; echo started; sleep 313 & wait'
    result = run_module('qemu_guest_exec', {'qga': shared_vm.qga_path, 'cmd': script, 'timeout': 3})
    assert result.failed
    assert 'timed out after 3 s' in result['msg'] and 'killed in the guest' in result['msg'], result['msg']
    assert result['killed'] is True
    assert result['stdout'] == 'started\n'
    assert 'Traceback' not in result['output']
    code, pid, _err = guest_run(shared_vm, 'cat /tmp/exec-timeout.pid')
    assert code == 0
    assert not guest_exists(shared_vm, f'/proc/{pid.strip()}')
    code, out, _err = guest_run(shared_vm, 'cat /proc/[0-9]*/cmdline | tr "\\0" " "')
    assert 'sleep 313' not in out


def wait_for_guest_line(vm, path, text, timeout=30):
    """Wait until the guest file holds `text` (bounded); its content."""
    deadline = time.monotonic() + timeout
    while True:
        code, out, _err = guest_run(vm, f'cat {path}')
        if code == 0 and text in out:
            return out
        assert time.monotonic() < deadline, f'{text!r} not in the guest\'s {path} within {timeout} s'
        time.sleep(0.1)


@pytest.fixture
def guest_syslog(shared_vm):
    """A syslogd in the guest: qemu-ga logs the arguments of every guest-exec to syslog."""
    log = '/tmp/exec-syslog'
    code, _out, err = guest_run(shared_vm, f'rm -f {log}; syslogd -O {log} </dev/null >/dev/null 2>&1')
    assert code == 0, err
    try:
        yield log
    finally:
        guest_run(shared_vm, 'kill $(pidof syslogd)')


def test_env_values_never_reach_guest_process_arguments_or_errors(shared_vm, guest_syslog):
    secret = 'tok-' + uuid.uuid4().hex
    # The program itself looks at every guest process' arguments while it runs, and at its own environment.
    script = ('for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f"; echo; done > /tmp/exec-env-cmdlines; '
              'tr "\\0" "\\n" < /proc/$$/environ > /tmp/exec-env-environ; pwd')
    result = run_module('qemu_guest_exec', {'qga': shared_vm.qga_path, 'cmd': script, 'chdir': '/tmp',
                                            'env': {'QEMU_VM_TOKEN': secret}})
    assert not result.failed and result['stdout'] == '/tmp', result['output']
    cmdlines = guest_run(shared_vm, 'cat /tmp/exec-env-cmdlines')[1]
    assert 'exec-env-cmdlines' in cmdlines and 'qemu-ga' in cmdlines  # the program saw the processes ...
    assert secret not in cmdlines  # ... and the value in none of their arguments
    environ = guest_run(shared_vm, 'cat /tmp/exec-env-environ')[1].splitlines()
    assert f'QEMU_VM_TOKEN={secret}' in environ and [e for e in environ if e.startswith('PATH=')], environ

    # Timed out and killed: the error names the command, not the values.
    slow = run_module('qemu_guest_exec', {'qga': shared_vm.qga_path, 'cmd': 'sleep 313', 'timeout': 2,
                                          'env': {'QEMU_VM_TOKEN': secret}})
    assert slow.failed and 'the guest command sleep 313 timed out after 2 s' in slow['msg'], slow['output']
    assert secret not in slow['output']

    # The agent logged the arguments of every guest-exec of both runs (the marker orders the log: once it is
    # there, so is everything logged before it); the value is in none.
    marker = 'qemu-vm-test-' + uuid.uuid4().hex
    guest_run(shared_vm, f'logger {marker}')
    log = wait_for_guest_line(shared_vm, guest_syslog, marker)
    calls = [line for line in log.splitlines() if 'guest-exec called' in line]
    assert [line for line in calls if 'exec-env-cmdlines' in line] and [line for line in calls if 'sleep 313' in line], log
    assert secret not in log


def test_missing_program(shared_vm):
    result = run_module('qemu_guest_exec', {'qga': shared_vm.qga_path, 'argv': ['/nonexistent/program', '-x']})
    assert result.failed
    assert "cannot start '/nonexistent/program'" in result['msg'], result['msg']
    assert result['error_type'] == 'ProgramNotFoundError'


def test_frozen_guest_is_named(vm_factory):
    vm = vm_factory()
    assert vm.qga('guest-fsfreeze-freeze') >= 1
    try:
        result = run_module('qemu_guest_exec', {'qga': vm.qga_path, 'argv': ['true']})
    finally:
        vm.qga('guest-fsfreeze-thaw')
    assert result.failed
    assert 'frozen' in result['msg'] and 'guest-exec' in result['msg'], result['msg']
    assert result['error_type'] == 'GuestFrozenError'


def test_blocked_guest_exec_is_named(vm_factory):
    vm = vm_factory(ga_block=['guest-exec'])
    result = run_module('qemu_guest_exec', {'qga': vm.qga_path, 'cmd': 'true'})
    assert result.failed
    assert 'guest-exec is blocked by the guest agent configuration' in result['msg'], result['msg']
    assert '--block-rpcs' in result['msg'] and '--allow-rpcs' in result['msg']
    assert 'Traceback' not in result['output']
