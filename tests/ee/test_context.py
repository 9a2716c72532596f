# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment build context written by `make ee` (ansible-builder create).

No container engine here: the checks are that the context holds what the image build needs
(the collection tarball, the galaxy requirements, a Containerfile with our ansible-core), and
that ansible-builder's own introspection script, run on the collection as `make artifact`
installed it, reads exactly requirements.txt and bindep.txt through meta/execution-environment.yml.
"""

from __future__ import annotations

import filecmp
import glob
import os
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EE_DIR = os.environ.get('QEMU_VM_EE_DIR', '')
ARTIFACT_DIR = os.environ.get('QEMU_VM_ARTIFACT_DIR', '')
CONTEXT = os.path.join(EE_DIR, 'context')


def requirement_lines(path):
    with open(os.path.join(REPO, path)) as handle:
        return [line.strip() for line in handle if line.strip() and not line.startswith('#')]


def test_context_has_a_containerfile_with_our_ansible_core():
    with open(os.path.join(REPO, 'ee', 'execution-environment.yml')) as handle:
        definition = yaml.safe_load(handle)
    assert definition['version'] == 3
    with open(os.path.join(CONTEXT, 'Containerfile')) as handle:
        containerfile = handle.read()
    assert definition['dependencies']['ansible_core']['package_pip'] in containerfile
    assert definition['images']['base_image']['name'] in containerfile
    assert 'introspect.py introspect' in containerfile


def test_context_carries_the_built_collection():
    tarballs = glob.glob(os.path.join(ARTIFACT_DIR, 'qemu-vm-*.tar.gz'))
    assert len(tarballs) == 1, tarballs
    copied = os.path.join(CONTEXT, '_build', 'collections', 'qemu-vm.tar.gz')
    assert filecmp.cmp(tarballs[0], copied, shallow=False)
    with open(os.path.join(CONTEXT, '_build', 'requirements.yml')) as handle:
        requirements = yaml.safe_load(handle)
    # The galaxy stage runs in /build, a copy of _build.
    names = [c['name'] for c in requirements['collections']]
    assert names == ['collections/qemu-vm.tar.gz'], names


def test_builder_introspection_reads_our_requirements():
    proc = subprocess.run([sys.executable, os.path.join(CONTEXT, '_build', 'scripts', 'introspect.py'),
                           'introspect', '--sanitize', os.path.join(ARTIFACT_DIR, 'collections')],
                          capture_output=True, text=True, check=True)
    found = yaml.safe_load(proc.stdout)
    # Each line is "<requirement>  # from collection qemu.vm".
    assert [line.split('#')[0].strip() for line in found['python']] == requirement_lines('requirements.txt'), found
    assert [line.split('#')[0].strip() for line in found['system']] == requirement_lines('bindep.txt'), found
    assert all(line.endswith('# from collection qemu.vm') for line in found['python'] + found['system']), found
