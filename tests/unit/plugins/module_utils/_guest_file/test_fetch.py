# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""state=fetched (_guest_file.fetch) against this machine's files through harness.local_guest: the
copy is private until it has its final attributes, reads are bounded, failures leave nothing."""

from __future__ import annotations

import os

import pytest

from harness.local_guest import LocalAgent

from ansible_collections.qemu.vm.plugins.module_utils._guest_file import fetch as gff
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import GuestFileTooLargeError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.files import GuestFileSystem


@pytest.fixture
def guest_file(tmp_path):
    path = tmp_path / 'guest' / 'app.log'
    path.parent.mkdir()
    path.write_bytes(b'guest data\n' * 100)
    return path


@pytest.fixture
def out(tmp_path):
    directory = tmp_path / 'out'
    directory.mkdir()
    return directory


def fetched(path, dest, **kwargs):
    guest = GuestFileSystem(LocalAgent(), 4096)
    return gff.ensure_fetched(guest, str(path), str(dest), **kwargs)


def test_a_new_dest_is_private_and_finish_runs_before_the_rename(guest_file, out):
    dest = out / 'app.log'
    seen = []

    def finish(temp):
        seen.append((os.path.basename(temp), os.stat(temp).st_mode & 0o777, dest.exists()))
        os.chmod(temp, 0o640)
    result = fetched(guest_file, dest, finish=finish)
    assert result['changed'] and dest.read_bytes() == guest_file.read_bytes()
    (name, mode, existed), = seen
    assert name.startswith(f'.app.log.{os.getpid()}.') and mode == 0o600 and not existed
    assert dest.stat().st_mode & 0o777 == 0o640 and os.listdir(str(out)) == ['app.log']


def test_a_replaced_dest_keeps_its_mode_and_an_unchanged_one_is_not_touched(guest_file, out):
    dest = out / 'app.log'
    dest.write_bytes(b'old')
    dest.chmod(0o604)
    assert fetched(guest_file, dest)['changed']
    assert dest.stat().st_mode & 0o777 == 0o604
    inode = dest.stat().st_ino
    assert not fetched(guest_file, dest)['changed'] and dest.stat().st_ino == inode


@pytest.mark.parametrize('max_size', [None, 4096])
def test_dev_zero_stops_at_its_bound_and_leaves_nothing(tmp_path, out, max_size):
    link = tmp_path / 'guest-link'
    link.symlink_to('/dev/zero')
    with pytest.raises(GuestFileTooLargeError) as info:
        fetched(link, out / 'x', max_size=max_size)
    assert info.value.size_limit == (max_size or 1024 * 1024)
    assert os.listdir(str(out)) == []


def test_max_size_refuses_a_larger_file_before_reading(guest_file, out):
    with pytest.raises(GuestFileTooLargeError):
        fetched(guest_file, out / 'x', max_size=100)
    assert os.listdir(str(out)) == []
    assert fetched(guest_file, out / 'x', max_size=1100)['size'] == 1100


def test_check_mode_reads_bounded_and_writes_nothing(tmp_path, out):
    with pytest.raises(GuestFileTooLargeError):
        fetched('/dev/zero', out / 'x', check_mode=True)
    assert os.listdir(str(out)) == []


def test_stale_fetch_temps_of_dead_runs_are_removed(tmp_path):
    dest = tmp_path / 'app.log'
    dead = tmp_path / '.app.log.999999999.abc.qemu-vm.tmp'  # no such pid
    mine = tmp_path / f'.app.log.{os.getpid()}.def.qemu-vm.tmp'  # a run in progress
    other = tmp_path / '.other.log.999999999.abc.qemu-vm.tmp'
    for path in (dead, mine, other):
        path.write_bytes(b'partial')
    assert gff.remove_stale_temps(str(dest)) == [str(dead)]
    assert not dead.exists() and mine.exists() and other.exists()
