# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_backup.chain: point ids, chain validity, the mode, retention, and manifests; on real files, what a
backup writes is private whatever the umask, dest that others can open is named, and retention removes
only the chains it is given. Another uid trying to read a real
backup is tested in tests/system/test_qemu_backup.py."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import stat

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._backup import chain
from ansible_collections.qemu.vm.plugins.module_utils._backup.errors import ChainInvalidError, ManifestError
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, QemuVMError

from .helpers import NOW, bitmap, manifest


@contextlib.contextmanager
def umask(value):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.lstat(str(path)).st_mode)


def new_manifest(chain_id):
    return chain.new_manifest(chain_id, '2026-11-30T00:00:00Z', {'uuid': None, 'name': 'web1'},
                              [{'device': 'vda', 'node': 'n-vda', 'virtual_size': 1024}])


@pytest.mark.parametrize('value', [0o000, 0o022, 0o277])
def test_chain_directories_and_manifests_are_private_whatever_the_umask(tmp_path, value):
    chain_dir = tmp_path / '20261130T000000Z'
    with umask(value):
        chain.make_chain_dir(str(chain_dir))
        chain.write_manifest(str(chain_dir), new_manifest(chain_dir.name))
        chain.create_private_file(str(chain_dir / 'x.qcow2.partial'))
    assert mode(chain_dir) == 0o700
    assert mode(chain_dir / 'manifest.json') == 0o600
    assert mode(chain_dir / 'x.qcow2.partial') == 0o600
    assert sorted(os.listdir(str(chain_dir))) == ['manifest.json', 'x.qcow2.partial']  # no temporary file left


def test_a_private_file_is_never_created_through_a_link_or_over_a_file(tmp_path):
    victim = tmp_path / 'victim'
    victim.write_text('keep')
    os.chmod(str(victim), 0o644)
    (tmp_path / 'link').symlink_to(victim)
    for name in ('link', 'victim'):
        with pytest.raises(FileExistsError):
            chain.create_private_file(str(tmp_path / name))
    assert victim.read_text() == 'keep' and mode(victim) == 0o644


def test_an_open_chain_directory_is_closed_and_said(tmp_path):
    chain_dir = tmp_path / 'c'
    chain_dir.mkdir()
    os.chmod(str(chain_dir), 0o755)
    assert chain.keep_chain_private(str(chain_dir)) is True
    assert mode(chain_dir) == 0o700
    assert chain.keep_chain_private(str(chain_dir)) is False


@pytest.mark.parametrize('dir_mode, words', [
    (0o700, None),
    (0o750, 'can list the chains;'),
    (0o755, 'can list the chains;'),
    (0o777, 'and write to it (remove or rename chains)'),
    (0o1730, 'and write to it'),
])
def test_dest_open_to_group_or_others_is_warned(tmp_path, dir_mode, words):
    dest = tmp_path / 'dest'
    dest.mkdir()
    os.chmod(str(dest), dir_mode)
    warnings = chain.open_dest_warnings(str(dest))
    if words is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and str(dest) in warnings[0] and words in warnings[0]
        assert f'mode {dir_mode & 0o777:04o}' in warnings[0] and 'make dest 0700' in warnings[0]


def test_remove_chains_removes_only_those_named_and_warns_for_a_failure(tmp_path):
    entries = []
    for chain_id in ('20261128T000000Z', '20261129T000000Z', '20261130T000000Z'):
        chain_dir = tmp_path / chain_id
        chain.make_chain_dir(str(chain_dir))
        chain.write_manifest(str(chain_dir), new_manifest(chain_id))
        entries.append({'chain': chain_id, 'dir': str(chain_dir), 'manifest': new_manifest(chain_id)})
    warnings = []
    removed = chain.remove_chains(entries, ['20261128T000000Z'], warnings.append)
    assert removed == ['20261128T000000Z'] and warnings == []
    assert sorted(os.listdir(str(tmp_path))) == ['20261129T000000Z', '20261130T000000Z']
    (tmp_path / '20261129T000000Z' / 'manifest.json').unlink()  # gone under it: cannot be removed as a chain
    removed = chain.remove_chains(entries, ['20261129T000000Z'], warnings.append)
    assert removed == [] and len(warnings) == 1 and warnings[0].startswith('retention: cannot remove the chain')


def vm_disks(sizes=(('vda', 1024), ('vdb', 2048))):
    return dict((d, {'node': 'n-' + d, 'virtual_size': s}) for d, s in sizes)


def all_bitmaps(**flags):
    return {'vda': [bitmap(**flags)], 'vdb': [bitmap()]}


def test_point_ids_are_utc_stamps_with_suffixes_in_the_same_chain():
    assert chain.point_stamp(NOW) == '20261201T004512Z'
    assert chain.next_point(None, NOW) == '20261201T004512Z'
    assert chain.next_point(None, NOW, ['20261201T004512Z']) == '20261201T004512Z-2'
    data = manifest('20261201T004512Z', points=2)
    assert chain.next_point(data, NOW) == '20261201T004512Z-3'
    assert chain.is_point_id('20261201T004512Z-3') and not chain.is_point_id('2026-12-01')
    assert chain.bitmap_name('20261201T004512Z') == 'qemu-vm-20261201T004512Z'
    assert chain.file_name('20261201T004512Z', 'vda') == '20261201T004512Z.vda.qcow2'


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


def test_a_chain_with_unrecorded_files_is_not_continued():
    problem = chain.chain_problem(manifest(), all_bitmaps(), vm_disks(), unrecorded=['P.vda.qcow2'])
    assert 'interrupted' in problem and 'P.vda.qcow2' in problem and 'cleared the bitmaps' in problem
