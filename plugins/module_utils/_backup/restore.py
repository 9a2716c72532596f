# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Restoring one disk of an external backup chain (_backup_chain's layout) to a standalone qcow2.

* `check_target(target, force)`: the target path, its directory, and an existing target (pure, plus stat);
* `select(chains, chain, point, device)` -> a Selection: the chain, the point, the device and the files
  from the full point up to `point` (pure: decisions on manifests, ParameterError naming the option);
* `check_files(selection)`: every needed file exists with the manifest's size; `verify_hashes(selection)`:
  their sha256 (`verify_files` does both: check mode);
* `source_spec(selection)`: the qemu-img `json:` image that stacks those files in the manifest's order
  (so the restore follows the manifest, whatever backing names the files' headers hold);
* `convert(selection, target, ...)`: qemu-img convert into a temporary file beside the target while the files'
  sha256 are checked in a thread, then rename.
  The temporary file is created 0600 (mkstemp) before qemu-img writes into it, which keeps that mode, so the
  restored guest disk is never readable by other users.

The chain's files are only read; only the target (and its temporary file) is written. An existing target
that a running QEMU holds is refused (qemu-img cannot take its lock). No Ansible imports here.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading

from ansible_collections.qemu.vm.plugins.module_utils._backup.chain import MANIFEST, free_bytes
from ansible_collections.qemu.vm.plugins.module_utils._backup.errors import BackupCorruptError
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, QemuVMError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._util.hashing import sha256_file
from ansible_collections.qemu.vm.plugins.module_utils._qemu.qemu_img import image_info, run_qemu_img

#: Room kept free beyond the estimate of the target's size (qcow2 metadata, filesystem overhead).
SPACE_MARGIN = 16 * 1024 * 1024


class Selection:
    """What a restore reads: `files` ({device, path (absolute), bytes, sha256, virtual_size, point}),
    full point first, `point` last."""

    def __init__(self, entry, point, device, files):
        self.chain = entry['chain']
        self.dir = entry['dir']
        self.manifest = entry['manifest']
        self.point = point
        self.device = device
        self.files = files

    @property
    def virtual_size(self):
        return self.files[-1].get('virtual_size')

    def describe(self):
        return {'chain': self.chain, 'point': self.point['point'], 'mode': self.point['mode'], 'device': self.device,
                'time': self.point.get('time'), 'virtual_size': self.virtual_size,
                'files': [f['path'] for f in self.files]}


# -- input ----------------------------------------------------------------------------

def check_target(target: str | None, force: bool) -> str:
    """An absolute target in an existing directory; an existing target only with force."""
    if not target or not os.path.isabs(target):
        raise ParameterError('target', f'target must be an absolute path, got {target!r}')
    target = os.path.normpath(target)
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise ParameterError('target', f'target: the directory {parent} does not exist; create it first')
    if os.path.isdir(target):
        raise ParameterError('target', f'target {target} is a directory; give the path of the qcow2 file to create')
    if os.path.lexists(target) and not force:
        raise ParameterError('target', f'target {target} already exists; nothing was written. Remove it, choose another '
                                       'path, or set force: true to replace it')
    return target


def select(chains: list, chain: str | None, point: str | None, device: str | None) -> Selection:
    """The chain, point, device and files of a restore (chains: _backup_chain.list_chains, oldest first)."""
    if not chains:
        raise ParameterError('dest', 'dest holds no backup chain (no <chain>/manifest.json written by '
                                     'qemu.vm.qemu_backup)')
    names = [c['chain'] for c in chains]
    if chain is not None:
        entry = next((c for c in chains if c['chain'] == chain), None)
        if entry is None:
            raise ParameterError('chain', f'chain {chain!r} is not in dest; its chains are: {names}')
    elif point is not None:
        entry = next((c for c in reversed(chains) if point in _point_ids(c['manifest'])), None)
        if entry is None:
            raise ParameterError('point', f'point {point!r} is in no chain of dest (chains: {names})')
    else:
        entry = chains[-1]
    manifest = entry['manifest']
    ids = _point_ids(manifest)
    if not ids:
        raise ParameterError('chain', 'chain {0} has no complete point to restore'.format(entry['chain']))
    if point is None:
        point = ids[-1]
    elif point not in ids:
        raise ParameterError('point', 'point {0!r} is not in chain {1}; its points are: {2}'.format(
            point, entry['chain'], ids))
    devices = [d['device'] for d in manifest.get('disks', [])]
    if device is None:
        if len(devices) != 1:
            raise ParameterError('device', 'chain {0} holds {1} disks ({2}): choose one with device'.format(
                entry['chain'], len(devices), ', '.join(devices)))
        device = devices[0]
    elif device not in devices:
        raise ParameterError('device', 'device {0!r} is not in chain {1}; its disks are: {2}'.format(
            device, entry['chain'], ', '.join(devices)))
    return Selection(entry, _point(manifest, point), device, _files_up_to(entry, point, device))


def _point_ids(manifest):
    return [p['point'] for p in manifest.get('points', [])]


def _point(manifest, point_id):
    return next(p for p in manifest['points'] if p['point'] == point_id)


def _files_up_to(entry, point_id, device):
    """The device's files from the full point to `point_id`, following `parent`."""
    manifest = entry['manifest']
    files, seen, current = [], set(), _point(manifest, point_id)
    while True:
        if current['point'] in seen:
            raise VMStateError('the manifest of chain {0} has a loop in its points'.format(entry['chain']))
        seen.add(current['point'])
        found = next((f for f in current.get('files', []) if f.get('device') == device), None)
        if found is None:
            raise VMStateError('the manifest of chain {0} lists no file of {1} for point {2}'.format(
                entry['chain'], device, current['point']))
        files.insert(0, dict(found, path=os.path.join(entry['dir'], found['path']), point=current['point']))
        if current.get('mode') == 'full' or not current.get('parent'):
            if current.get('mode') != 'full':
                raise VMStateError('point {0} of chain {1} is incremental but has no parent'.format(
                    current['point'], entry['chain']))
            return files
        parents = [p for p in manifest['points'] if p['point'] == current['parent']]
        if not parents:
            raise VMStateError('point {0} of chain {1} names a parent {2} the manifest does not list'.format(
                current['point'], entry['chain'], current['parent']))
        current = parents[0]


def check_not_in_chain(target: str, chains: list) -> None:
    """The target must never overwrite a chain's file or manifest."""
    real = os.path.realpath(target)
    for entry in chains:
        if os.path.dirname(real) == os.path.realpath(entry['dir']):
            raise ParameterError('target', 'target {0} is inside the backup chain directory {1}; restore outside '
                                           'it so the chain is never written'.format(target, entry['dir']))


# -- checks on disk -------------------------------------------------------------------

def check_files(selection: Selection) -> list:
    """Every needed file exists and has the manifest's size; returns their paths (cheap: no reading)."""
    for item in selection.files:
        path = item['path']
        if not os.path.isfile(path):
            raise BackupCorruptError(path, 'is missing')
        size = os.path.getsize(path)
        if item.get('bytes') is not None and size != item['bytes']:
            raise BackupCorruptError(path, 'has {0} bytes, the manifest says {1}'.format(size, item['bytes']))
    return [item['path'] for item in selection.files]


def verify_hashes(selection: Selection) -> None:
    """Every needed file matches its sha256 in the manifest."""
    for item in selection.files:
        if not os.path.isfile(item['path']):
            raise BackupCorruptError(item['path'], 'is missing')
        if item.get('sha256') and sha256_file(item['path']) != item['sha256']:
            raise BackupCorruptError(item['path'], f'does not match its sha256 in {MANIFEST}')


def verify_files(selection: Selection) -> list:
    """Every needed file exists, has the manifest's size and sha256; returns their paths."""
    paths = check_files(selection)
    verify_hashes(selection)
    return paths


def space_needed(selection: Selection) -> int:
    """An upper bound of the target's size: the data of the files, at most the disk's size, plus a margin."""
    data = sum(item.get('bytes') or 0 for item in selection.files)
    if selection.virtual_size:
        data = min(data, selection.virtual_size)
    return data + SPACE_MARGIN


def check_space(target: str, needed: int, replaced: int = 0) -> None:
    free = free_bytes(os.path.dirname(target)) + replaced
    if free < needed:
        raise ParameterError('target', f'not enough space for target in {os.path.dirname(target)}: {free // 1048576} MiB free, '
                                       f'up to {needed // 1048576 + 1} MiB needed; nothing was written')


def check_target_not_in_use(target: str, timeout: float) -> None:
    """An existing target (force) must not be the disk of a running VM: qemu-img info takes its lock."""
    if os.path.isfile(target):
        image_info(target, timeout)


# -- the conversion -------------------------------------------------------------------

class _Background:
    """func(*args) in a thread; result() waits for it and raises what it raised."""

    def __init__(self, func, *args):
        self._error = None

        def run():
            try:
                func(*args)
            except BaseException as exc:  # pylint: disable=broad-except
                self._error = exc

        self._thread = threading.Thread(target=run, name='qemu-vm-verify', daemon=True)
        self._thread.start()

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error


def source_spec(selection: Selection) -> str:
    """A qemu-img `json:` image: the point's file, backed by each earlier file, the full one backed by nothing."""
    node = None
    for item in selection.files:
        layer = {'driver': 'qcow2', 'file': {'driver': 'file', 'filename': item['path']}, 'backing': node}
        node = layer
    return 'json:' + json.dumps(node, sort_keys=True)


def convert(selection: Selection, target: str, timeout: float) -> dict:
    """qemu-img convert into a temporary file beside `target`, check it, then rename over `target`.

    The files' sha256 are checked in a thread while qemu-img reads them (one pass less on the clock:
    hashing is CPU-bound, the conversion mostly I/O and qemu-img's own thread); `target` is replaced
    only when every file matched. A mismatch is reported as such, even when qemu-img failed too.
    """
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(target)}.', suffix='.partial',
                               dir=os.path.dirname(target))
    os.close(fd)
    hashing = _Background(verify_hashes, selection)
    try:
        what = 'converting point {0} of {1} into {2}'.format(selection.point['point'], selection.device, target)
        try:
            run_qemu_img(['convert', '-O', 'qcow2', source_spec(selection), tmp], timeout, what)
        finally:
            hashing.result()  # a corrupt file is the error to report, whatever qemu-img said
        info = image_info(tmp, timeout)
        if info.get('backing-filename') or info.get('virtual-size') != selection.virtual_size:
            raise VMStateError('the converted image is not the standalone {0}-byte disk expected (qemu-img info: '
                               'virtual size {1}, backing {2})'.format(selection.virtual_size, info.get('virtual-size'),
                                                                       info.get('backing-filename')))
        with open(tmp, 'rb') as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except (QemuVMError, OSError) as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise VMStateError(f'writing target {target} failed: {exc}; nothing was left behind') from exc
        raise
    return {'bytes': os.path.getsize(target), 'virtual_size': info.get('virtual-size')}
