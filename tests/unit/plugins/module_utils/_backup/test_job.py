# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_backup.job: its targets and size estimates with the real qemu-img, the QMP a point sends
(QEMU itself is a recording stand-in here; the real backup jobs run in tests/system/test_qemu_backup.py)."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._backup import job

from . import helpers
from .helpers import BITMAP, RecordingQMP, bitmap


def disk(device):
    return helpers.disk(device, size=1 << 20)


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


def test_an_incremental_needs_its_dirty_bytes_and_qcow2_metadata():
    disks = [helpers.disk('vda', size=64 << 20, bitmaps=[bitmap(count=4 << 20), bitmap(name='qemu-vm-other', count=1)])]
    needed = job.estimate_bytes(disks, 'incremental', BITMAP, warn=None)
    assert needed == {'vda': job.incremental_bytes(4 << 20)}
    assert (4 << 20) < needed['vda'] < (6 << 20)


def test_a_full_point_needs_what_qemu_img_measures_for_the_whole_backing_chain(tmp_path):
    base, top = str(tmp_path / 'base.qcow2'), str(tmp_path / 'top.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', base, '64M'], check=True)
    subprocess.run(['qemu-io', '-c', 'write -P 1 0 3M', base], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top], check=True)
    subprocess.run(['qemu-io', '-c', 'write -P 2 8M 2M', top], check=True, stdout=subprocess.DEVNULL)
    warnings = []
    vda = dict(helpers.disk('vda', size=64 << 20), file=top)
    broken = dict(helpers.disk('vdb'), file=str(tmp_path / 'gone.qcow2'))
    needed = job.estimate_bytes([vda, broken], 'full', BITMAP, warnings.append)
    assert (5 << 20) <= needed['vda'] < (6 << 20)  # both layers' data, once
    assert needed['vdb'] == 0 and 'not checked for disk vdb' in warnings[0]


@pytest.mark.parametrize('mode', ['full', 'incremental'])
def test_every_point_starts_all_jobs_in_one_grouped_transaction(tmp_path, mode):
    qmp = RecordingQMP()
    point = job.BackupPoint(qmp, str(tmp_path), 'P', mode, [helpers.disk('vda'), helpers.disk('vdb')], BITMAP, parent='O')
    if mode == 'full':
        point.add_bitmaps()
    point.begin()
    commands = [c for c, _a in qmp.calls]
    assert commands == (['block-dirty-bitmap-add'] * 2 if mode == 'full' else []) + ['transaction']
    arguments = qmp.calls[-1][1]
    assert arguments['properties'] == {'completion-mode': 'grouped'}
    assert [a['type'] for a in arguments['actions']] == ['blockdev-backup'] * 2
    for action in arguments['actions']:
        assert (action['data']['sync'], action['data']['bitmap'], action['data']['bitmap-mode']) == \
            (mode, BITMAP, 'on-success')
