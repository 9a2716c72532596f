# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The NoCloud seed, built by the host's real ISO tool and read back with isoinfo."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._vm.errors import MissingProgramError
from ansible_collections.qemu.vm.plugins.module_utils._vm.seed import build_seed, iso_tool

USER_DATA = '#cloud-config\npassword: s3cret\nruncmd: [[touch, /tmp/seeded]]\n'


def isoinfo(*args):
    return subprocess.run(['isoinfo'] + list(args), capture_output=True, text=True, check=True).stdout


def test_seed_has_label_cidata_and_the_files(tmp_path):
    target = tmp_path / 'seed.iso'
    files = {'user-data': USER_DATA, 'meta-data': 'instance-id: x\n', 'network-config': 'version: 2\n'}
    build_seed(files, str(target), iso_tool(), 30)
    assert 'Volume id: cidata' in isoinfo('-d', '-i', str(target))
    assert isoinfo('-i', str(target), '-J', '-x', '/user-data') == USER_DATA
    assert isoinfo('-i', str(target), '-R', '-x', '/network-config') == 'version: 2\n'
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert os.listdir(tmp_path) == ['seed.iso']  # the private work directory is gone


def test_missing_tool_names_the_packages():
    with pytest.raises(MissingProgramError) as info:
        iso_tool(which=lambda name: None)
    assert 'genisoimage' in str(info.value) and 'xorriso' in str(info.value)
    assert info.value.details()['program'] == 'genisoimage'
