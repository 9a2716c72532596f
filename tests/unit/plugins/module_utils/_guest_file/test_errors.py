# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors of guest files: where they sit in the family, and what they tell fail_json."""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import (
    GuestFileError,
    GuestToolMissingError,
    LocalFileError,
)


def test_family():
    assert issubclass(GuestFileError, QemuVMError)
    assert issubclass(LocalFileError, GuestFileError)
    assert issubclass(GuestToolMissingError, GuestFileError)


def test_details_name_the_guest_path_never_path():
    assert GuestFileError('/etc/x', 'm', reason='missing').details() == {'guest_path': '/etc/x', 'reason': 'missing'}
    assert GuestFileError('/etc/x', 'm').details() == {'guest_path': '/etc/x'}
    assert LocalFileError(None, 'src a: permission denied', reason='src').details() == {'guest_path': None, 'reason': 'src'}


def test_a_missing_tool_names_the_program():
    exc = GuestToolMissingError('sha256sum', 'No such file or directory')
    assert str(exc) == 'the guest has no usable sha256sum program for guest-exec (No such file or directory)'
    assert exc.program == 'sha256sum'
    assert exc.details() == {'guest_path': None, 'reason': 'tool_missing'}
