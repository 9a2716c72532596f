# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors of external backups: where they sit in the family, and what they tell fail_json."""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._backup.errors import (
    BackupCorruptError,
    BackupError,
    ChainInvalidError,
    ManifestError,
)
from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError, VMStateError


def test_family():
    for cls in (BackupError, ManifestError, ChainInvalidError):
        assert issubclass(cls, QemuVMError) and not issubclass(cls, VMStateError)
        assert cls('m').details() == {}
    assert issubclass(BackupCorruptError, VMStateError)


def test_a_corrupt_file_is_named_and_nothing_was_restored():
    exc = BackupCorruptError('/b/c1/p1.vda.qcow2', 'is missing')
    assert str(exc).startswith('backup file /b/c1/p1.vda.qcow2 is missing; nothing was restored.')
    assert exc.details() == {'file': '/b/c1/p1.vda.qcow2'}
