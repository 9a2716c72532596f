# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors of guest operations: where they sit in the family, and what they tell fail_json."""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuTimeoutError, QemuVMError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest.errors import (
    ExecTimeoutError,
    ProgramFailedError,
    ProgramNotFoundError,
    QuiesceError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.process import ExecResult


def test_family():
    assert issubclass(ProgramNotFoundError, QemuVMError)
    assert issubclass(ProgramFailedError, QemuVMError)
    assert issubclass(ExecTimeoutError, QemuTimeoutError)
    assert issubclass(QuiesceError, VMStateError)


def test_program_not_found_names_the_program_and_the_agents_reason():
    exc = ProgramNotFoundError('nope', 'No such file or directory')
    assert str(exc) == "guest-exec cannot start 'nope' in the guest: No such file or directory"
    assert exc.details() == {'program': 'nope', 'error_desc': 'No such file or directory'}


def test_exec_timeout_says_whether_it_was_killed_and_keeps_the_output():
    result = ExecResult(7, {'out-data': 'cGFydA==', 'err-data': ''})
    killed = ExecTimeoutError(['sleep', 99], 2.5, 7, killed=True, result=result)
    assert str(killed) == 'the guest command sleep 99 timed out after 2.5 s: it was killed in the guest (pid 7 and its children, SIGKILL)'
    assert killed.details() == {'timed_out': 'the guest command sleep 99', 'timeout': 2.5, 'pid': 7, 'killed': True,
                                'stdout': 'part', 'stderr': '', 'stdout_truncated': False, 'stderr_truncated': False}
    alive = ExecTimeoutError(['sleep', '99'], 1, 8, killed=False)
    assert 'may still run there as pid 8' in str(alive)
    assert alive.details() == {'timed_out': 'the guest command sleep 99', 'timeout': 1, 'pid': 8, 'killed': False}


def test_program_failed_carries_the_task_result():
    result = {'rc': 3, 'stdout': '', 'stderr': 'bad', 'changed': True}
    exc = ProgramFailedError('non-zero return code', result)
    assert str(exc) == 'non-zero return code'
    assert exc.details() == result and exc.details() is not result
