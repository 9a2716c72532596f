# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Galaxy artifact as users get it (`make artifact`).

`make artifact` builds the tarball with `ansible-galaxy collection build` into
$QEMU_VM_ARTIFACT_DIR and installs it with `ansible-galaxy collection install` into
$QEMU_VM_ARTIFACT_DIR/collections; these tests check the tarball's listing and run a
module of the installed copy, and nothing else, against a real VM.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import tarfile

import pytest

from harness.ansible import BIN, run_module
from harness.guest import VM, ensure_guest

ARTIFACT_DIR = os.environ.get('QEMU_VM_ARTIFACT_DIR', '')
INSTALLED = os.path.join(ARTIFACT_DIR, 'collections')
# Only the installed copy is visible to ansible: not the repository, not site-packages.
INSTALLED_ENV = {'ANSIBLE_COLLECTIONS_PATH': INSTALLED, 'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'False'}

# Top-level entries and path parts that are development state, never content.
BANNED_PARTS = ('.cache', '.git', '.venv', 'venv', '.pytest_cache', '__pycache__', '.ansible', '.molecule',
                '.tox', '.ci')
BANNED_PREFIXES = ('build/', 'bench/output/', 'tests/output/', 'docs/site/', '.venv')
BANNED_SUFFIXES = ('.pyc', '.tar.gz', '.retry')


@pytest.fixture(scope='module')
def tarball():
    assert ARTIFACT_DIR, 'QEMU_VM_ARTIFACT_DIR is not set (run make artifact)'
    found = glob.glob(os.path.join(ARTIFACT_DIR, 'qemu-vm-*.tar.gz'))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope='module')
def names(tarball):
    with tarfile.open(tarball) as tar:
        return tar.getnames()


def test_tarball_holds_the_collection(names):
    for required in ('MANIFEST.json', 'FILES.json', 'README.md', 'LICENSE', 'meta/runtime.yml',
                     'meta/execution-environment.yml', 'requirements.txt', 'bindep.txt',
                     'plugins/modules/qemu_vm_info.py', 'plugins/module_utils/_transport/qmp.py',
                     'roles/backup/meta/argument_specs.yml', 'changelogs/changelog.yaml',
                     'playbooks/molecule_create.yml', 'playbooks/molecule_destroy.yml', 'playbooks/molecule/teardown.yml',
                     'playbooks/molecule/vars.yml', 'docs/docsite/extra-docs.yml', 'docs/docsite/rst/guide_molecule.rst'):
        assert required in names, required


def test_tarball_leaves_out_caches_venvs_and_build_trees(names):
    leaked = [n for n in names
              if set(n.split('/')) & set(BANNED_PARTS)
              or n.startswith(BANNED_PREFIXES) or n.endswith(BANNED_SUFFIXES)]
    assert not leaked, leaked[:20]


def test_tarball_version_is_galaxy_version(tarball):
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           'galaxy.yml')) as handle:
        version = [line.split(':', 1)[1].strip() for line in handle if line.startswith('version:')][0]
    assert os.path.basename(tarball) == f'qemu-vm-{version}.tar.gz'


def test_collection_is_installed_only_in_the_fresh_path():
    proc = subprocess.run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'list', 'qemu.vm', '--format', 'json'],
                          env=dict(os.environ, **INSTALLED_ENV), capture_output=True, text=True, check=True)
    listing = json.loads(proc.stdout)
    assert list(listing) == [os.path.join(INSTALLED, 'ansible_collections')], listing
    assert 'qemu.vm' in listing[os.path.join(INSTALLED, 'ansible_collections')]


def test_installed_module_reads_a_real_vm(tmp_path):
    vm = VM(tmp_path / 'vm', name='artifact-check', images=ensure_guest())
    try:
        vm.start(wait_agent=True, timeout=90)
        result = run_module('qemu.vm.qemu_vm_info', {'qmp': vm.qmp_path, 'qga': vm.qga_path}, env=INSTALLED_ENV)
    finally:
        vm.stop()
    assert result.get('failed') is not True, result['output']
    assert result['status'] == 'running', result
    assert result['name'] == 'artifact-check', result
    assert result['agent']['available'] is True, result
    # The module that ran came from the installed copy: ansible-doc resolves it there.
    doc = subprocess.run([os.path.join(BIN, 'ansible-doc'), '--json', 'qemu.vm.qemu_vm_info'],
                         env=dict(os.environ, **INSTALLED_ENV), capture_output=True, text=True, check=True)
    filename = json.loads(doc.stdout)['qemu.vm.qemu_vm_info']['doc']['filename']
    assert filename.startswith(INSTALLED + os.sep), filename
