# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Errors of external backups, in the QemuVMError family (_errors).

  QemuVMError
   +-- BackupError          preparing or finishing a backup point failed (target files, jobs)
   +-- ManifestError        a chain's manifest could not be read, written or removed
   +-- ChainInvalidError    mode=incremental, but the chain cannot take an incremental point
  VMStateError
   +-- BackupCorruptError   a file of the chain is missing or does not match its manifest

No Ansible imports here.
"""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError, VMStateError


class BackupError(QemuVMError):
    """Preparing or finishing a backup point failed (target files, qemu-img)."""


class ManifestError(QemuVMError):
    """A manifest could not be read or written."""


class ChainInvalidError(QemuVMError):
    """mode=incremental was asked for, but the chain cannot take an incremental point."""


class BackupCorruptError(VMStateError):
    """A file of the chain is missing or does not match the manifest's size or sha256."""

    def __init__(self, path, reason):
        self.path = path
        super().__init__(
            f'backup file {path} {reason}; nothing was restored. The chain is damaged from this point on: restore an '
            'earlier point or another chain')

    def details(self):
        return {'file': self.path}
