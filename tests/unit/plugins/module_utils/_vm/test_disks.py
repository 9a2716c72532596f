# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk images: which are created (real qemu-img), and the errors that create nothing."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._vm.definition import parse_disks
from ansible_collections.qemu.vm.plugins.module_utils._vm.disks import create_disks, plan_disks


def info(path):
    return json.loads(subprocess.run(['qemu-img', 'info', '--output=json', '-U', path], capture_output=True, check=True).stdout)


def test_missing_images_are_created_private_existing_ones_untouched(tmp_path):
    base = tmp_path / 'base.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(base), '32M'], check=True)
    existing = tmp_path / 'existing.raw'
    existing.write_bytes(b'\1' * 4096)
    disks = parse_disks([{'path': str(tmp_path / 'overlay.qcow2'), 'backing': str(base)},
                         {'path': str(tmp_path / 'blank.raw'), 'format': 'raw', 'size': '8M'},
                         {'path': str(existing), 'format': 'raw', 'size': '1G'}])
    to_create, block_devices = plan_disks(disks)
    assert [d.id for d in to_create] == ['disk0', 'disk1'] and not block_devices
    created = create_disks(to_create, 30)
    assert created == [str(tmp_path / 'overlay.qcow2'), str(tmp_path / 'blank.raw')]
    overlay = info(created[0])
    assert overlay['backing-filename'] == str(base) and overlay['virtual-size'] == 32 << 20
    assert info(created[1])['virtual-size'] == 8 << 20 and info(created[1])['format'] == 'raw'
    assert all(stat.S_IMODE(os.stat(path).st_mode) == 0o600 for path in created)
    assert existing.read_bytes() == b'\1' * 4096


@pytest.mark.parametrize('entry, fragment', [
    ({'path': '{tmp}/new.qcow2'}, 'does not exist; give size'),
    ({'path': '{tmp}/new.qcow2', 'backing': '{tmp}/nope.qcow2'}, 'the base image {tmp}/nope.qcow2 does not exist'),
    ({'path': '{tmp}/no/dir.qcow2', 'size': '1M'}, 'the directory {tmp}/no does not exist'),
    ({'path': '{tmp}', 'size': '1M'}, 'not a regular file or block device'),
])
def test_bad_disks_create_nothing(tmp_path, entry, fragment):
    entry = {key: value.format(tmp=tmp_path) for key, value in entry.items()}
    with pytest.raises(ParameterError) as info_:
        plan_disks(parse_disks([entry]))
    assert fragment.format(tmp=tmp_path) in str(info_.value)
    assert sorted(os.listdir(tmp_path)) == []


def test_a_failed_creation_removes_what_this_run_created(tmp_path):
    # the second image's base vanished after the checks: qemu-img fails, and the first image goes too
    disks = parse_disks([{'path': str(tmp_path / 'a.raw'), 'format': 'raw', 'size': '1M'},
                         {'path': str(tmp_path / 'b.qcow2'), 'backing': str(tmp_path / 'vanished.qcow2')}])
    with pytest.raises(CommandError, match='vanished.qcow2'):
        create_disks(disks, 30)
    assert sorted(os.listdir(tmp_path)) == []
