#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_backup
short_description: Full and incremental external backups of a running QEMU VM's disks
version_added: 0.2.0
description:
  - Copies the disks of a running (or paused) VM into files under O(dest), outside the VM's own images, through
    its QMP monitor, while the guest keeps running.
  - A B(chain) is a full backup point plus the incremental points after it. QEMU's persistent dirty bitmaps
    (one per disk, named C(qemu-vm-<chain>)) record which clusters the guest wrote since the last point, so an
    incremental point copies only those.
  - Each chain is a directory C(<dest>/<chain>/) with one qcow2 file per disk per point,
    C(<point>.<device>.qcow2), and a C(manifest.json) listing the disks, the bitmap, the points, and each file's
    size and SHA-256. An incremental file records the previous point's file of its disk as its backing file, so
    C(qemu-img convert) of any point's file gives the whole disk at that point (see M(qemu.vm.qemu_backup_restore)).
  - Every disk's copy job starts in one QMP C(transaction) with C(completion-mode=grouped), so the disks of a
    point are consistent with each other, and if one disk's job fails every job is cancelled and no bitmap is
    cleared. QEMU refuses bitmap actions in a grouped transaction, so a full point adds its new bitmaps just
    before it, and its jobs clear them when they all succeed (C(bitmap-mode=on-success)). After a failure the
    VM's bitmaps and the chain's manifest are as before (a full point's new bitmaps are removed) and the
    partial files are removed.
  - Targets are written as C(<file>.partial) and renamed when every job succeeded; only then is the point added to
    the manifest (written atomically).
  - Only the newest chain of the VM in O(dest) is written into. A chain is not trusted, and O(mode=auto) starts a
    new full chain saying why in RV(chain_reset), when a disk was added, removed or resized since it started, a
    bitmap is missing (QEMU restarted on other images, bitmap removed), a bitmap is inconsistent (QEMU was killed
    or crashed while it was in use) or busy, files of the chain are missing, or an earlier run was killed after
    writing files the manifest does not list (its jobs may have cleared the bitmaps). Once a new chain has its
    full point, the VM's bitmaps of older chains are removed (their files stay, restorable).
  - What a killed earlier run into O(dest) left (SIGKILL, a lost connection) is cleaned up by the next run (not in
    check mode) - its files the manifests do not list, a chain directory without a manifest, and in QEMU its copy
    jobs, target nodes and the bitmaps of the chains it touched - with a warning for each.
  - QEMU refuses to load an internal snapshot (C(snapshot-load), C(loadvm)) into disks that have active dirty
    bitmaps ("Device has active dirty bitmaps"), so a chain cannot be broken that way behind the module's back.
    The same holds offline for C(qemu-img snapshot -a). To load one, remove the chain's bitmaps first (QMP
    C(block-dirty-bitmap-remove), or C(qemu-img bitmap --remove) offline); the next backup then starts a new chain.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  dest:
    description:
      - Absolute path of an existing directory on the host that runs the module (and QEMU), holding the chains.
      - Use one directory per VM. Chains record the VM's UUID and name; those of other VMs are never written into
        or removed, but VMs started without C(-uuid) and C(-name) cannot be told apart.
      - One run per O(dest) at a time. A run holds a lock on the directory (C(flock)); a second run meanwhile fails
        naming O(dest), changing nothing. Retention (O(keep_chains), O(max_age)) removes chains under that lock.
      - Backups hold whole guest disks, so they are private whatever the umask - chain directories 0700, image files
        and manifests 0600, created with that mode before any data is written. A chain directory found open to other users
        is made 0700 when a point is added to it, with a warning. When O(dest) itself is open to group or
        others the task warns (other users can list the chains, or remove them when it is writable); make it 0700
        (the C(qemu.vm.backup) role does).
    type: path
    required: true
  mode:
    description:
      - V(auto) takes an incremental point when the newest chain is valid for every disk, else a full point that
        starts a new chain (RV(chain_reset) says why).
      - V(full) always starts a new chain.
      - V(incremental) fails, changing nothing, when there is no valid chain, and says why.
    type: str
    choices: [auto, full, incremental]
    default: auto
  devices:
    description:
      - The disks to back up, by device id (the C(-device ...,id=) of the disk, else its drive id), as
        RV(qemu.vm.qemu_vm_info#module:block_nodes[].device) shows them; the same names
        O(qemu.vm.qemu_snapshot#module:devices) takes.
      - Default is every writable qcow2 disk; writable disks of other formats are left out with a warning. A named
        disk that is unknown, read-only or not qcow2 fails the task, and so does a disk another backup job is
        copying (never left out).
      - A chain covers a fixed set of disks; a different set starts a new chain.
    type: list
    elements: str
  quiesce:
    description:
      - Freeze the guest filesystems through the guest agent (O(qga)) around the QMP C(transaction) that starts the
        copy jobs and creates or clears the bitmaps, not during the copy, so the guest is frozen for milliseconds
        (RV(frozen_ms)) whatever the disk size. Thawed on every path, with the same guard as
        M(qemu.vm.qemu_snapshot).
      - V(required) fails, changing nothing, when the guest cannot be frozen; V(preferred) then backs up
        crash-consistent with a warning; V(off) never freezes.
      - Default V(preferred) when O(qga) is given, else V(off).
    type: str
    choices: ["off", preferred, required]
  freeze_timeout:
    description:
      - With O(quiesce), the longest the guest filesystems may stay frozen, in seconds.
    type: float
    default: 60
  job_timeout:
    description:
      - Seconds the copy of one point may take. When it runs out the jobs are cancelled and nothing changes.
    type: float
    default: 3600
  keep_chains:
    description:
      - Retention, after a successful backup, the newest this many chains of the VM are kept (the chain written to
        counts, and is never removed). Older chains are removed whole, never single points, with the VM's bitmaps
        of those chains.
    type: int
  max_age:
    description:
      - Retention, after a successful backup, remove the VM's chains whose newest point is older than this
        (for example V(14d), V(12h), V(1d12h)); with O(keep_chains), the newest O(keep_chains) chains are kept
        whatever their age. The chain written to is never removed.
    type: str
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
attributes:
  idempotent:
    support: none
    details:
      - Every run that is not in check mode writes a new backup point (full or incremental), so it always reports
        changed.
  check_mode:
    support: full
    details:
      - Reports the mode, chain, point, RV(chain_reset), the disks and the chains retention would remove; writes
        nothing and changes no bitmap.
  diff_mode:
    support: full
    details:
      - The chains in O(dest) with their points, before and after.
notes:
  - Sockets - requires O(qmp); O(qga) is used to quiesce (O(quiesce)).
  - O(timeout) bounds each QMP command and the guest agent; O(job_timeout) bounds the copy.
  - Progress of long copies is sampled every 5 seconds into RV(progress) (shown with C(-v)) and logged to the
    managed host's system log while the task runs.
  - Nothing is written into the VM's own image files except the bitmaps.
  - QEMU itself opens and writes the files in O(dest) (the module creates them first), so the QEMU process must be
    allowed to write there. That holds when QEMU runs as the same user as the module or as root, not for a QEMU
    that runs as another user or is confined (for example by libvirt's AppArmor or SELinux labelling); this
    module was tested with an unconfined QEMU running as root.
  - Before anything is written, the size of the point's files is estimated (C(qemu-img measure) of each disk for a
    full point, the bitmaps' dirty bytes for an incremental one) and checked against the free space of O(dest);
    when it does not fit the task fails naming O(dest) and nothing changes. B(Known limitation) - while a job runs,
    QEMU's backup job (7.2) copies each block the guest overwrites to the target first; when that copy fails (the
    file system of O(dest) filled up by something else meanwhile, an I/O error), the guest's own write fails too,
    and a disk with QEMU's default C(werror=enospc) pauses the VM on C(No space left on device) (run state
    C(io-error)) until it is resumed (C(cont)). The jobs are cancelled and nothing changes in the chain.
  - A chain directory whose C(manifest.json) cannot be read is ignored with a warning, never written into.
seealso:
  - module: qemu.vm.qemu_backup_info
  - module: qemu.vm.qemu_backup_restore
  - module: qemu.vm.qemu_snapshot
'''

EXAMPLES = r'''
- name: Nightly backup, incremental when the chain allows, frozen for milliseconds
  qemu.vm.qemu_backup:
    qmp: /run/qemu/web1/qmp.sock
    qga: /run/qemu/web1/qga.sock
    dest: /srv/backup/web1
    keep_chains: 4
  register: backup

- name: Say when a new chain had to be started
  ansible.builtin.debug:
    msg: "new full backup: {{ backup.chain_reset.reason }}"
  when: backup.chain_reset is not none

- name: Weekly full backup of the system disk only, chains older than 30 days removed
  qemu.vm.qemu_backup:
    qmp: /run/qemu/db1/qmp.sock
    dest: /srv/backup/db1
    devices: [system]
    mode: full
    max_age: 30d
'''

RETURN = r'''
mode:
  description: The kind of point taken (or, in check mode, that would be taken), V(full) or V(incremental).
  returned: always
  type: str
  sample: incremental
chain:
  description: The id of the chain written to (its directory under O(dest)).
  returned: always
  type: str
  sample: 20261201T004512Z
point:
  description: The id of this backup point (UTC time, C(-2) and on appended when taken in the same second).
  returned: always
  type: str
  sample: 20261201T005001Z
chain_reset:
  description: Why a new chain was started instead of an incremental point (O(mode=auto)); V(null) otherwise.
  returned: always
  type: dict
  contains:
    reason:
      description: The reason, for example no chain yet, a bitmap missing or inconsistent after a crash, a disk
        added, removed or resized.
      type: str
      sample: "bitmap qemu-vm-20261201T004512Z on disk vda is inconsistent (...)"
devices:
  description: The disks backed up, by device id.
  returned: always
  type: list
  elements: str
  sample: [vda, vdb]
files:
  description: The files written, one per disk; empty in check mode.
  returned: always
  type: list
  elements: dict
  contains:
    device:
      description: The disk.
      type: str
    path:
      description: Absolute path of the file.
      type: str
    bytes:
      description: Size of the file.
      type: int
bytes_needed:
  description: The estimated size of the point's files in bytes, checked against the free space of O(dest) before
    anything is written (also in check mode).
  returned: always
  type: int
  sample: 1310720
bytes_written:
  description: Total size of RV(files).
  returned: always
  type: int
  sample: 1245184
frozen_ms:
  description: Milliseconds the guest filesystems were frozen (0 when not quiesced).
  returned: always
  type: int
  sample: 14
quiesced:
  description: Whether the guest filesystems were frozen when the point was taken.
  returned: always
  type: bool
duration_ms:
  description: Milliseconds from creating the targets to the manifest written.
  returned: always
  type: int
  sample: 2210
mb_per_s:
  description: RV(bytes_written) in MB (10^6 bytes) per second of RV(duration_ms).
  returned: always
  type: float
  sample: 48.2
removed_chains:
  description: Chains removed by retention (in check mode, that would be removed).
  returned: always
  type: list
  elements: str
  sample: [20261101T004512Z]
quiesce_reason:
  description: Why the point was taken without freezing the guest, with O(quiesce=preferred).
  returned: when the guest could not be frozen with O(quiesce=preferred)
  type: str
  sample: "the guest agent is not usable: ..."
progress:
  description: Samples of the copy, every 5 seconds while it ran.
  returned: always
  type: list
  elements: dict
  contains:
    elapsed_ms:
      description: Milliseconds since the jobs started.
      type: int
    bytes_done:
      description: Bytes the jobs had copied.
      type: int
    bytes_total:
      description: Bytes the jobs expected to copy.
      type: int
'''

import datetime
import os
from contextlib import nullcontext

from ansible_collections.qemu.vm.plugins.module_utils._backup.chain import (
    free_bytes, iso_time, keep_chain_private, list_chains, make_chain_dir, missing_files,
    new_manifest, open_dest_warnings, remove_chains, same_vm, vm_identity, write_manifest)
from ansible_collections.qemu.vm.plugins.module_utils._backup.job import (
    BackupPoint, estimate_bytes, read_disks, remove_bitmap_where_present)
from ansible_collections.qemu.vm.plugins.module_utils._backup.leftovers import (
    clear_leftovers, dest_lock, drop_stale_targets, find_leftovers)
from ansible_collections.qemu.vm.plugins.module_utils._backup.leftovers import describe as describe_leftovers
from ansible_collections.qemu.vm.plugins.module_utils._backup.plan import (
    MODES, chain_points, check_space, decide, parse_request, predicted_chains, select_devices, taken_ids)
from ansible_collections.qemu.vm.plugins.module_utils._common import Stopwatch, build_module, qmp_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._guest.quiesce import QUIESCE_MODES, quiesced

ARGUMENT_SPEC = dict(
    dest=dict(type='path', required=True),
    mode=dict(type='str', default='auto', choices=list(MODES)),
    devices=dict(type='list', elements='str'),
    quiesce=dict(type='str', choices=list(QUIESCE_MODES)),
    freeze_timeout=dict(type='float', default=60.0),
    job_timeout=dict(type='float', default=3600.0),
    keep_chains=dict(type='int'),
    max_age=dict(type='str'),
)


def ask(qmp, request):
    """The VM's identity, its disks to back up, and its chains in dest."""
    name = qmp.execute('query-name').get('name')
    vm = vm_identity(name, qmp.execute('query-uuid').get('UUID'))
    every_disk = read_disks(qmp)
    disks, warnings = select_devices(every_disk, request.devices)
    unreadable = []
    chains = [c for c in list_chains(request.dest, unreadable) if same_vm(c['manifest'].get('vm'), vm)]
    warnings += [f'ignored, not a usable chain: {e}' for e in unreadable] + open_dest_warnings(request.dest)
    return vm, every_disk, disks, chains, warnings


def take_point(module, qmp, request, plan, disks, chain_dir):
    """Copy the disks (freezing around the transaction only); returns (the BackupPoint, files, quiesce report)."""
    params = module.params
    job = BackupPoint(qmp, chain_dir, plan.point, plan.mode, disks, plan.bitmap, plan.parent,
                      params['job_timeout'], log=module.log)

    def start(begin):
        if request.quiesce == 'off':
            begin()
            return {'quiesced': False, 'frozen_ms': 0}
        _none, report = quiesced(params['qga'], request.quiesce, params['timeout'], params['freeze_timeout'],
                                 lambda bound: begin(), module.warn, qmp=qmp, taken='backup point')
        return report

    files, report = job.run(start)
    return job, files, report


def record(chains, plan, request, vm, disks, files, report, now):
    """Append the point to its chain's manifest (a new manifest for a full point)."""
    chain_dir = os.path.join(request.dest, plan.chain)
    if plan.mode == 'full':
        manifest = new_manifest(plan.chain, iso_time(now), vm,
                                [{'device': d['device'], 'node': d['node'], 'virtual_size': d['virtual_size']}
                                 for d in disks])
    else:
        manifest = next(c['manifest'] for c in chains if c['chain'] == plan.chain)
    manifest['points'].append({'point': plan.point, 'mode': plan.mode, 'parent': plan.parent,
                               'time': iso_time(now), 'frozen_ms': report.get('frozen_ms', 0),
                               'quiesced': bool(report.get('quiesced')), 'files': files})
    write_manifest(chain_dir, manifest)


def run(module):
    # parse
    request = parse_request(module.params)
    now = datetime.datetime.now(datetime.timezone.utc)
    # One run per dest: under its lock, whatever of ours no manifest lists is a killed run's.
    with (nullcontext() if module.check_mode else dest_lock(request.dest)), qmp_session(module) as qmp:
        warnings = [] if module.check_mode else drop_stale_targets(qmp, request.dest)
        # ask
        vm, every_disk, disks, chains, found = ask(qmp, request)
        warnings += found
        for warning in warnings:
            module.warn(warning)
        newest = chains[-1] if chains else None
        missing = missing_files(newest['dir'], newest['manifest']) if newest else ()
        leftovers = find_leftovers(request.dest, chains)
        # decide
        plan = decide(request, disks, chains, now, taken_ids(os.listdir(request.dest), every_disk), missing,
                      leftovers['unrecorded'].get(newest['chain'], ()) if newest else ())
        needed = check_space(request.dest, estimate_bytes(disks, plan.mode, plan.bitmap, module.warn),
                             free_bytes(request.dest))
        result = dict(changed=True, mode=plan.mode, chain=plan.chain, point=plan.point,
                      chain_reset=plan.chain_reset, devices=plan.devices, files=[], bytes_needed=needed,
                      bytes_written=0,
                      frozen_ms=0, quiesced=False, duration_ms=0, mb_per_s=0.0,
                      removed_chains=plan.removed_chains, progress=[])
        before = chain_points(chains)
        if module._diff:
            result['diff'] = {'before': {'chains': before}, 'after': {'chains': predicted_chains(chains, plan)}}
        if module.check_mode:
            return result
        # act
        for warning in describe_leftovers(leftovers):
            module.warn(warning)
        clear_leftovers(qmp, request.dest, leftovers, every_disk)
        qmp.dismiss_stale_jobs()
        watch = Stopwatch()
        chain_dir = os.path.join(request.dest, plan.chain)
        if plan.mode == 'full':
            make_chain_dir(chain_dir)
        elif keep_chain_private(chain_dir):
            module.warn(f'chain {plan.chain} was open to other users: made it 0700')
        try:
            job, files, report = take_point(module, qmp, request, plan, disks, chain_dir)
            try:
                record(chains, plan, request, vm, disks, files, report, now)
            except BaseException:
                job.abandon(files)
                raise
        except BaseException:
            if plan.mode == 'full':
                _remove_empty(chain_dir)
            raise
        for name in plan.stale_bitmaps:
            remove_bitmap_where_present(qmp, every_disk, name)
        # Retention under dest's lock: no other run reads or continues a chain while it goes.
        result['removed_chains'] = remove_chains(chains, plan.removed_chains, module.warn)
    # report
    written = sum(f['bytes'] for f in files)
    result.update(files=[{'device': f['device'], 'path': os.path.join(chain_dir, f['path']), 'bytes': f['bytes']}
                         for f in files],
                  bytes_written=written, frozen_ms=report.get('frozen_ms', 0), quiesced=bool(report.get('quiesced')),
                  duration_ms=watch.ms, mb_per_s=round(written / 1e6 / max(watch.ms / 1000.0, 0.001), 1),
                  progress=job.progress)
    if report.get('quiesce_reason'):
        result['quiesce_reason'] = report['quiesce_reason']
    return result


def _remove_empty(chain_dir):
    try:
        os.rmdir(chain_dir)
    except OSError:
        pass


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qmp',), durations=('freeze_timeout', 'job_timeout'),
                          supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
