# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_snapshot.offline: the offline revert of disk-only snapshots (real qemu-img on files made here;
no VM)."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._qemu import qemu_img
from ansible_collections.qemu.vm.plugins.module_utils._qemu.errors import ImageInUseError
from ansible_collections.qemu.vm.plugins.module_utils._snapshot import offline

from .helpers import params


def make_image(path, fmt='qcow2', snapshot=None):
    subprocess.run(['qemu-img', 'create', '-q', '-f', fmt, str(path), '1M'], check=True)
    if snapshot:
        subprocess.run(['qemu-img', 'snapshot', '-c', snapshot, str(path)], check=True)
    return str(path)


def write_byte(path, value):
    """Write one guest byte at offset 0 through qemu-io, so the image content changes."""
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', f'write -P {value} 0 4k', path], check=True,
                   stdout=subprocess.DEVNULL)


def read_byte(path):
    out = subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'read -v 0 1', path], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return int(out.split(':', 1)[1].split()[0], 16)


def test_image_paths_must_be_absolute_and_exist(tmp_path):
    with pytest.raises(errors.ParameterError, match='not an absolute path'):
        offline.check_images(['disk.qcow2'])
    with pytest.raises(errors.ParameterError, match='does not exist'):
        offline.check_images([str(tmp_path / 'nope.qcow2')])
    with pytest.raises(errors.ParameterError, match='at least one'):
        offline.check_images([])


def test_offline_revert_checks_every_image_before_changing_one(tmp_path):
    good = make_image(tmp_path / 'a.qcow2', snapshot='s')
    lacking = make_image(tmp_path / 'b.qcow2')
    write_byte(good, 7)
    with pytest.raises(errors.VMStateError, match='is not in'):
        offline.restore_offline(params(state='restored', name='s', images=[good, lacking]), False, False, print)
    assert read_byte(good) == 7
    raw = make_image(tmp_path / 'c.raw', fmt='raw')
    with pytest.raises(errors.ParameterError, match='raw image'):
        offline.restore_offline(params(state='restored', name='s', images=[good, raw]), False, False, print)


def test_offline_revert_check_mode_then_real(tmp_path):
    first = make_image(tmp_path / 'a.qcow2', snapshot='s')
    second = make_image(tmp_path / 'b.qcow2', snapshot='s')
    write_byte(first, 7)
    write_byte(second, 9)
    warnings = []
    checked = offline.restore_offline(params(state='restored', name='s', images=[first, second]), True, True,
                                      warnings.append)
    assert checked['changed'] and read_byte(first) == 7
    assert checked['diff'] == {'before': {'snapshots': ['s']}, 'after': {'snapshots': ['s']}}
    done = offline.restore_offline(params(state='restored', name='s', images=[first, second]), False, False,
                                   warnings.append)
    assert done['changed'] and done['method'] == 'qemu-img' and done['images'] == [first, second]
    assert done['snapshot']['ram'] is False and done['snapshot']['devices'] == [first, second]
    assert read_byte(first) == 0 and read_byte(second) == 0
    assert warnings == []


def test_a_lock_failure_is_an_image_in_use_error(monkeypatch, tmp_path):
    image = make_image(tmp_path / 'a.qcow2')

    def locked(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 1, '', f"qemu-img: Could not open '{image}': Failed to get \"write\" "
                                                        f"lock\nIs another process using the image [{image}]?\n")
    monkeypatch.setattr(qemu_img.subprocess, 'run', locked)
    with pytest.raises(ImageInUseError) as caught:
        qemu_img.run_qemu_img(['snapshot', '-a', 's', image], 5, 'reverting', image=image)
    assert image in str(caught.value) and 'shut the VM down' in str(caught.value)
    assert caught.value.details() == {'image': image}


def test_an_image_with_a_persistent_bitmap_is_refused_before_any_revert(tmp_path):
    first = make_image(tmp_path / 'a.qcow2', snapshot='s')
    second = make_image(tmp_path / 'b.qcow2', snapshot='s')
    subprocess.run(['qemu-img', 'bitmap', '--add', second, 'qemu-vm-chain'], check=True)
    write_byte(first, 7)
    with pytest.raises(errors.VMStateError) as caught:
        offline.restore_offline(params(state='restored', name='s', images=[first, second]), False, False, print)
    assert second in str(caught.value) and 'qemu-vm-chain' in str(caught.value) and 'bitmap --remove' in str(caught.value)
    assert read_byte(first) == 7
