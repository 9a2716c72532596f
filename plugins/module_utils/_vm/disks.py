# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""A VM's disk images on the host: which are missing, creating them (qemu-img, through the one
runner), and removing the ones this module created.

An existing image is never overwritten, reformatted or resized: only a missing `path` is created,
blank (`size`) or as a qcow2 overlay on `backing`. Created images are private (0600): they will
hold the guest's data.

No Ansible imports here.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._qemu.qemu_img import run_qemu_img


def plan_disks(disks):
    """(the DiskSpecs to create, the paths that are block devices), checked; nothing is touched.

    ParameterError names the disk: a missing image without size or backing, a missing backing
    image, a directory that does not exist, a path that is a directory.
    """
    to_create, block_devices = [], set()
    for index, disk in enumerate(disks):
        where = f'disks[{index}]'
        try:
            st = os.stat(disk.path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat.S_ISBLK(st.st_mode):
                block_devices.add(disk.path)
            elif not stat.S_ISREG(st.st_mode):
                raise ParameterError('disks', f'{where}.path: {disk.path} is not a regular file or block device')
            continue
        if disk.backing is None and disk.size is None:
            raise ParameterError('disks', f'{where}.path: {disk.path} does not exist; give size to create a blank image '
                                          'or backing to create an overlay on a base image')
        if not os.path.isdir(os.path.dirname(disk.path)):
            raise ParameterError('disks', f'{where}.path: the directory {os.path.dirname(disk.path)} does not exist')
        if disk.backing is not None and not os.path.isfile(disk.backing):
            raise ParameterError('disks', f'{where}.backing: the base image {disk.backing} does not exist')
        to_create.append(disk)
    return to_create, block_devices


def backing_format(path, timeout):
    """The format of a base image, read with force-share (it is only read, and may be shared)."""
    output = run_qemu_img(['info', '--output=json', '-U', path], timeout, f'reading base image {path}')
    try:
        return json.loads(output)['format']
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError('qemu-img info', 'qemu-img', f'unreadable JSON output for {path}: {exc}') from exc


def create_disk(disk, timeout):
    args = ['create', '-q', '-f', disk.format]
    if disk.backing is not None:
        args += ['-b', disk.backing, '-F', backing_format(disk.backing, timeout)]
    args.append(disk.path)
    if disk.size is not None:
        args.append(str(disk.size))
    # qemu-img create refuses nothing when the file appeared meanwhile: make the file ourselves, exclusively.
    fd = os.open(disk.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    try:
        run_qemu_img(args, timeout, f'creating disk image {disk.path}', image=disk.path)
        os.chmod(disk.path, 0o600)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(disk.path)
        raise


def create_disks(disks, timeout):
    """Create each missing image; on a failure, remove the ones made so far and re-raise."""
    created = []
    try:
        for disk in disks:
            create_disk(disk, timeout)
            created.append(disk.path)
    except BaseException:
        remove_images(created)
        raise
    return created


def remove_images(paths):
    """Remove the image files at `paths` that are still there (a link is removed, not followed)."""
    removed = []
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    return removed
