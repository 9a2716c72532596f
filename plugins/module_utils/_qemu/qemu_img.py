# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""qemu-img on the host that runs the module: one runner, bounded, with clear errors.

* `run_qemu_img(args, timeout, what)`: runs it, kills it at the bound, and turns a failure
  into CommandError, or ImageInUseError when qemu-img could not take an image's lock (a
  running QEMU holds it: qemu-img never writes an image that a VM has open);
* `image_info(path, timeout)`: `qemu-img info --output=json` (takes the image's shared lock,
  so a running VM's image is reported in use, not read behind its back);
* `measure_required(path, timeout)`: `qemu-img measure -U`, the bytes a qcow2 copy of the
  image's whole backing chain needs (read while the VM runs: force-share, never written);
* `check_image_path(path, option)`: an absolute path to an existing regular file, or
  ParameterError naming the option.

No Ansible imports here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandError,
    ParameterError,
    QemuTimeoutError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._qemu.errors import ImageInUseError

_LOCK_WORDS = ('lock', 'Is another process using the image')


def qemu_img_binary() -> str:
    path = shutil.which('qemu-img')
    if path is None:
        raise VMStateError('qemu-img is not installed on the host that runs this module (Debian and Ubuntu: package '
                           'qemu-utils; Fedora: qemu-img)')
    return path


def run_qemu_img(args: list, timeout: float, what: str, image: str | None = None, cwd: str | None = None) -> str:
    """Run `qemu-img *args`; returns its standard output. `image` names the image for lock errors."""
    argv = [qemu_img_binary()] + [str(a) for a in args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise QemuTimeoutError(what, timeout, 'qemu-img was stopped') from exc
    except OSError as exc:
        raise CommandError('qemu-img ' + str(args[0]), 'qemu-img', str(exc)) from exc
    if proc.returncode != 0:
        desc = ' '.join(line.strip() for line in proc.stderr.splitlines() if line.strip()) or \
            f'exit status {proc.returncode}'
        if desc.startswith('qemu-img: '):
            desc = desc[len('qemu-img: '):]
        if image is not None and all(word in desc for word in _LOCK_WORDS):
            raise ImageInUseError(image, desc)
        raise CommandError('qemu-img ' + str(args[0]), 'qemu-img', desc, message=f'{what} failed: {desc}')
    return proc.stdout


def image_info(path: str, timeout: float, backing_chain: bool = False) -> dict | list:
    """qemu-img info as JSON (a list of images with backing_chain=True)."""
    args = ['info', '--output=json']
    if backing_chain:
        args.append('--backing-chain')
    output = run_qemu_img(args + [path], timeout, f'reading image {path}', image=path)
    try:
        return json.loads(output)
    except ValueError as exc:
        raise CommandError('qemu-img info', 'qemu-img', f'unreadable JSON output: {exc}') from exc


def measure_required(path: str, timeout: float) -> int:
    """Bytes a new qcow2 holding the image's data (its whole backing chain) needs, per qemu-img measure."""
    output = run_qemu_img(['measure', '--output=json', '-U', '-O', 'qcow2', path], timeout,
                          f'measuring image {path}')
    try:
        return int(json.loads(output)['required'])
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError('qemu-img measure', 'qemu-img', f'unreadable JSON output: {exc}') from exc


def check_image_path(path: str | None, option: str) -> str:
    """An absolute path to an existing regular file."""
    if not path:
        raise ParameterError(option, f'{option} must not contain an empty path')
    if not os.path.isabs(path):
        raise ParameterError(option, f'{option}: {path!r} is not an absolute path')
    if not os.path.exists(path):
        raise ParameterError(option, f'{option}: {path} does not exist')
    if not os.path.isfile(path):
        raise ParameterError(option, f'{option}: {path} is not a regular file')
    return os.path.normpath(path)
