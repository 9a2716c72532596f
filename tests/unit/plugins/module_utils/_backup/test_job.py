# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_backup.job's targets with the real qemu-img (QEMU itself is a recording stand-in here; the real
backup jobs run in tests/system/test_qemu_backup.py)."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._backup import job


class RecordingQMP:
    def __init__(self):
        self.calls = []

    def execute(self, command, arguments=None):
        self.calls.append((command, arguments))
        return {}


def disk(device):
    return {'device': device, 'node': 'n-' + device, 'virtual_size': 1 << 20}


@pytest.mark.parametrize('mode', ['full', 'incremental'])
def test_targets_are_private_even_under_umask_000(tmp_path, mode):
    if mode == 'incremental':  # the parent point's file, which the target names as its backing file
        point = job.BackupPoint(RecordingQMP(), str(tmp_path), 'O', 'full', [disk('vda'), disk('vdb')], 'b')
        point.create_targets()
        for target in point.targets:
            os.rename(point.path(target), point.path(target, partial=False))
    point = job.BackupPoint(RecordingQMP(), str(tmp_path), 'P', mode, [disk('vda'), disk('vdb')], 'b', parent='O')
    old = os.umask(0)
    try:
        point.create_targets()
    finally:
        os.umask(old)
    for target in point.targets:
        path = point.path(target)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        with open(path, 'rb') as handle:
            assert handle.read(4) == b'QFI\xfb'  # qemu-img wrote the qcow2 into the file made private first
    assert [c for c, _a in point.qmp.calls] == ['blockdev-add', 'blockdev-add']


def test_an_existing_target_is_refused_and_left_alone(tmp_path):
    point = job.BackupPoint(RecordingQMP(), str(tmp_path), 'P', 'full', [disk('vda')], 'b')
    existing = point.path(point.targets[0])
    with open(existing, 'w') as handle:
        handle.write('another run')
    with pytest.raises(job.BackupError, match='already exists'):
        point.create_targets()
    point.cleanup()
    with open(existing) as handle:
        assert handle.read() == 'another run'
    assert point.qmp.calls == []
