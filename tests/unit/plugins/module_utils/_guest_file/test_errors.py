# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors of guest files: one class per kind of failure, where they sit in the family, and what they
tell fail_json."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file import errors as gfe


def test_family():
    assert issubclass(gfe.GuestFileError, QemuVMError)
    for name in dir(gfe):
        cls = getattr(gfe, name)
        if isinstance(cls, type) and issubclass(cls, QemuVMError) and cls is not QemuVMError:
            assert issubclass(cls, gfe.GuestFileError), name
    assert issubclass(gfe.SourceFileError, gfe.LocalFileError) and issubclass(gfe.LocalNoSpaceError, gfe.LocalFileError)


def test_details_name_the_guest_path_never_path_and_no_reason_code():
    assert gfe.GuestFileMissingError('/etc/x', 'm').details() == {'guest_path': '/etc/x'}
    assert gfe.SourceFileError(None, 'src a: permission denied').details() == {'guest_path': None}
    assert gfe.GuestFileTooLargeError('/dev/zero', 'm', 1024).details() == {'guest_path': '/dev/zero', 'size_limit': 1024}
    assert gfe.LocalNoSpaceError('/g', 'm', 10, 5).details() == {'guest_path': '/g', 'bytes_needed': 10, 'bytes_free': 5}
    assert not hasattr(gfe.GuestFileError('/x', 'm'), 'reason')


def test_a_missing_tool_names_the_program():
    exc = gfe.GuestToolMissingError('sha256sum', 'No such file or directory')
    assert str(exc) == 'the guest has no usable sha256sum program for guest-exec (No such file or directory)'
    assert exc.details() == {'guest_path': None, 'program': 'sha256sum'}


@pytest.mark.parametrize('text, cls', [
    ("failed to open file '/x' (mode: 'r'): No such file or directory", gfe.GuestFileMissingError),
    ('Permission denied', gfe.GuestPermissionError),
    ('chown: /x: Operation not permitted', gfe.GuestPermissionError),
    ('failed to read file: Is a directory', gfe.GuestIsADirectoryError),
    ('Not a directory', gfe.GuestNotADirectoryError),
    ('Read-only file system', gfe.GuestReadOnlyError),
    ('No space left on device', gfe.GuestNoSpaceError),
    ('Disk quota exceeded', gfe.GuestNoSpaceError),
    ('failed to seek file: Illegal seek', gfe.GuestNotAFileError),
    ('something else', gfe.GuestFileError),
    (None, gfe.GuestFileError),
])
def test_guest_error_texts_map_to_one_class(text, cls):
    assert gfe.class_of(text) is cls


def test_reworded_keeps_the_class_and_its_details():
    exc = gfe.GuestNoSpaceError('/tmp/.x', 'full')
    assert exc.reworded('writing /x failed: full', path='/x') is exc
    assert (str(exc), exc.details()) == ('writing /x failed: full', {'guest_path': '/x'})
