# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_backup_restore on chains built here with qemu-img and qemu-io, laid out as the external
backup contract says (no VM): the selection, the checks, and the image really built."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._backup import restore
from ansible_collections.qemu.vm.plugins.module_utils._backup.errors import BackupCorruptError
from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._backup.chain import list_chains

from harness.ansible import run_module

SIZE = 4 * 1024 * 1024


def sha256(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def qemu_io(path, command):
    return subprocess.run(['qemu-io', '-f', 'qcow2', '-c', command, path], check=True, stdout=subprocess.PIPE,
                          text=True).stdout


def byte_at(path, offset):
    out = qemu_io(path, f'read -v {offset} 1')
    return int(out.split(':', 1)[1].split()[0], 16)


def make_chain(dest, chain, points, devices=('vda',)):
    """points: [(point id, {device: [(offset, byte)]})]: the first full, the others incremental,
    each incremental file backed (relative name) by the previous one of its device."""
    chain_dir = os.path.join(str(dest), chain)
    os.makedirs(chain_dir)
    manifest = {'format': 1, 'chain': chain, 'bitmap': 'qemu-vm-' + chain, 'created': '2026-12-01T00:00:00Z',
                'vm': {'uuid': None, 'name': 'test'},
                'disks': [{'device': d, 'node': 'n-' + d, 'virtual_size': SIZE} for d in devices], 'points': []}
    previous = None
    for index, (point, writes) in enumerate(points):
        files = []
        for device in devices:
            name = f'{point}.{device}.qcow2'
            path = os.path.join(chain_dir, name)
            cmd = ['qemu-img', 'create', '-q', '-f', 'qcow2']
            if previous:
                cmd += ['-b', f'{previous}.{device}.qcow2', '-F', 'qcow2']
            subprocess.run(cmd + [path, str(SIZE)], check=True, cwd=chain_dir)
            for offset, value in writes.get(device, []):
                # write through the file alone, as a backup job does (backing not opened)
                subprocess.run(['qemu-io', '-c', f'write -P {value} {offset} 64k',
                                'json:' + json.dumps({'driver': 'qcow2', 'backing': None,
                                                      'file': {'driver': 'file', 'filename': path}})],
                               check=True, stdout=subprocess.DEVNULL)
            files.append({'device': device, 'path': name, 'bytes': os.path.getsize(path), 'sha256': sha256(path),
                          'virtual_size': SIZE})
        manifest['points'].append({'point': point, 'mode': 'incremental' if previous else 'full', 'parent': previous,
                                   'time': f'2026-12-01T00:0{index}:00Z', 'frozen_ms': 1, 'quiesced': False,
                                   'files': files})
        previous = point
    with open(os.path.join(chain_dir, 'manifest.json'), 'w') as handle:
        json.dump(manifest, handle)
    return chain_dir


@pytest.fixture
def dest(tmp_path):
    root = tmp_path / 'dest'
    root.mkdir()
    make_chain(root, 'C1', [('C1', {'vda': [(0, 1)], 'vdb': [(0, 5)]})], devices=('vda', 'vdb'))
    make_chain(root, 'C2', [('C2', {'vda': [(0, 1), (65536, 1)]}), ('P2', {'vda': [(0, 2)]}),
                            ('P3', {'vda': [(65536, 3)]})])
    return root


def test_selection_defaults_to_the_newest_chain_and_point(dest):
    chains = list_chains(str(dest))
    chosen = restore.select(chains, None, None, None)
    assert (chosen.chain, chosen.point['point'], chosen.device) == ('C2', 'P3', 'vda')
    assert [os.path.basename(f['path']) for f in chosen.files] == ['C2.vda.qcow2', 'P2.vda.qcow2', 'P3.vda.qcow2']
    assert restore.select(chains, None, 'P2', None).files[-1]['point'] == 'P2'
    assert restore.select(chains, None, 'C1', 'vdb').chain == 'C1'


@pytest.mark.parametrize('chain, point, device, parameter, words', [
    ('C9', None, None, 'chain', 'not in dest'),
    (None, 'P9', None, 'point', 'in no chain'),
    ('C1', 'P2', 'vda', 'point', 'not in chain C1'),
    ('C1', None, None, 'device', 'choose one'),
    ('C2', None, 'vdz', 'device', 'not in chain'),
])
def test_bad_selection_names_the_parameter(dest, chain, point, device, parameter, words):
    with pytest.raises(errors.ParameterError) as caught:
        restore.select(list_chains(str(dest)), chain, point, device)
    assert caught.value.parameter == parameter and words in str(caught.value)


def test_empty_dest_is_named(tmp_path):
    with pytest.raises(errors.ParameterError) as caught:
        restore.select([], None, None, None)
    assert caught.value.parameter == 'dest'


def test_target_checks(tmp_path):
    with pytest.raises(errors.ParameterError, match='absolute'):
        restore.check_target('out.qcow2', False)
    with pytest.raises(errors.ParameterError, match='does not exist'):
        restore.check_target(str(tmp_path / 'no' / 'out.qcow2'), False)
    existing = tmp_path / 'there.qcow2'
    existing.write_bytes(b'x')
    with pytest.raises(errors.ParameterError, match='force'):
        restore.check_target(str(existing), False)
    assert restore.check_target(str(existing), True) == str(existing)


def test_target_inside_a_chain_is_refused(dest):
    with pytest.raises(errors.ParameterError, match='inside the backup chain'):
        restore.check_not_in_chain(str(dest / 'C2' / 'x.qcow2'), list_chains(str(dest)))


def test_a_damaged_file_is_named_before_anything_is_written(dest):
    chosen = restore.select(list_chains(str(dest)), None, None, None)
    with open(chosen.files[1]['path'], 'r+b') as handle:
        handle.seek(200000)
        handle.write(b'\x01')
    with pytest.raises(BackupCorruptError) as caught:
        restore.verify_files(chosen)
    assert 'P2.vda.qcow2' in str(caught.value) and 'sha256' in str(caught.value)


def test_not_enough_space_is_named(monkeypatch, tmp_path):
    class Tiny:
        f_bavail, f_frsize = 10, 4096
    monkeypatch.setattr(restore.os, 'statvfs', lambda path: Tiny())
    with pytest.raises(errors.ParameterError) as caught:
        restore.check_space(str(tmp_path / 'out.qcow2'), 64 * 1048576)
    assert caught.value.parameter == 'target' and 'not enough space' in str(caught.value)


def test_each_point_converts_to_the_disk_as_it_was(dest, tmp_path):
    chains = list_chains(str(dest))
    expected = {'C2': (1, 1), 'P2': (2, 1), 'P3': (2, 3)}
    for point, (first, second) in expected.items():
        target = str(tmp_path / f'{point}.qcow2')
        chosen = restore.select(chains, None, point, None)
        restore.verify_files(chosen)
        done = restore.convert(chosen, target, 30)
        assert done['virtual_size'] == SIZE and done['bytes'] > 0
        assert (byte_at(target, 0), byte_at(target, 65536), byte_at(target, 131072)) == (first, second, 0)
        info = json.loads(subprocess.run(['qemu-img', 'info', '--output=json', target], check=True,
                                         stdout=subprocess.PIPE).stdout)
        assert 'backing-filename' not in info
    assert sorted(os.listdir(str(tmp_path))) == ['C2.qcow2', 'P2.qcow2', 'P3.qcow2', 'dest']


def test_a_failed_conversion_leaves_nothing(dest, tmp_path):
    chosen = restore.select(list_chains(str(dest)), None, None, None)
    with open(chosen.files[0]['path'], 'r+b') as handle:
        handle.write(bytes(512))  # no longer a qcow2 header
    chosen.files[0]['sha256'] = None  # no hash to check: qemu-img's own failure is the error
    with pytest.raises(errors.CommandError):
        restore.convert(chosen, str(tmp_path / 'out.qcow2'), 30)
    assert sorted(os.listdir(str(tmp_path))) == ['dest']


@pytest.mark.parametrize('damage', ['flipped', 'missing'])
def test_a_file_damaged_after_the_checks_fails_the_conversion_and_keeps_the_target(dest, tmp_path, damage):
    chosen = restore.select(list_chains(str(dest)), None, None, None)
    assert restore.check_files(chosen)  # what the module checks before converting
    target = tmp_path / 'out.qcow2'
    target.write_bytes(b'the disk being replaced')
    path = chosen.files[1]['path']
    if damage == 'missing':
        os.unlink(path)
    else:
        with open(path, 'r+b') as handle:
            handle.seek(200000)
            handle.write(b'\x01')
    with pytest.raises(BackupCorruptError) as caught:  # checked while qemu-img converts
        restore.convert(chosen, str(target), 30)
    assert 'P2.vda.qcow2' in str(caught.value) and ('sha256' in str(caught.value) or 'missing' in str(caught.value))
    assert target.read_bytes() == b'the disk being replaced' and sorted(os.listdir(str(tmp_path))) == ['dest', 'out.qcow2']


def test_the_module_check_mode_diff_and_refusal_of_an_existing_target(dest, tmp_path):
    target = str(tmp_path / 'restored.qcow2')
    args = {'dest': str(dest), 'target': target}
    checked = run_module('qemu_backup_restore', args, check=True, diff=True)
    assert checked.changed and not checked.failed, checked['output']
    assert (checked['chain'], checked['point'], checked['mode'], checked['device']) == ('C2', 'P3', 'incremental', 'vda')
    assert not os.path.exists(target) and checked['bytes'] == 0 and '+++ after' in checked['output']
    done = run_module('qemu_backup_restore', args)
    assert done.changed and not done.failed and done['bytes'] == os.path.getsize(target)
    assert len(done['files']) == 3 and not done['replaced']
    again = run_module('qemu_backup_restore', args)
    assert again.failed and again['parameter'] == 'target' and 'already exists' in again['msg']
    forced = run_module('qemu_backup_restore', dict(args, force=True, point='C2'))
    assert forced.changed and forced['replaced'] and byte_at(target, 65536) == 1
    relative = run_module('qemu_backup_restore', dict(args, dest='backups'))
    assert relative.failed and relative['parameter'] == 'dest'
