# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Errors of the QEMU vocabulary and host images, in the QemuVMError family (_errors).

  VMStateError
    +-- ImageInUseError   qemu-img could not take an image's lock: a running QEMU has it open

No Ansible imports here.
"""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import VMStateError


class ImageInUseError(VMStateError):
    """qemu-img could not lock an image: a running QEMU (or another qemu-img) has it open."""

    def __init__(self, path, desc):
        self.path = path
        self.desc = desc
        super().__init__(
            f'image {path} is in use by another process, most likely the running VM (qemu-img could not take its lock: '
            f'{desc}); shut the VM down (quit QEMU) first: the image of a running VM is never written')

    def details(self):
        return {'image': self.path}
