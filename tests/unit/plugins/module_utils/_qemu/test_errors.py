# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors of the QEMU vocabulary: where they sit in the family, and what they tell fail_json."""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._qemu.errors import ImageInUseError


def test_an_image_in_use_is_a_vm_state_error_naming_the_image():
    exc = ImageInUseError('/images/a.qcow2', 'Failed to get "write" lock')
    assert isinstance(exc, VMStateError)
    assert str(exc).startswith('image /images/a.qcow2 is in use by another process')
    assert 'Failed to get "write" lock' in str(exc) and 'shut the VM down' in str(exc)
    assert exc.details() == {'image': '/images/a.qcow2'}
