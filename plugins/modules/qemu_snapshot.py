#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_snapshot
short_description: Save, delete, load and prune internal snapshots of a running QEMU VM
version_added: 0.2.0
description:
  - Manages internal snapshots (RAM state plus every disk, stored inside the qcow2 images) of a running or
    paused QEMU VM through its QMP monitor, like C(savevm) / C(loadvm) / C(delvm), but idempotent.
  - Uses the QMP jobs C(snapshot-save), C(snapshot-load) and C(snapshot-delete) (QEMU 6.0 and later); each job
    gets a unique id, is waited for within O(timeout) and dismissed on every path.
  - On QEMU older than 6.0 falls back to the HMP commands C(savevm), C(loadvm) and C(delvm) through
    C(human-monitor-command). Those always act on every writable disk, so O(devices) and O(vmstate) cannot
    choose otherwise there.
  - With O(ram=false) it takes a disk-only snapshot instead (no RAM state), with one QMP C(transaction) of
    C(blockdev-snapshot-internal-sync) for every disk, without stopping the VM. QEMU cannot load such a snapshot
    into a running VM; O(state=restored) with O(images) reverts the images of a VM that is not running with
    C(qemu-img snapshot -a).
  - O(state=pruned) applies a retention policy to the snapshots whose names start with O(prefix), and never
    looks at any other snapshot.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  name:
    description:
      - The snapshot name (QEMU calls it the tag). Required unless O(state=pruned).
      - At most 255 bytes in UTF-8; spaces and non-ASCII characters are fine, control characters are not.
      - Names are matched exactly; QEMU's numeric snapshot ids are never used as names.
    type: str
  state:
    description:
      - V(present) saves the snapshot on every device in O(devices) unless all of them already have it
        (unchanged). A snapshot that exists on only some of the devices is an inconsistency and an error, unless
        O(force=true).
      - V(absent) deletes the snapshot from every device that has it; unchanged when none has it.
      - V(restored) loads the snapshot (RAM and disks) into the VM. It first checks that every device in
        O(devices) has it and fails without touching the VM when one does not. It always reports changed.
        The VM keeps its run state, running or paused. If QEMU fails after it began restoring, the VM is left
        stopped in run state C(restore-vm), possibly half-restored, not resumed, and the task fails saying so;
        loading a good snapshot is the way out (V(restored) accepts a VM in C(restore-vm), and leaves it stopped
        there after a successful load; resume it with C(cont)).
      - A disk-only snapshot (RV(snapshot.ram=false)) cannot be loaded into a running VM, so V(restored) refuses it,
        naming the image files, unless O(images) is given (the offline revert of a VM that is not running).
      - V(pruned) applies retention to the snapshots whose names start with O(prefix) (see O(keep) and
        O(max_age)) and deletes the others of that prefix. Snapshots whose names do not start with O(prefix)
        are never deleted.
    type: str
    choices: [present, absent, restored, pruned]
    default: present
  devices:
    description:
      - The disks to snapshot, load or delete from, by device id (the C(-device ...,id=) of the disk, as
        RV(qemu.vm.qemu_vm_info#module:block_nodes[].device) shows it), the same names M(qemu.vm.qemu_backup) and
        M(qemu.vm.qemu_vm) use. Format node names (the qcow2 node, RV(qemu.vm.qemu_vm_info#module:block_nodes[].node_name))
        are accepted too; file nodes are not. A name that is one disk's device id and another node's name is refused.
      - The result (RV(devices), RV(vmstate)) names the disks by their format node names.
      - Default for V(present) and V(restored) is every writable node at the top of a device's chain. If one of
        them cannot hold internal snapshots (a raw image, for example) the task fails naming it, before QEMU is
        asked; list the other nodes here to leave it out of the snapshot deliberately.
      - Default for V(absent), V(pruned) and for listing is every writable top-of-device node that can hold
        snapshots.
    type: list
    elements: str
  vmstate:
    description:
      - The disk that stores the RAM state, by device id or format node name. Must be one of O(devices).
      - Default for V(present) is the first of O(devices); for V(restored), the node that holds the state of
        that snapshot.
    type: str
  force:
    description:
      - With O(state=present), replace an existing snapshot of that name (also a partial one); delete it from
        the devices that have it, then save a new one. The task then always reports changed.
    type: bool
    default: false
  prefix:
    description:
      - With O(state=pruned), required and not empty. Only snapshots whose names start with this string are
        candidates for deletion; every other snapshot is left alone whatever its age.
      - Give the snapshots you create names with a fixed prefix (for example V(backup-) followed by a date),
        and prune with that prefix.
    type: str
  keep:
    description:
      - With O(state=pruned), the number of newest prefixed snapshots that are always kept.
      - Without O(max_age), all older prefixed snapshots are deleted, so exactly O(keep) remain.
      - With O(max_age), the newest O(keep) are kept whatever their age and, of the rest, only those older than
        O(max_age) are deleted.
      - V(0) together with no O(max_age) deletes every prefixed snapshot.
    type: int
  max_age:
    description:
      - With O(state=pruned), delete prefixed snapshots older than this age (creation date compared with the
        host clock), except the newest O(keep).
      - A number and a unit, V(s), V(m), V(h), V(d) or V(w), or a sum of them, for example V(14d), V(12h),
        V(1d12h).
    type: str
  quiesce:
    description:
      - With O(state=present), freeze the guest filesystems through the guest agent (O(qga)) around the snapshot,
        so that the disks hold what the guest's applications flushed, not a crash-consistent image.
      - Freeze, snapshot and thaw happen in this one task over already open QMP and agent sessions, so the
        filesystems stay frozen for the snapshot job plus a few milliseconds (RV(frozen_ms)).
      - The guest is thawed on every path (success, job error, timeout, exception) and the thaw is confirmed with
        C(guest-fsfreeze-status). A guest found already frozen (an earlier run died) is thawed first, with a warning.
      - If the task's process dies while the guest is frozen (killed, controller lost), a small guard process it
        started on the host thaws the guest right away, and at the latest O(freeze_timeout) after the freeze.
      - If the VM is paused while the guest is frozen (QMP C(stop), or an I/O error that pauses it), the agent cannot
        thaw until the VM runs again; the task fails saying so, and the guard thaws the guest as soon as the VM
        runs again, for up to 24 hours. Beyond that, or if the guard is gone (host reboot), the next qemu.vm task
        that opens this agent socket as the same user thaws first (a marker file in the private directory of
        the lock files remembers the freeze, see O(timeout)).
      - V(required) fails the task, taking no snapshot, when the guest cannot be frozen (agent not answering,
        freeze disabled or failing).
      - V(preferred) takes the snapshot crash-consistent in that case and says so, with RV(quiesced=false),
        RV(quiesce_reason), and a warning. It never falls back silently.
      - Default V(preferred) for a disk-only snapshot (O(ram=false)) when O(qga) is given, as for
        M(qemu.vm.qemu_backup), else V(off). A snapshot with RAM state is consistent without freezing (the RAM
        holds what the guest had not written yet), and one taken quiesced holds the frozen guest - after
        loading it, thaw the guest with M(qemu.vm.qemu_guest_fsfreeze) O(qemu.vm.qemu_guest_fsfreeze#module:state=thawed).
    type: str
    choices: ["off", preferred, required]
  freeze_timeout:
    description:
      - With O(quiesce), the longest the guest filesystems may stay frozen, in seconds. The snapshot job must
        finish within it, or the guest is thawed and the task fails.
    type: float
    default: 60
  ram:
    description:
      - With O(state=present), whether the snapshot holds the VM's RAM (and device) state.
      - V(true) saves RAM state plus every disk with the C(snapshot-save) job; the guest is stopped while its RAM is
        written (RV(downtime_ms)), and loading it later resumes the VM exactly where it was.
      - V(false) takes a disk-only snapshot, with one QMP C(transaction) of C(blockdev-snapshot-internal-sync) for every
        node of O(devices), so all disks are taken at the same instant or none is. The VM is not stopped, and with
        O(quiesce) the guest is frozen only around that transaction (RV(frozen_ms), milliseconds whatever the RAM
        size). The disks are then as after a power loss, or as the guest flushed them when quiesced.
      - A disk-only snapshot can only be restored offline, see O(images).
      - An existing snapshot of that name is left alone whether it holds RAM state or not (idempotency is by name);
        RV(snapshot.ram) says which it is.
    type: bool
    default: true
  images:
    description:
      - With O(state=restored) only. Absolute paths of the qcow2 images of a VM that is B(not running), to revert
        offline to snapshot O(name) with C(qemu-img snapshot -a). This is the way to restore a disk-only snapshot
        (O(ram=false)), which QEMU cannot load into a running VM. O(qmp) is not needed and not used.
      - Every image must hold the snapshot; all are checked before the first is reverted.
      - An image open in a running QEMU (or another process) is refused, and nothing is changed, since qemu-img cannot
        take its lock. Shut the VM down (quit QEMU) first.
      - A snapshot that holds RAM state can be reverted this way too (its disk content only, with a warning).
      - An image holding persistent dirty bitmaps (for example those of M(qemu.vm.qemu_backup)) is refused, since
        qemu-img cannot revert it; remove them first (C(qemu-img bitmap --remove)).
    type: list
    elements: path
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
attributes:
  idempotent:
    support: partial
    details:
      - V(present), V(absent) and V(pruned) are unchanged when there is nothing to do (unless O(force=true));
        V(restored) loads the snapshot every time and always reports changed.
  check_mode:
    support: full
    details:
      - Reports what would be saved, deleted, loaded or pruned (RV(pruned), RV(kept)) without changing the VM.
  diff_mode:
    support: full
    details:
      - The names of the snapshots on the devices, before and after.
notes:
  - Sockets - requires O(qmp) (except O(state=restored) with O(images), which needs no VM); O(qga) is used to
    quiesce, by default for a disk-only snapshot (O(quiesce)).
  - O(qmp) is required except with O(images).
  - O(timeout) bounds each wait, including each C(qemu-img) run with O(images), including each snapshot job. A job that outlives it keeps running in QEMU; the
    task fails saying so, and the next task of this collection on that VM waits for it and dismisses it.
  - Saving stops the guest while its RAM is written (RV(downtime_ms)); internal snapshots do not shrink a qcow2
    image when deleted.
seealso:
  - module: qemu.vm.qemu_snapshot_info
  - module: qemu.vm.qemu_vm_info
'''

EXAMPLES = r'''
- name: Snapshot the VM before an upgrade (RAM state and every writable disk)
  qemu.vm.qemu_snapshot:
    qmp: /run/qemu/web1/qmp.sock
    name: before-upgrade

- name: Roll back if the upgrade went wrong
  qemu.vm.qemu_snapshot:
    qmp: /run/qemu/web1/qmp.sock
    name: before-upgrade
    state: restored

- name: Remove it once the upgrade is confirmed
  qemu.vm.qemu_snapshot:
    qmp: /run/qemu/web1/qmp.sock
    name: before-upgrade
    state: absent

- name: Quiesced disk-only snapshot, the VM keeps running (frozen for milliseconds)
  qemu.vm.qemu_snapshot:
    qmp: /run/qemu/web1/qmp.sock
    qga: /run/qemu/web1/qga.sock
    name: nightly-disks
    ram: false
    quiesce: preferred

- name: Revert a disk-only snapshot offline, once QEMU has quit
  qemu.vm.qemu_snapshot:
    name: nightly-disks
    state: restored
    images:
      - /var/lib/qemu/web1/system.qcow2
      - /var/lib/qemu/web1/data.qcow2

- name: Leave a raw scratch disk out of the snapshot, keep the RAM state on the system disk
  qemu.vm.qemu_snapshot:
    qmp: /run/qemu/db1/qmp.sock
    name: nightly
    devices: [system, data]
    vmstate: system

- name: Back up the disks with the guest filesystems frozen for the snapshot only
  qemu.vm.qemu_snapshot:
    qmp: /run/qemu/web1/qmp.sock
    qga: /run/qemu/web1/qga.sock
    name: "backup-{{ '%Y%m%dT%H%M%SZ' | strftime(utc=true) }}"
    ram: false
    quiesce: required
    freeze_timeout: 30

- name: Take a dated backup snapshot
  qemu.vm.qemu_snapshot:
    qmp: /run/qemu/web1/qmp.sock
    name: "backup-{{ now(utc=true, fmt='%Y%m%dT%H%M%SZ') }}"

- name: Keep the 7 newest backup snapshots, delete older ones (never touches other snapshots)
  qemu.vm.qemu_snapshot:
    qmp: /run/qemu/web1/qmp.sock
    state: pruned
    prefix: backup-
    keep: 7
  register: retention

- name: Show what retention removed
  ansible.builtin.debug:
    msg: "deleted {{ retention.pruned }}, kept {{ retention.kept }}"

- name: Delete backup snapshots older than 14 days, but always keep the 3 newest
  qemu.vm.qemu_snapshot:
    qmp: /run/qemu/web1/qmp.sock
    state: pruned
    prefix: backup-
    max_age: 14d
    keep: 3
'''

RETURN = r'''
snapshot:
  description:
    - The snapshot saved, found, loaded or deleted, as seen on the node holding its RAM state (else its first
      device). V(null) when there is none (O(state=absent) with nothing to delete, or in check mode before it
      exists).
  returned: when O(state) is not V(pruned)
  type: dict
  contains:
    name:
      description: The snapshot name (tag).
      type: str
      sample: before-upgrade
    id:
      description: QEMU's snapshot id in that image (ids may differ between images).
      type: str
      sample: '3'
    vm_state_size:
      description: Bytes of RAM state stored, 0 for a disk-only snapshot.
      type: int
      sample: 105261596
    ram:
      description: Whether the snapshot carries RAM state (RV(snapshot.vm_state_size) > 0). V(false) for a disk-only
        snapshot, which can only be restored offline (O(images)).
      type: bool
      sample: true
    date:
      description: When it was taken, ISO 8601 in UTC.
      type: str
      sample: '2024-05-01T10:20:30Z'
    date_epoch:
      description: When it was taken, seconds since the epoch.
      type: int
      sample: 1714558830
    vm_clock:
      description: The guest clock (seconds the VM had run) at the snapshot.
      type: float
      sample: 7.608
    vmstate:
      description: The node holding the RAM state, or V(null).
      type: str
      sample: disk0
    devices:
      description: The nodes that have this snapshot.
      type: list
      elements: str
      sample: [disk0, disk1]
    missing_devices:
      description: Nodes of RV(devices) that lack it (non-empty only for a partial snapshot).
      type: list
      elements: str
      sample: []
    complete:
      description: Whether every node of RV(devices) has it.
      type: bool
devices:
  description: The nodes the task acted on (or looked at, when nothing was to be done); with O(images), the image
    paths.
  returned: always
  type: list
  elements: str
  sample: [disk0, disk1]
vmstate:
  description: The node the RAM state was (or would be) saved to or loaded from, V(null) when not applicable.
  returned: always
  type: str
  sample: disk0
method:
  description: How QEMU was (or would be) asked, V(job) (QMP snapshot jobs), V(hmp) (human-monitor-command),
    V(transaction) (a disk-only snapshot, O(ram=false)) or V(qemu-img) (an offline revert, O(images)).
  returned: always
  type: str
  sample: job
duration_ms:
  description: Milliseconds spent saving, loading or deleting; 0 when nothing was done.
  returned: always
  type: int
  sample: 412
downtime_ms:
  description: Milliseconds the guest CPUs were stopped, from QEMU's STOP and RESUME events; 0 when nothing was
    done or the VM was already paused.
  returned: always
  type: int
  sample: 187
images:
  description: The images reverted (in check mode, that would be reverted).
  returned: with O(images)
  type: list
  elements: str
  sample: [/var/lib/qemu/web1/system.qcow2]
status:
  description: The VM run state after the task, for example V(running) or V(paused); V(null) with O(images).
  returned: always
  type: str
  sample: running
quiesced:
  description: Whether the guest filesystems were frozen for the snapshot.
  returned: when O(quiesce) is not V(off)
  type: bool
  sample: true
quiesce_reason:
  description: Why the snapshot was taken without freezing, with O(quiesce=preferred).
  returned: when RV(quiesced=false) after a snapshot was taken with O(quiesce=preferred)
  type: str
  sample: "the guest agent is not usable: guest agent on /run/qemu/web1/qga.sock did not answer ..."
frozen_ms:
  description: Milliseconds from the agent's reply to the freeze to its reply to the thaw; V(0) when not frozen.
  returned: when O(quiesce) is not V(off)
  type: int
  sample: 212
frozen_filesystems:
  description: The number of filesystems the guest agent froze.
  returned: when the guest was frozen
  type: int
  sample: 2
pruned:
  description: Names of the prefixed snapshots deleted (in check mode, that would be deleted), oldest first.
  returned: when O(state=pruned)
  type: list
  elements: str
  sample: [backup-20240101T000000Z, backup-20240102T000000Z]
kept:
  description: Names of the prefixed snapshots kept, oldest first.
  returned: when O(state=pruned)
  type: list
  elements: str
  sample: [backup-20240103T000000Z]
'''

from ansible_collections.qemu.vm.plugins.module_utils._common import Stopwatch, build_module, qmp_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate.vmstate import preflight_dbus_vmstate
from ansible_collections.qemu.vm.plugins.module_utils._guest.quiesce import QUIESCE_MODES, quiesced
from ansible_collections.qemu.vm.plugins.module_utils._snapshot.jobs import (
    delete_snapshot,
    load_snapshot,
    require_job_selection,
    save_disk_snapshot,
    save_snapshot,
    settle_earlier_jobs,
    uses_jobs,
)
from ansible_collections.qemu.vm.plugins.module_utils._snapshot.plan import (
    RUN_STATE_ACTION,
    check_run_state,
    decide,
    parse_request,
    predicted_names,
    report_snapshot,
    verify,
)
from ansible_collections.qemu.vm.plugins.module_utils._snapshot.offline import restore_offline
from ansible_collections.qemu.vm.plugins.module_utils._snapshot.view import read_view

ARGUMENT_SPEC = dict(
    name=dict(type='str'),
    state=dict(type='str', default='present', choices=['present', 'absent', 'restored', 'pruned']),
    devices=dict(type='list', elements='str'),
    vmstate=dict(type='str'),
    force=dict(type='bool', default=False),
    prefix=dict(type='str'),
    keep=dict(type='int'),
    max_age=dict(type='str'),
    quiesce=dict(type='str', choices=list(QUIESCE_MODES)),
    freeze_timeout=dict(type='float', default=60.0),
    ram=dict(type='bool', default=True),
    images=dict(type='list', elements='path'),
)
REQUIRED_IF = [
    ('state', 'present', ('name',)),
    ('state', 'absent', ('name',)),
    ('state', 'restored', ('name',)),
    ('state', 'pruned', ('prefix',)),
]


def preflight(module, qmp, plan):
    """The single place for checks right before a save or load touches the VM.

    Runs in check mode too, so it must only read. Raise a QemuVMError to refuse.
    A VM with a dbus-vmstate object gets its helpers checked, so a snapshot never
    crashes QEMU (duplicate Ids) or fails with a vague error (missing helper).
    """
    operation = 'loading a snapshot' if plan.action == 'load' else 'saving a snapshot'
    report = preflight_dbus_vmstate(qmp, timeout=module.params['timeout'], operation=operation)
    for warning in (report or {}).get('warnings', []):
        module.warn(warning)
    return report


def take_snapshot(module, qmp, plan, request, quiesce_report):
    """The save step: the guest is stopped while QEMU writes its state (not at all with ram=false,
    one QMP transaction); with quiesce, its filesystems are frozen around that (freeze -> save -> thaw,
    see _quiesce)."""
    params, name = module.params, request.name

    def save(bound):
        if not request.ram:
            return save_disk_snapshot(qmp, name, plan.devices, bound)
        return save_snapshot(qmp, name, plan.vmstate, plan.devices, bound)

    if request.quiesce == 'off':
        return save(params['timeout'])
    result, report = quiesced(params['qga'], request.quiesce, params['timeout'], params['freeze_timeout'],
                              save, module.warn, qmp=qmp)
    quiesce_report.update(report)
    return result


def act(module, qmp, plan, request, quiesce_report):
    """Carry out the plan; returns the guest downtime in ms."""
    timeout = module.params['timeout']
    name = request.name
    downtime = 0
    if plan.action in ('replace', 'delete'):
        delete_snapshot(qmp, name, plan.delete_from, timeout)
    if plan.action in ('save', 'replace'):
        downtime += take_snapshot(module, qmp, plan, request, quiesce_report)['downtime_ms']
    if plan.action == 'load':
        downtime += load_snapshot(qmp, name, plan.vmstate, plan.devices, timeout)['downtime_ms']
    for snap in plan.pruned:
        delete_snapshot(qmp, snap['name'], snap['devices'], timeout)
    return downtime


def method(qmp, plan, request):
    if plan.action in ('save', 'replace') and not request.ram:
        return 'transaction'
    return 'job' if uses_jobs(qmp) else 'hmp'


def run(module):
    # parse
    request = parse_request(module.params)
    if request.images is not None:
        return restore_offline(module.params, module.check_mode, module._diff, module.warn)
    with qmp_session(module) as qmp:
        # ask
        settle_earlier_jobs(qmp, module.params['timeout'], dismiss=not module.check_mode)
        view = read_view(qmp)
        # decide
        plan = decide(request, view)
        # a disk-only save is a transaction on the chosen nodes, whatever QEMU's version
        require_job_selection(qmp, view, request.devices if request.ram else None, request.vmstate)
        status = qmp.run_state()
        if request.state == 'restored' or plan.changed:
            check_run_state(status, RUN_STATE_ACTION[request.state])
        before = view.names(plan.devices)
        result = dict(changed=plan.changed or request.state == 'restored', devices=plan.devices,
                      vmstate=plan.vmstate, method=method(qmp, plan, request),
                      duration_ms=0, downtime_ms=0, status=status)
        if request.quiesce != 'off':
            result.update(quiesced=False, frozen_ms=0)
        if plan.action == 'load' or (plan.action in ('save', 'replace') and request.ram):
            preflight(module, qmp, plan)
        # act
        after = predicted_names(before, plan, request) if module.check_mode else list(before)
        if plan.changed and not module.check_mode:
            watch = Stopwatch()
            quiesce_report = {}
            result['downtime_ms'] = act(module, qmp, plan, request, quiesce_report)
            result.update(quiesce_report)
            result['duration_ms'] = watch.ms
            view = read_view(qmp)
            verify(view, plan, request)
            after = view.names(plan.devices)
            result['status'] = qmp.run_state()
    # report
    if request.state == 'pruned':
        result['pruned'] = [s['name'] for s in plan.pruned]
        result['kept'] = [s['name'] for s in plan.kept]
    else:
        result['snapshot'] = report_snapshot(view, plan, request, module.check_mode)
    if module._diff:
        result['diff'] = {'before': {'snapshots': before}, 'after': {'snapshots': after}}
    return result


def main():
    module = build_module(ARGUMENT_SPEC, durations=('freeze_timeout',), supports_check_mode=True, required_if=REQUIRED_IF)
    run_module(module, run)


if __name__ == '__main__':
    main()
