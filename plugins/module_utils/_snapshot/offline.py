# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Reverting the images of a VM that is not running to an internal snapshot (qemu-img snapshot -a).

QEMU cannot load a snapshot without RAM state (a disk-only one) into a running VM; this is the
way to restore one. The images are named by path; every check (absolute, existing, qcow2, not in
use, the snapshot on every image) is done on all of them before the first is changed.

* `check_images(paths)`: pure input checks;
* `read_images(paths, timeout)` -> a SnapshotView whose "nodes" are the image paths;
* `plan_image_restore(view, tag)` -> the snapshot summary, or VMStateError (pure);
* `restore_offline(params, check_mode, diff, warn)`: the whole task, returns the result dict.

No Ansible imports here.
"""

from __future__ import annotations

import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._qemu.qemu_img import check_image_path, image_info, run_qemu_img
from ansible_collections.qemu.vm.plugins.module_utils._snapshot.view import SnapshotView, snapshot_record


def check_images(paths: list | None, option: str = 'images') -> list:
    """Absolute paths of existing files, duplicates dropped, order kept."""
    result = []
    for path in paths or []:
        path = check_image_path(path, option)
        if path not in result:
            result.append(path)
    if not result:
        raise ParameterError(option, f'{option} must list at least one image path')
    return result


def view_of_images(infos: dict) -> SnapshotView:
    """A SnapshotView over {path: qemu-img info}: the paths stand for the nodes."""
    nodes, tables = [], {}
    for path, info in infos.items():
        driver = info.get('format')
        nodes.append({'node_name': path, 'driver': driver, 'file': path, 'read_only': False, 'device': None,
                      'top': True, 'backing_file': info.get('backing-filename'),
                      'virtual_size': info.get('virtual-size'), 'can_snapshot': driver == 'qcow2',
                      'snapshots': [s.get('name') for s in info.get('snapshots', [])]})
        tables[path] = [snapshot_record(s) for s in info.get('snapshots', [])]
        nodes[-1]['bitmaps'] = [b.get('name') for b in
                                ((info.get('format-specific') or {}).get('data') or {}).get('bitmaps', [])]
    return SnapshotView(nodes, tables)


def read_images(paths: list, timeout: float) -> SnapshotView:
    """Read every image (qemu-img info takes its lock: an image in use raises ImageInUseError)."""
    return view_of_images(dict((path, image_info(path, timeout)) for path in paths))


def plan_image_restore(view: SnapshotView, tag: str) -> dict:
    """The snapshot to revert to, found on every image, or VMStateError naming what is wrong."""
    paths = [n['node_name'] for n in view.nodes]
    for node in view.nodes:
        if not node['can_snapshot']:
            raise ParameterError('images', 'images: {0} is a {1} image, which cannot hold internal snapshots; only '
                                           'qcow2 can'.format(node['node_name'], node['driver']))
    with_bitmaps = [(n['node_name'], n['bitmaps']) for n in view.nodes if n.get('bitmaps')]
    if with_bitmaps:
        path, names = with_bitmaps[0]
        raise VMStateError(
            'image {0} holds persistent dirty bitmaps ({1}), and qemu-img cannot revert an image with bitmaps to a '
            'snapshot; nothing was reverted. Remove them first (qemu-img bitmap --remove {0} NAME); a bitmap '
            'qemu-vm-* belongs to an external backup chain, and the next qemu.vm.qemu_backup then starts a new '
            'full chain'.format(path, ', '.join(names)))
    holders = view.holders(tag, paths)
    if len(holders) < len(paths):
        missing = [p for p in paths if p not in holders]
        raise VMStateError('snapshot {0!r} is not in {1}; nothing was reverted. Snapshots there: {2}'.format(
            tag, missing, view.names(missing) or 'none'))
    return view.summary(tag, paths)


def restore_offline(params: dict, check_mode: bool, diff: bool, warn) -> dict:
    """state=restored with `images`: revert each image with qemu-img snapshot -a, all checked first."""
    tag, timeout = params['name'], params['timeout']
    paths = check_images(params['images'])
    view = read_images(paths, timeout)
    snapshot = plan_image_restore(view, tag)
    if snapshot['ram']:
        warn(f'snapshot {tag!r} also holds RAM state; reverting the images offline restores its disk content only, and '
             'the VM boots from it as after a power loss')
    before = view.names(paths)
    result = dict(changed=True, devices=paths, images=paths, vmstate=None, method='qemu-img', duration_ms=0,
                  downtime_ms=0, status=None, snapshot=snapshot)
    if not check_mode:
        started = time.monotonic()
        for path in paths:
            run_qemu_img(['snapshot', '-a', tag, path], timeout, f'reverting {path} to snapshot {tag!r}',
                         image=path)
        result['duration_ms'] = int(round((time.monotonic() - started) * 1000))
        view = read_images(paths, timeout)
        result['snapshot'] = view.summary(tag, paths)
    if diff:
        result['diff'] = {'before': {'snapshots': before}, 'after': {'snapshots': view.names(paths)}}
    return result
