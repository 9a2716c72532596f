# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Errors of guest operations through the agent, in the QemuVMError family (_errors).

  QemuVMError
   +-- ProgramNotFoundError   guest-exec could not start the program
   +-- ProgramFailedError     the program ran and failed (qemu_guest_exec); carries the task result
  QemuTimeoutError
   +-- ExecTimeoutError       the program ran past its bound and was killed in the guest
  VMStateError
   +-- QuiesceError           quiesce=required and the guest could not be frozen

No Ansible imports here.
"""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuTimeoutError, QemuVMError, VMStateError


class ProgramNotFoundError(QemuVMError):
    """guest-exec could not start the program: it is missing, not executable, or no POSIX guest."""

    def __init__(self, program, desc):
        self.program = program
        self.desc = desc
        super().__init__(
            f'guest-exec cannot start {program!r} in the guest: {desc}')

    def details(self):
        return {'program': self.program, 'error_desc': self.desc}


class ExecTimeoutError(QemuTimeoutError):
    """The program ran past its bound; it was killed (`killed`) and `result` (an ExecResult) holds what it printed."""

    def __init__(self, argv, seconds, pid, killed, result=None):
        self.argv = list(argv)
        self.pid = pid
        self.killed = killed
        self.result = result
        what = 'the guest command {0}'.format(' '.join(str(a) for a in argv))
        super().__init__(what, seconds)
        if killed:
            fate = f'it was killed in the guest (pid {pid} and its children, SIGKILL)'
        else:
            fate = f'killing it in the guest failed, it may still run there as pid {pid}'
        self.args = (f'{what} timed out after {seconds:g} s: {fate}',)

    def details(self):
        details = super().details()
        details.update({'pid': self.pid, 'killed': self.killed})
        if self.result is not None:
            details.update(self.result.as_dict(with_rc=False))
        return details


class ProgramFailedError(QemuVMError):
    """The program ran and exited non-zero (or was killed by a signal); `result` is the task result."""

    def __init__(self, message, result):
        self.result = result
        super().__init__(message)

    def details(self):
        return dict(self.result)


class QuiesceError(VMStateError):
    """quiesce=required and the guest could not be frozen; no snapshot was taken."""
