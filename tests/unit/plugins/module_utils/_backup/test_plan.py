# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_backup.plan, the pure decisions of qemu_backup: the request, the devices, the plan, free space."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._backup import plan
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, VMStateError

from .helpers import BITMAP, NOW, bitmap, disk, manifest


def test_select_devices_defaults_to_writable_qcow2_and_names_bad_ones():
    disks = [disk('vda'), disk('vdb', driver='raw'), disk('cd', read_only=True)]
    chosen, warnings = plan.select_devices(disks, None)
    assert [d['device'] for d in chosen] == ['vda'] and 'vdb' in warnings[0]
    for wanted, words in ((['nope'], "no disk 'nope'"), (['vdb'], 'not qcow2'), (['cd'], 'read-only')):
        with pytest.raises(ParameterError, match=words) as info:
            plan.select_devices(disks, wanted)
        assert info.value.parameter == 'devices'
    with pytest.raises(ParameterError, match='no writable qcow2'):
        plan.select_devices([disk('vdb', driver='raw')], None)


def request(tmp_path, **params):
    params.setdefault('dest', str(tmp_path))
    return plan.parse_request(params)


def test_parse_request_checks_dest_and_quiesce(tmp_path):
    for dest, words in (('relative/dir', 'absolute'), (str(tmp_path / 'missing'), 'does not exist')):
        with pytest.raises(ParameterError, match=words) as info:
            plan.parse_request({'dest': dest})
        assert info.value.parameter == 'dest'
    with pytest.raises(ParameterError, match='needs qga'):
        request(tmp_path, quiesce='required')
    assert request(tmp_path, qga='/x').quiesce == 'preferred'
    assert request(tmp_path).quiesce == 'off'
    assert request(tmp_path, max_age='1d').max_age == 86400


def test_decide_continues_a_valid_chain_and_resets_an_invalid_one(tmp_path):
    disks = [disk('vda', bitmaps=[bitmap()]), disk('vdb', size=2048, bitmaps=[bitmap()])]
    current = {'chain': '20261130T000000Z', 'manifest': manifest()}
    result = plan.decide(request(tmp_path), disks, [current], NOW, [])
    assert (result.mode, result.chain, result.parent, result.chain_reset) == (
        'incremental', '20261130T000000Z', '20261130T000000Z', None)
    assert result.point == '20261201T004512Z' and result.bitmap == BITMAP
    disks[0]['bitmaps'] = [bitmap(inconsistent=True)]
    result = plan.decide(request(tmp_path, keep_chains=1), disks, [current], NOW, ['20261130T000000Z'])
    assert result.mode == 'full' and result.chain == result.point == '20261201T004512Z'
    assert 'inconsistent' in result.chain_reset['reason']
    assert result.removed_chains == ['20261130T000000Z']
    assert result.stale_bitmaps == [BITMAP]
    after = plan.predicted_chains([current], result)
    assert after == {'20261201T004512Z': ['20261201T004512Z']}


def test_check_space_names_dest_and_the_sizes_when_the_point_does_not_fit():
    assert plan.check_space('/backup', {'vda': 3 << 20, 'vdb': 1 << 20}, 4 << 20) == 4 << 20
    with pytest.raises(ParameterError) as info:
        plan.check_space('/backup', {'vda': 3 << 20, 'vdb': 1 << 20}, (4 << 20) - 1)
    assert info.value.parameter == 'dest'
    assert 'dest /backup: no space' in str(info.value) and 'vda 3.0 MiB, vdb 1.0 MiB' in str(info.value)
    assert 'nothing was changed' in str(info.value)


def test_a_disk_another_backup_job_copies_is_refused_not_skipped():
    disks = [disk('vda'), disk('vdb', driver='copy-before-write')]
    for wanted in (None, ['vdb']):
        with pytest.raises(VMStateError, match='disk vdb: another backup job is copying it'):
            plan.select_devices(disks, wanted)
    assert [d['device'] for d in plan.select_devices(disks, ['vda'])[0]] == ['vda']
