# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as users receive it: docs render, the tarball is clean, the group is complete."""

from __future__ import annotations

import glob
import os
import subprocess
import tarfile

import pytest
import yaml

from harness.ansible import BIN, REPO, ansible_env

MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'plugins', 'modules', '*.py')))


@pytest.mark.parametrize('module', MODULES)
def test_ansible_doc_renders(module):
    proc = subprocess.run([os.path.join(BIN, 'ansible-doc'), 'qemu.vm.' + module], env=ansible_env(),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert 'RETURN VALUES' in proc.stdout
    assert 'qemu.vm.' + module in proc.stdout
    assert '[WARNING]' not in proc.stderr, proc.stderr


def test_every_module_is_in_the_action_group():
    with open(os.path.join(REPO, 'meta', 'runtime.yml')) as handle:
        runtime = yaml.safe_load(handle)
    assert sorted(runtime['action_groups']['qemu']) == MODULES


def test_galaxy_build_leaves_out_caches_and_outputs(tmp_path):
    subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', '--output-path', str(tmp_path), REPO],
                   env=ansible_env(), check=True, stdout=subprocess.PIPE)
    tarballs = glob.glob(str(tmp_path / 'qemu-vm-*.tar.gz'))
    assert len(tarballs) == 1
    with tarfile.open(tarballs[0]) as tar:
        names = tar.getnames()
    assert 'plugins/modules/qemu_vm_info.py' in names
    banned = ('.cache', 'build', '.venv', 'venv', 'tests/output', '.pytest_cache', '.git')
    leaked = [n for n in names if n.split('/')[0] in banned or n.startswith(banned) or '__pycache__' in n]
    assert not leaked, leaked[:20]
