# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Errors of the VM lifecycle (qemu_vm), in the QemuVMError family.

QemuVMError
 +-- QemuStartError        QEMU refused to start; carries QEMU's own message
 +-- MissingProgramError   a program the task needs is not installed (names the package)
 +-- VMStateError
      +-- UntrustedPathError   something in or at the run directory is not what we made
                               (a symlink, another owner, open permissions): refused, untouched

No Ansible imports here.
"""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError, VMStateError


class QemuStartError(QemuVMError):
    """QEMU exited with an error before the VM ran; nothing it or we made is left behind."""

    def __init__(self, name, message, argv):
        self.name = name
        self.qemu_message = message
        self.argv = list(argv)
        super().__init__(f'QEMU refused to start VM {name}: {message}')

    def details(self):
        return {'qemu_message': self.qemu_message, 'argv': self.argv}


class MissingProgramError(QemuVMError):
    def __init__(self, program, package, purpose):
        self.program = program
        self.package = package
        super().__init__(f'{program} is not installed on the host that runs this module, and {purpose} needs it '
                         f'(install the package {package})')

    def details(self):
        return {'program': self.program, 'package': self.package}


class UntrustedPathError(VMStateError):
    def __init__(self, path, reason):
        self.path = path
        super().__init__(f'{path}: {reason}; refusing to use it (nothing was changed)')

    def details(self):
        return {'path': self.path}
