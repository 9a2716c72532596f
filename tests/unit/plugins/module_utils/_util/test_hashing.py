# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hashing of local files."""

from __future__ import annotations

import hashlib

from ansible_collections.qemu.vm.plugins.module_utils._util.hashing import sha256_file


def test_sha256_of_a_file_larger_than_one_chunk(tmp_path):
    data = bytes(range(256)) * 5000
    path = tmp_path / 'f'
    path.write_bytes(data)
    assert sha256_file(str(path), chunk_size=4096) == hashlib.sha256(data).hexdigest()


def test_an_empty_file_and_a_missing_one(tmp_path):
    empty = tmp_path / 'empty'
    empty.write_bytes(b'')
    assert sha256_file(str(empty)) == hashlib.sha256(b'').hexdigest()
    assert sha256_file(str(tmp_path / 'missing')) is None
