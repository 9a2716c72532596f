# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Errors of guest files, in the QemuVMError family (_errors).

  QemuVMError
   +-- GuestFileError           a guest file cannot be read, written, looked up or changed;
        |                       `reason` is a short code (missing, permission, no_space, ...)
        +-- LocalFileError      the file on this side (controller or managed host) cannot be used
        +-- GuestToolMissingError  guest-exec cannot start a POSIX tool the operation needs

No Ansible imports here.
"""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError


class GuestFileError(QemuVMError):
    """A guest file cannot be read or written; `reason` is a short code (missing, permission, ...)."""

    def __init__(self, path, message, reason=None):
        self.path = path
        self.reason = reason
        super().__init__(message)

    def details(self):
        # Not 'path': AnsibleModule would add the stat of a same-named file on the managed host.
        details = {'guest_path': self.path}
        if self.reason:
            details['reason'] = self.reason
        return details


class LocalFileError(GuestFileError):
    """The file on this side (the controller or managed host) cannot be read or written."""


class GuestToolMissingError(GuestFileError):
    """guest-exec could not start a program: it is not installed in the guest (or no POSIX guest)."""

    def __init__(self, program, desc):
        self.program = program
        super().__init__(
            None, f'the guest has no usable {program} program for guest-exec ({desc})', reason='tool_missing')
