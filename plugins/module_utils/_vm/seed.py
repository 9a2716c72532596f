# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The cloud-init NoCloud seed: an ISO 9660 image with volume label `cidata` holding user-data,
meta-data and (when given) network-config, made with the host's ISO tool (genisoimage, mkisofs or
xorriso), never by hand.

The image holds the user-data (often secrets): it is built in a private temporary directory
inside the run directory and renamed into place, 0600.

No Ansible imports here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, QemuTimeoutError
from ansible_collections.qemu.vm.plugins.module_utils._vm.errors import MissingProgramError

LABEL = 'cidata'
#: Tools that write ISO 9660 with Joliet and Rock Ridge, with the argv prefix that makes them speak mkisofs.
ISO_TOOLS = (('genisoimage', ()), ('mkisofs', ()), ('xorriso', ('-as', 'mkisofs')))


def iso_tool(tools=ISO_TOOLS, which=shutil.which):
    """The argv prefix of the first ISO tool installed, or MissingProgramError naming the packages."""
    for name, prefix in tools:
        path = which(name)
        if path:
            return [path] + list(prefix)
    raise MissingProgramError('genisoimage', 'genisoimage (Debian, Ubuntu, Fedora) or xorriso',
                              'the cloud-init seed (cloud_init)')


def build_seed(files, target, tool, timeout):
    """Write the seed ISO for `files` ({name: text}) to `target`, atomically."""
    work = tempfile.mkdtemp(prefix='.seed-', dir=os.path.dirname(target))
    try:
        names = sorted(files)
        for name in names:
            fd = os.open(os.path.join(work, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                handle.write(files[name])
        image = os.path.join(work, 'seed.iso')
        argv = tool + ['-quiet', '-o', image, '-V', LABEL, '-J', '-r'] + names
        try:
            proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=timeout, check=False,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise QemuTimeoutError('building the cloud-init seed image', timeout) from None
        if proc.returncode != 0 or not os.path.isfile(image):
            desc = ' '.join(proc.stderr.split()) or f'exit status {proc.returncode}'
            raise CommandError(os.path.basename(tool[0]), 'iso', desc,
                               message=f'building the cloud-init seed image failed: {desc}')
        os.chmod(image, 0o600)
        os.replace(image, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
