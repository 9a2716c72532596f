# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure decisions of qemu_backup: point ids, chain validity, mode, devices, retention, manifests,
free space; and the QMP a point sends (recorded, no QEMU)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._backup import chain
from ansible_collections.qemu.vm.plugins.module_utils._backup import job
from ansible_collections.qemu.vm.plugins.module_utils._backup import leftovers
from ansible_collections.qemu.vm.plugins.module_utils._backup import plan
from ansible_collections.qemu.vm.plugins.module_utils._backup.errors import ChainInvalidError, ManifestError
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, QemuVMError, VMStateError

NOW = datetime.datetime(2026, 12, 1, 0, 45, 12, tzinfo=datetime.timezone.utc)
BITMAP = 'qemu-vm-20261130T000000Z'


def manifest(chain_id='20261130T000000Z', disks=(('vda', 1024), ('vdb', 2048)), points=1, vm=None, last=None):
    data = chain.new_manifest(chain_id, '2026-11-30T00:00:00Z', vm or {'uuid': None, 'name': 'web1'},
                              [{'device': d, 'node': 'n-' + d, 'virtual_size': s} for d, s in disks])
    for index in range(points):
        point = chain_id if index == 0 else f'{chain_id}-{index + 1}'
        data['points'].append({'point': point, 'mode': 'full' if index == 0 else 'incremental',
                               'parent': None if index == 0 else data['points'][-1]['point'],
                               'time': last if (last and index == points - 1) else '2026-11-30T00:00:00Z',
                               'files': [{'device': d, 'path': chain.file_name(point, d), 'bytes': 10}
                                         for d, _s in disks]})
    return data


def bitmap(name=BITMAP, **flags):
    entry = {'name': name, 'recording': True, 'busy': False, 'persistent': True, 'count': 0}
    entry.update(flags)
    return entry


def vm_disks(sizes=(('vda', 1024), ('vdb', 2048))):
    return dict((d, {'node': 'n-' + d, 'virtual_size': s}) for d, s in sizes)


def all_bitmaps(**flags):
    return {'vda': [bitmap(**flags)], 'vdb': [bitmap()]}


# -- point ids ------------------------------------------------------------------------

def test_point_ids_are_utc_stamps_with_suffixes_in_the_same_chain():
    assert chain.point_stamp(NOW) == '20261201T004512Z'
    assert chain.next_point(None, NOW) == '20261201T004512Z'
    assert chain.next_point(None, NOW, ['20261201T004512Z']) == '20261201T004512Z-2'
    data = manifest('20261201T004512Z', points=2)
    assert chain.next_point(data, NOW) == '20261201T004512Z-3'
    assert chain.is_point_id('20261201T004512Z-3') and not chain.is_point_id('2026-12-01')
    assert chain.bitmap_name('20261201T004512Z') == 'qemu-vm-20261201T004512Z'
    assert chain.file_name('20261201T004512Z', 'vda') == '20261201T004512Z.vda.qcow2'


# -- chain validity -------------------------------------------------------------------

def test_a_chain_with_recording_bitmaps_on_every_disk_is_valid():
    assert chain.chain_problem(manifest(), all_bitmaps(), vm_disks()) is None


@pytest.mark.parametrize('data, bitmaps, disks, words', [
    (None, {}, vm_disks(), 'no chain'),
    (manifest(points=0), all_bitmaps(), vm_disks(), 'no complete point'),
    (manifest(), all_bitmaps(), vm_disks((('vda', 1024), ('vdb', 2048), ('vdc', 1))), 'added: vdc'),
    (manifest(), all_bitmaps(), vm_disks((('vda', 1024),)), 'removed: vdb'),
    (manifest(), all_bitmaps(), vm_disks((('vda', 4096), ('vdb', 2048))), 'resized'),
    (manifest(), {'vda': [], 'vdb': [bitmap()]}, vm_disks(), 'missing on disk vda'),
    (manifest(), {'vda': [bitmap('other')], 'vdb': [bitmap()]}, vm_disks(), 'missing on disk vda'),
    (manifest(), all_bitmaps(inconsistent=True), vm_disks(), 'inconsistent'),
    (manifest(), all_bitmaps(busy=True), vm_disks(), 'in use'),
    (manifest(), all_bitmaps(recording=False), vm_disks(), 'disabled'),
    (manifest(), all_bitmaps(persistent=False), vm_disks(), 'not persistent'),
])
def test_chain_problems_name_the_reason(data, bitmaps, disks, words):
    assert words in chain.chain_problem(data, bitmaps, disks)


def test_missing_files_invalidate_the_chain():
    problem = chain.chain_problem(manifest(), all_bitmaps(), vm_disks(), missing=['x.vda.qcow2'])
    assert 'missing from dest' in problem and 'x.vda.qcow2' in problem


def test_mode_choice():
    assert chain.choose_mode('auto', None) == ('incremental', None)
    assert chain.choose_mode('auto', 'why') == ('full', {'reason': 'why'})
    assert chain.choose_mode('full', None) == ('full', None)
    assert chain.choose_mode('incremental', None) == ('incremental', None)
    with pytest.raises(ChainInvalidError, match='no valid chain.*why') as info:
        chain.choose_mode('incremental', 'why')
    assert isinstance(info.value, QemuVMError)


def test_vm_identity_prefers_uuid_then_name():
    assert chain.vm_identity('x', '00000000-0000-0000-0000-000000000000') == {'uuid': None, 'name': 'x'}
    assert chain.same_vm({'uuid': 'u1', 'name': 'a'}, {'uuid': 'u1', 'name': 'b'})
    assert not chain.same_vm({'uuid': 'u1', 'name': 'a'}, {'uuid': 'u2', 'name': 'a'})
    assert chain.same_vm({'uuid': None, 'name': 'a'}, {'uuid': 'u2', 'name': 'a'})
    assert not chain.same_vm({'uuid': None, 'name': 'a'}, {'uuid': None, 'name': 'b'})


# -- retention --------------------------------------------------------------------------

def chains_aged(*days_old):
    entries = []
    for index, days in enumerate(days_old):
        when = NOW - datetime.timedelta(days=days)
        name = chain.point_stamp(when)
        entries.append({'chain': name, 'manifest': manifest(name, last=chain.iso_time(when))})
    return entries


def test_retention_keeps_the_newest_chains_and_never_the_one_in_use():
    entries = chains_aged(30, 20, 10, 1)
    names = [e['chain'] for e in entries]
    assert chain.retention(entries, names[-1], NOW) == []
    assert chain.retention(entries, names[-1], NOW, keep_chains=2) == names[:2]
    # the chain in use is kept even when keep_chains would drop it
    assert chain.retention(entries, names[0], NOW, keep_chains=1) == names[1:3]
    assert chain.retention(entries, names[-1], NOW, max_age=15 * 86400) == names[:2]
    assert chain.retention(entries, names[-1], NOW, keep_chains=3, max_age=5 * 86400) == names[:1]
    assert chain.retention(entries, names[0], NOW, max_age=86400 // 2) == names[1:]


def test_keep_chains_must_be_positive():
    with pytest.raises(ParameterError) as info:
        chain.check_keep_chains(0)
    assert info.value.parameter == 'keep_chains'


# -- the plan -----------------------------------------------------------------------------

def disk(device, driver='qcow2', read_only=False, size=1024, bitmaps=()):
    return {'device': device, 'node': 'n-' + device, 'driver': driver, 'read_only': read_only,
            'virtual_size': size, 'bitmaps': list(bitmaps)}


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


# -- manifests on disk --------------------------------------------------------------------

def test_manifest_round_trip_and_listing(tmp_path):
    data = manifest('20261130T000000Z')
    chain_dir = tmp_path / data['chain']
    chain_dir.mkdir()
    chain.write_manifest(str(chain_dir), data)
    (tmp_path / 'not-a-chain').mkdir()
    (tmp_path / 'stray.txt').write_text('x')
    assert json.loads((chain_dir / 'manifest.json').read_text()) == data
    assert not [p for p in os.listdir(str(chain_dir)) if p != 'manifest.json']
    listed = chain.list_chains(str(tmp_path))
    assert [c['chain'] for c in listed] == ['20261130T000000Z']
    assert chain.missing_files(str(chain_dir), data) == ['20261130T000000Z.vda.qcow2', '20261130T000000Z.vdb.qcow2']
    summary = chain.summary(listed[0])
    assert summary['bytes'] == 20 and summary['points'][0]['files'][0]['path'].startswith(str(chain_dir))
    chain.remove_chain(str(chain_dir))
    assert chain.list_chains(str(tmp_path)) == []


def test_an_unreadable_manifest_is_reported_or_skipped(tmp_path):
    bad = tmp_path / '20261130T000000Z'
    bad.mkdir()
    (bad / 'manifest.json').write_text('{not json')
    with pytest.raises(ManifestError, match='cannot read'):
        chain.list_chains(str(tmp_path))
    errors = []
    assert chain.list_chains(str(tmp_path), errors) == [] and 'cannot read' in errors[0]


# -- free space -----------------------------------------------------------------------

def test_check_space_names_dest_and_the_sizes_when_the_point_does_not_fit():
    assert plan.check_space('/backup', {'vda': 3 << 20, 'vdb': 1 << 20}, 4 << 20) == 4 << 20
    with pytest.raises(ParameterError) as info:
        plan.check_space('/backup', {'vda': 3 << 20, 'vdb': 1 << 20}, (4 << 20) - 1)
    assert info.value.parameter == 'dest'
    assert 'dest /backup: no space' in str(info.value) and 'vda 3.0 MiB, vdb 1.0 MiB' in str(info.value)
    assert 'nothing was changed' in str(info.value)


def test_an_incremental_needs_its_dirty_bytes_and_qcow2_metadata():
    disks = [disk('vda', size=64 << 20, bitmaps=[bitmap(count=4 << 20), bitmap(name='qemu-vm-other', count=1)])]
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
    vda = dict(disk('vda', size=64 << 20), file=top)
    broken = dict(disk('vdb'), file=str(tmp_path / 'gone.qcow2'))
    needed = job.estimate_bytes([vda, broken], 'full', BITMAP, warnings.append)
    assert (5 << 20) <= needed['vda'] < (6 << 20)  # both layers' data, once
    assert needed['vdb'] == 0 and 'not checked for disk vdb' in warnings[0]


class RecordingQMP:
    def __init__(self):
        self.calls = []

    def execute(self, command, arguments=None):
        self.calls.append((command, arguments))
        return {}

    def version_at_least(self, major, minor):
        return True


@pytest.mark.parametrize('mode', ['full', 'incremental'])
def test_every_point_starts_all_jobs_in_one_grouped_transaction(tmp_path, mode):
    qmp = RecordingQMP()
    point = job.BackupPoint(qmp, str(tmp_path), 'P', mode, [disk('vda'), disk('vdb')], BITMAP, parent='O')
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


# -- a killed run's leftovers -----------------------------------------------------------

def test_only_one_run_holds_dest(tmp_path):
    with leftovers.dest_lock(str(tmp_path)):
        with pytest.raises(ParameterError, match='another qemu_backup run is writing into it') as info:
            with leftovers.dest_lock(str(tmp_path)):
                pass
        assert info.value.parameter == 'dest'
    with leftovers.dest_lock(str(tmp_path)):  # released with the run
        pass


def make_chain(dest, chain_id, files, with_manifest=True):
    chain_dir = dest / chain_id
    chain_dir.mkdir()
    for name in files:
        (chain_dir / name).write_bytes(b'x')
    data = manifest(chain_id, disks=(('vda', 1024),)) if with_manifest else None
    if data:
        chain.write_manifest(str(chain_dir), data)
    return {'chain': chain_id, 'dir': str(chain_dir), 'manifest': data}


def test_files_no_manifest_lists_are_a_killed_runs(tmp_path):
    listed = chain.file_name('20261130T000000Z', 'vda')
    clean = make_chain(tmp_path, '20261130T000000Z', [listed])
    killed = make_chain(tmp_path, '20261201T000000Z', [chain.file_name('20261201T000000Z', 'vda'),
                                                       'P.vda.qcow2.partial', 'P2.vda.qcow2', 'notes.txt'])
    make_chain(tmp_path, '20261202T000000Z', ['P.vda.qcow2.partial'], with_manifest=False)
    make_chain(tmp_path, '20261203T000000Z', ['P.vda.qcow2.partial', 'mine.txt'], with_manifest=False)
    (tmp_path / 'not-a-chain').mkdir()
    found = leftovers.find_leftovers(str(tmp_path), [clean, killed])
    assert found == {'unrecorded': {'20261201T000000Z': ['P.vda.qcow2.partial', 'P2.vda.qcow2']},
                     'aborted': ['20261202T000000Z']}  # a directory holding anything else is not ours to remove
    lines = leftovers.describe(found)
    assert 'chain 20261201T000000Z does not list (P.vda.qcow2.partial, P2.vda.qcow2)' in lines[0]
    assert 'chain 20261202T000000Z without a manifest' in lines[1]


def test_a_chain_with_unrecorded_files_is_not_continued():
    problem = chain.chain_problem(manifest(), all_bitmaps(), vm_disks(), unrecorded=['P.vda.qcow2'])
    assert 'interrupted' in problem and 'P.vda.qcow2' in problem and 'cleared the bitmaps' in problem


class CannedQMP(RecordingQMP):
    def __init__(self, answers):
        super().__init__()
        self.answers = answers

    def execute(self, command, arguments=None):
        self.calls.append((command, arguments))
        replies = self.answers.get(command)  # the replies to this command, in order
        return replies.pop(0) if replies else {}


def test_clearing_leftovers_stops_the_killed_runs_jobs_then_removes_its_files_and_bitmaps(tmp_path):
    killed = make_chain(tmp_path, '20261201T000000Z', ['P.vda.qcow2.partial'])
    make_chain(tmp_path, '20261202T000000Z', ['Q.vda.qcow2.partial'], with_manifest=False)
    found = leftovers.find_leftovers(str(tmp_path), [killed])
    ours, other = 'qemu-vm-backup-0123abcd-0', 'qemu-vm-backup-99999999-0'
    shown = {'backing': None, 'driver': 'qcow2', 'file': {'driver': 'file', 'filename': str(
        tmp_path / '20261202T000000Z' / 'Q.vda.qcow2.partial')}}  # as QEMU shows a target a job used
    nodes = [{'node-name': ours, 'drv': 'qcow2', 'file': 'json:' + json.dumps(shown)},
             {'node-name': other, 'drv': 'qcow2', 'file': '/elsewhere/R.vda.qcow2.partial'}]
    running = [{'id': 'qemu-vm-backup-0123abcd-vda', 'status': 'running'},
               {'id': 'qemu-vm-backup-99999999-vda', 'status': 'running'}]
    cancelled = [{'id': 'qemu-vm-backup-0123abcd-vda', 'status': 'concluded'}, running[1]]
    qmp = CannedQMP({'query-named-block-nodes': [nodes], 'query-jobs': [running, cancelled, cancelled]})
    disks = [dict(disk('vda'), bitmaps=[bitmap('qemu-vm-20261201T000000Z'), bitmap('qemu-vm-20261202T000000Z'),
                                        bitmap('qemu-vm-keep')])]
    warnings = leftovers.drop_stale_targets(qmp, str(tmp_path))
    assert 'left backup jobs (qemu-vm-backup-0123abcd-vda) and target nodes' in warnings[0]
    leftovers.clear_leftovers(qmp, str(tmp_path), found, disks)
    acting = [(c, a) for c, a in qmp.calls if not c.startswith('query-')]
    assert acting == [
        ('job-cancel', {'id': 'qemu-vm-backup-0123abcd-vda'}),  # another dest's run is left alone
        ('job-dismiss', {'id': 'qemu-vm-backup-0123abcd-vda'}),
        ('blockdev-del', {'node-name': ours}),
        ('block-dirty-bitmap-remove', {'node': 'n-vda', 'name': 'qemu-vm-20261201T000000Z'}),
        ('block-dirty-bitmap-remove', {'node': 'n-vda', 'name': 'qemu-vm-20261202T000000Z'}),
    ]
    assert os.listdir(killed['dir']) == ['manifest.json']
    assert sorted(os.listdir(str(tmp_path))) == ['20261201T000000Z']


def test_a_disk_another_backup_job_copies_is_refused_not_skipped():
    disks = [disk('vda'), disk('vdb', driver='copy-before-write')]
    for wanted in (None, ['vdb']):
        with pytest.raises(VMStateError, match='disk vdb: another backup job is copying it'):
            plan.select_devices(disks, wanted)
    assert [d['device'] for d in plan.select_devices(disks, ['vda'])[0]] == ['vda']
