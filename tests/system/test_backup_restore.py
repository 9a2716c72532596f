# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""External backups end to end: qemu_backup (full, then incremental) of a VM with two qcow2 disks,
qemu_backup_restore of each point, and the tiny guest booted on the restored image, which must
hold exactly the marker files written before that point (sha256 checked inside the guest)."""

from __future__ import annotations

import hashlib

from harness.ansible import run_module
from harness.guest import VM

MARKER_A = b'marker A, written before the full backup\n' * 100
MARKER_B = b'marker B, written before the incremental\n' * 25000  # about 1 MiB


def write_marker(vm, name, data):
    code, _out, err = vm.guest_exec(['sh', '-c', f'cat > /data/{name} && sync'], input=data)
    assert code == 0, err


def guest_sha256(vm, name):
    """sha256 of /data/<name> computed in the guest, or None when the file is not there."""
    code, out, _err = vm.guest_exec(['sh', '-c', f'test -e /data/{name} && sha256sum /data/{name}'])
    return out.split()[0].decode() if code == 0 else None


def test_restore_of_each_point_boots_with_the_markers_of_that_point(vm_factory, guest_images, tmp_path):
    dest = tmp_path / 'backups'
    dest.mkdir()
    source = vm_factory(disks=[{'format': 'qcow2', 'size': '16M'}])
    base = {'qmp': source.qmp_path, 'qga': source.qga_path, 'dest': str(dest)}

    write_marker(source, 'a.bin', MARKER_A)
    full = run_module('qemu_backup', base)
    assert full.changed and not full.failed, full['output']
    assert full['mode'] == 'full' and sorted(f['device'] for f in full['files']) == ['vda', 'vdb']
    write_marker(source, 'b.bin', MARKER_B)
    incremental = run_module('qemu_backup', base)
    assert incremental.changed and not incremental.failed, incremental['output']
    assert incremental['mode'] == 'incremental' and incremental['chain'] == full['chain']

    # The restored VM boots from its own workdir's disk0.qcow2: restore straight into it.
    restored = VM(tmp_path / 'restored', images=guest_images)
    target = restored.disks[0]['path']
    latest = run_module('qemu_backup_restore', {'dest': str(dest), 'device': 'vda', 'target': target})
    assert latest.changed and not latest.failed, latest['output']
    assert (latest['point'], latest['mode'], len(latest['files'])) == (incremental['point'], 'incremental', 2)
    try:
        restored.start()
        assert guest_sha256(restored, 'a.bin') == hashlib.sha256(MARKER_A).hexdigest()
        assert guest_sha256(restored, 'b.bin') == hashlib.sha256(MARKER_B).hexdigest()
    finally:
        restored.stop()

    at_full = run_module('qemu_backup_restore', {'dest': str(dest), 'device': 'vda', 'target': target,
                                                 'point': full['point'], 'force': True})
    assert at_full.changed and not at_full.failed and at_full['replaced'], at_full['output']
    assert (at_full['point'], at_full['mode'], len(at_full['files'])) == (full['point'], 'full', 1)
    try:
        restored.start()
        assert guest_sha256(restored, 'a.bin') == hashlib.sha256(MARKER_A).hexdigest()
        assert guest_sha256(restored, 'b.bin') is None
        # The image of a running VM is never replaced, even with force.
        busy = run_module('qemu_backup_restore', {'dest': str(dest), 'device': 'vda', 'target': target,
                                                  'force': True})
        assert busy.failed and busy['error_type'] == 'ImageInUseError', busy['output']
        assert guest_sha256(restored, 'b.bin') is None
    finally:
        restored.stop()
