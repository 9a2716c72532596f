# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which process is the VM: the pid file's, checked against /proc (a fake /proc tree here)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._vm.process import find_vm_process, is_vm_process
from ansible_collections.qemu.vm.plugins.module_utils._vm.rundir import RunDir

ME = {os.geteuid()}


@pytest.fixture
def fake(tmp_path):
    proc = tmp_path / 'proc'
    proc.mkdir()
    paths = RunDir(str(tmp_path / 'run'))
    paths.create()

    def process(pid, argv):
        (proc / str(pid)).mkdir()
        (proc / str(pid) / 'cmdline').write_bytes(b''.join(arg.encode() + b'\0' for arg in argv))
    return str(proc), paths, process


def qemu(paths, binary='/usr/bin/qemu-system-x86_64'):
    return [binary, '-name', 'web1', '-daemonize', '-pidfile', paths.pidfile]


def test_is_vm_process(fake):
    proc, paths, process = fake
    process(100, qemu(paths))
    process(101, qemu(RunDir('/run/qemu-vm/other')))
    process(102, ['/usr/bin/python3', '-pidfile', paths.pidfile])
    process(103, [])  # a zombie: empty command line
    process(104, qemu(paths, binary='/usr/bin/qemu-img'))
    assert is_vm_process(100, paths.pidfile, ME, proc)
    assert not is_vm_process(100, paths.pidfile, {os.geteuid() + 1}, proc)  # not owned by who may run it
    for pid in (101, 102, 103, 104, 999):
        assert not is_vm_process(pid, paths.pidfile, {os.geteuid()}, proc), pid


def test_find_vm_process_trusts_the_pid_file_only_when_it_points_at_the_vm(fake):
    proc, paths, process = fake
    process(200, ['/usr/sbin/sshd'])
    process(201, qemu(paths))
    with open(paths.pidfile, 'w', encoding='ascii') as handle:
        handle.write('200\n')  # stale: the pid was recycled by another program
    assert find_vm_process(paths, {os.geteuid()}, proc) == 201
    with open(paths.pidfile, 'w', encoding='ascii') as handle:
        handle.write('201\n')
    assert find_vm_process(paths, {os.geteuid()}, proc) == 201
    os.unlink(os.path.join(proc, '201', 'cmdline'))
    assert find_vm_process(paths, {os.geteuid()}, proc) is None
