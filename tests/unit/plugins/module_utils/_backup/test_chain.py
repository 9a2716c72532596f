# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_backup.chain on real files: what a backup writes is private whatever the umask, dest that others can
open is named, and retention removes only the chains it is given. Another uid trying to read a real
backup is tested in tests/system/test_qemu_backup.py."""

from __future__ import annotations

import contextlib
import os
import stat

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._backup import chain


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
