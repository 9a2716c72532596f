# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Hashing of local files, shared by guest file transfers and external backups.

No Ansible imports here.
"""

from __future__ import annotations

import hashlib

MIB = 1024 * 1024


def sha256_file(path, chunk_size=MIB):
    """SHA-256 of a local file, or None when it does not exist."""
    hasher = hashlib.sha256()
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    try:
        handle = open(path, 'rb')
    except FileNotFoundError:
        return None
    with handle:
        while True:
            count = handle.readinto(view)
            if not count:
                break
            hasher.update(view[:count])
    return hasher.hexdigest()
