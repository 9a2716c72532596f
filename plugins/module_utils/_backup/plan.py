# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""What one qemu_backup run does, decided from its parameters, the VM's disks and dest's chains.

Pure: `parse_request` -> a BackupRequest (ParameterError naming the option), `select_devices`,
`decide` -> a BackupPlan (mode, chain, point, chain_reset, retention), `check_space` (does the point fit in dest),
`predicted_chains` for check and diff mode.
The QMP work is in _backup_job, the layout in _backup_chain. No Ansible imports here.
"""

from __future__ import annotations

from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._backup.chain import (
    BITMAP_PREFIX,
    bitmap_name,
    chain_problem,
    check_dest,
    check_keep_chains,
    choose_mode,
    next_point,
    retention,
)
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._util.params import check_devices, parse_age

MODES = ('auto', 'full', 'incremental')
#: Format drivers that can hold persistent dirty bitmaps.
BITMAP_DRIVERS = ('qcow2',)
#: The filter a backup job puts on top of the disk it copies while it runs.
COPY_FILTER = 'copy-before-write'


class BackupRequest(NamedTuple):
    """qemu_backup's options, checked without the VM."""

    dest: str
    mode: str
    devices: list | None
    quiesce: str
    keep_chains: int | None
    max_age: int | None


class BackupPlan(NamedTuple):
    """What one qemu_backup run does."""

    mode: str
    chain: str
    point: str
    parent: str | None
    bitmap: str
    chain_reset: dict | None
    devices: list
    removed_chains: list
    #: bitmaps of chains no longer written into: every older chain once a new one starts
    stale_bitmaps: list


def parse_request(params: dict) -> BackupRequest:
    """The module's options checked without the VM; raises ParameterError naming the bad one."""
    quiesce = params.get('quiesce') or ('preferred' if params.get('qga') else 'off')
    if quiesce != 'off' and not params.get('qga'):
        raise ParameterError('qga', f'quiesce={quiesce} needs qga, the guest agent socket')
    return BackupRequest(
        dest=check_dest(params.get('dest')),
        mode=params.get('mode') or 'auto',
        devices=check_devices(params.get('devices')),
        quiesce=quiesce,
        keep_chains=check_keep_chains(params.get('keep_chains')),
        max_age=parse_age(params['max_age']) if params.get('max_age') else None,
    )


def select_devices(disks: list, wanted):
    """(the disks to back up, warnings). disks: _backup_job.read_disks() entries.

    By default every writable qcow2 disk (others are named in a warning); a named device that is
    unknown, read-only or not qcow2 is a ParameterError; a disk another backup job copies right
    now (not one of ours: a killed run's are stopped first) is a VMStateError, never skipped.
    """
    by_device = dict((d['device'], d) for d in disks)
    busy = sorted(d['device'] for d in disks
                  if d['driver'] == COPY_FILTER and (wanted is None or d['device'] in wanted))
    if busy:
        raise VMStateError('disk {0}: another backup job is copying it (its top node is that job\'s {1} filter); '
                           'back it up when that job has ended, nothing was changed'.format(', '.join(busy), COPY_FILTER))
    warnings = []
    if wanted is None:
        chosen = [d for d in disks if not d['read_only'] and d['driver'] in BITMAP_DRIVERS]
        skipped = [d['device'] for d in disks if not d['read_only'] and d['driver'] not in BITMAP_DRIVERS]
        if skipped:
            warnings.append('not backed up, not qcow2 (no persistent dirty bitmaps): {0}'.format(', '.join(skipped)))
        if not chosen:
            raise ParameterError('devices', 'the VM has no writable qcow2 disk to back up (disks: {0})'.format(
                ', '.join(sorted(by_device)) or 'none'))
        return chosen, warnings
    chosen = []
    for name in wanted:
        disk = by_device.get(name)
        if disk is None:
            raise ParameterError('devices', 'devices: no disk {0!r} in this VM (its disks: {1})'.format(
                name, ', '.join(sorted(by_device)) or 'none'))
        if disk['read_only']:
            raise ParameterError('devices', f'devices: disk {name} is read-only; nothing to back up')
        if disk['driver'] not in BITMAP_DRIVERS:
            raise ParameterError('devices', 'devices: disk {0} is {1}, not qcow2: it cannot hold the persistent '
                                            'dirty bitmap incremental backups need'.format(name, disk['driver']))
        chosen.append(disk)
    return chosen, warnings


def taken_ids(dest_names, disks: list) -> list:
    """Ids a new chain must not take: names in dest, and chains whose bitmap the VM has (another dest's)."""
    from_bitmaps = [b['name'][len(BITMAP_PREFIX):] for d in disks for b in d['bitmaps']
                    if (b.get('name') or '').startswith(BITMAP_PREFIX)]
    return list(dest_names) + from_bitmaps


def vm_disk_map(disks: list) -> dict:
    return dict((d['device'], {'node': d['node'], 'virtual_size': d['virtual_size']}) for d in disks)


def judge_chain(entry, disks: list, missing=(), unrecorded=()):
    """chain_problem() for a list_chains entry (or None) against the VM's disks to back up."""
    return chain_problem(entry['manifest'] if entry else None,
                         dict((d['device'], d['bitmaps']) for d in disks), vm_disk_map(disks), missing, unrecorded)


def decide(request: BackupRequest, disks: list, chains: list, now, taken, missing=(), unrecorded=()) -> BackupPlan:
    """The plan of this run.

    chains: this VM's chains in dest, oldest first; the newest is the only one written into.
    taken: names already in dest (a new chain's id must not collide). missing: files the newest
    chain's manifest lists that are gone.
    """
    current = chains[-1] if chains else None
    problem = judge_chain(current, disks, missing, unrecorded)
    mode, reset = choose_mode(request.mode, problem)
    if mode == 'incremental':
        manifest = current['manifest']
        point = next_point(manifest, now)
        chain = current['chain']
        parent = manifest['points'][-1]['point']
    else:
        point = chain = next_point(None, now, taken)
        parent = None
    future = list(chains) + ([] if mode == 'incremental' else [{'chain': chain, 'manifest': {
        'created': now.strftime('%Y-%m-%dT%H:%M:%SZ'), 'points': []}}])
    drop = retention(future, chain, now, request.keep_chains, request.max_age)
    older = [c['chain'] for c in chains if c['chain'] != chain]
    return BackupPlan(
        mode=mode,
        chain=chain,
        point=point,
        parent=parent,
        bitmap=bitmap_name(chain),
        chain_reset=reset,
        devices=[d['device'] for d in disks],
        removed_chains=drop,
        stale_bitmaps=[bitmap_name(c) for c in (older if mode == 'full' else drop)],
    )


def check_space(dest: str, needed: dict, free: int) -> int:
    """The bytes the point needs ({device: bytes}, summed); ParameterError naming dest when they do
    not fit in its `free` bytes, before anything is written: a backup job that runs out of space
    makes the guest's writes to the not yet copied blocks fail with it (QEMU's copy-before-write)."""
    total = sum(needed.values())
    if total > free:
        each = ', '.join(f'{device} {_mib(size)} MiB' for device, size in sorted(needed.items()))
        raise ParameterError('dest', f'dest {dest}: no space for this backup point: its files need about {_mib(total)} MiB ({each}), '
                                     f'the file system has {_mib(free)} MiB free; nothing was changed')
    return total


def _mib(size: int) -> str:
    return f'{size / 1048576.0:.1f}'


def predicted_chains(chains: list, plan: BackupPlan) -> dict:
    """{chain: [point ids]} after the plan runs (for check mode's diff)."""
    after = dict((c['chain'], [p['point'] for p in c['manifest']['points']]) for c in chains)
    for name in plan.removed_chains:
        after.pop(name, None)
    after.setdefault(plan.chain, []).append(plan.point)
    return after


def chain_points(chains: list) -> dict:
    return dict((c['chain'], [p['point'] for p in c['manifest']['points']]) for c in chains)
