# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Internal VM snapshots: what the user asked for, and what to do about it. Pure, no I/O.

* input that needs no VM (`check_tag`, `check_prefix`, `parse_request`; `parse_age` and
  `check_devices` from _util.params): raises ParameterError naming the option;
* decisions on a SnapshotView (_snapshot_view): `check_run_state`, `choose_devices`,
  `plan_present`, `plan_absent`, `plan_restored`, `plan_pruned` (or `decide`) -> `Plan`;
* after acting: `verify` what QEMU reported, and what to report (`predicted_names`,
  `report_snapshot`).

Unit-testable without QEMU. Actions are in _snapshot. No Ansible imports here.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._qemu.block import describe_disks, nodes_named
from ansible_collections.qemu.vm.plugins.module_utils._util.params import check_devices, parse_age

if TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.qemu.vm.plugins.module_utils._snapshot.view import SnapshotView

#: QEMU keeps at most 255 bytes of a tag (QEMUSnapshotInfo.name) and silently cuts the rest.
MAX_TAG_BYTES = 255

#: Run states in which a snapshot can be saved.
SAVE_STATES = ('running', 'paused')
#: Run states in which one can be loaded: restore-vm is where a failed load leaves a VM that
#: was running; loading a good snapshot is the way out.
LOAD_STATES = ('running', 'paused', 'restore-vm')
#: Run states in which the disks are not ours to write (handed over by migration).
NO_DELETE_STATES = ('inmigrate', 'postmigrate', 'finish-migrate')
#: The run-state check each module state needs before it acts.
RUN_STATE_ACTION = {'present': 'save', 'restored': 'load', 'absent': 'delete', 'pruned': 'delete'}

_STATE_HINTS = {
    'inmigrate': ' (waiting for an incoming migration)',
    'postmigrate': ' (migrated away)',
    'finish-migrate': ' (finishing a migration)',
    'shutdown': ' (the guest has shut down)',
    'suspended': ' (the guest is suspended; wake it first)',
    'guest-panicked': ' (the guest kernel panicked)',
    'internal-error': ' (QEMU hit an internal error)',
    'io-error': ' (stopped on a disk I/O error)',
    'prelaunch': ' (started with -S and never run)',
}

_CONTROL = re.compile('[\u0000-\u001f\u007f]')


# -- input that needs no VM ----------------------------------------------------------

def check_tag(text: str | None, option: str = 'name') -> str:
    """Reject tags QEMU would refuse, truncate or mangle."""
    if text is None or text == '':
        raise ParameterError(option, f'{option} must be a non-empty snapshot name')
    if not text.strip():
        raise ParameterError(option, f'{option} must not be only whitespace')
    size = len(text.encode('utf-8', 'surrogateescape'))
    if size > MAX_TAG_BYTES:
        raise ParameterError(
            option, f'{option} is {size} bytes long (UTF-8); QEMU keeps at most {MAX_TAG_BYTES} bytes of a snapshot name and would '
            'silently cut the rest')
    if _CONTROL.search(text):
        raise ParameterError(option, f'{option} {text!r} contains a control character (newline, tab...), '
                                     'which snapshot names cannot hold')
    return text


def check_prefix(text: str | None, option: str = 'prefix') -> str:
    """Retention prefix: as strict as a tag, since it must never match everything."""
    if text is None or not text.strip():
        raise ParameterError(
            option, f'{option} is required and must not be empty: retention only touches snapshots whose names start '
            'with it, so it can never delete snapshots it did not create')
    return check_tag(text, option)


# -- decisions on a view -----------------------------------------------------------

def check_run_state(status: str, action: str) -> None:
    """Refuse to act in a run state where the action is unsafe or impossible."""
    if action == 'save' and status not in SAVE_STATES:
        if status == 'restore-vm':
            raise VMStateError(
                'the VM is in run state restore-vm: a snapshot load failed and left it stopped, possibly '
                'half-restored. Load a good snapshot with state=restored (or resume it with cont if you '
                'accept its state) before saving a new snapshot')
        raise VMStateError('cannot save a snapshot while the VM is in run state {0}{1}: it must be running or '
                           'paused'.format(status, _STATE_HINTS.get(status, '')))
    if action == 'load' and status not in LOAD_STATES:
        raise VMStateError('cannot load a snapshot while the VM is in run state {0}{1}: it must be running or '
                           'paused'.format(status, _STATE_HINTS.get(status, '')))
    if action == 'delete' and status in NO_DELETE_STATES:
        raise VMStateError('cannot delete snapshots while the VM is in run state {0}{1}: its disks belong to '
                           'a migration'.format(status, _STATE_HINTS.get(status, '')))


def resolve_disk(view: SnapshotView, name: str | None, option: str = 'vmstate') -> str | None:
    """The node name a disk name means: a device id (as qemu_backup and qemu_vm name disks) or a
    node name. A name that is neither is returned as given (the caller reports it)."""
    if name is None:
        return None
    found = nodes_named(view.nodes, name)
    if len(found) > 1:
        raise ParameterError(option, '{0}: {1!r} is the device id of node {2!r} and the name of another node {3!r}; '
                                     'name the node you mean by its node name'.format(
                                         option, name, found[0]['node_name'], found[1]['node_name']))
    return found[0]['node_name'] if found else name


def resolve_disks(view: SnapshotView, devices: list | None, option: str = 'devices') -> list | None:
    """resolve_disk() of each name, duplicates dropped, order kept."""
    if devices is None:
        return None
    result = []
    for name in devices:
        node = resolve_disk(view, name, option)
        if node not in result:
            result.append(node)
    return result


def choose_devices(view: SnapshotView, devices: list | None, purpose: str) -> list:
    """The nodes to act on: `devices` validated against the VM, or the default.

    purpose 'write' (save, load): the default is every writable node at the top of a
    device's chain, and one that cannot hold snapshots is an error naming it, since a
    snapshot without it would not be consistent. 'delete' (delete, prune) and 'list':
    such nodes are simply not looked at, since they cannot hold snapshots; 'list' also
    accepts read-only nodes given explicitly.
    """
    if devices is not None:
        devices = resolve_disks(view, devices)
        for name in devices:
            node = view.by_name.get(name)
            if node is None:
                raise ParameterError('devices', f'devices: the VM has no disk with device id or node name {name!r}; its '
                                                f'disks are: {describe_disks(view.nodes)} (see qemu.vm.qemu_vm_info)')
            if purpose == 'list':
                continue
            if node['read_only']:
                raise ParameterError('devices', f'devices: node {name!r} is read-only and cannot take part in a '
                                                'snapshot')
            if not node['can_snapshot']:
                raise ParameterError(
                    'devices', 'devices: node {0!r} (driver {1}) cannot hold internal snapshots; only writable qcow2 '
                    'format nodes can{2}'.format(name, node['driver'], _file_node_hint(view, name)))
        return list(devices)
    if purpose != 'write':
        return view.default_scope()
    writable = view.writable_top()
    unable = [n for n in writable if not n['can_snapshot']]
    if unable:
        bad = unable[0]
        able = [n['node_name'] for n in writable if n['can_snapshot']]
        raise VMStateError(
            'node {0!r}{1} is a writable disk with driver {2}, which cannot hold internal snapshots, so a '
            'snapshot of every writable disk is impossible. Exclude it explicitly with devices: {3} (its '
            'content is then not part of the snapshot), or convert it to qcow2'.format(
                bad['node_name'], ' (device {0})'.format(bad['device']) if bad['device'] else '',
                bad['driver'], able or '[]'))
    if not writable:
        raise VMStateError('the VM has no writable disk, so there is nothing to hold an internal snapshot: '
                           'add a writable qcow2 disk')
    return [n['node_name'] for n in writable]


def _file_node_hint(view, name):
    parents = [n['node_name'] for n in view.nodes if n['can_snapshot'] and n['file'] and
               view.by_name.get(name, {}).get('file') == n['file'] and n['node_name'] != name]
    if parents:
        return f'; did you mean its format node {parents[0]!r}?'
    return ''


def choose_vmstate(vmstate: str | None, devices: list, option: str = 'vmstate') -> str:
    if vmstate is None:
        return devices[0]
    if vmstate not in devices:
        raise ParameterError(option, f'{option}: node {vmstate!r} must be one of the snapshot devices {devices}')
    return vmstate


class Plan:
    """What a run will do: `action` in save, replace, delete, load, prune or None (nothing)."""

    def __init__(self, action=None, devices=None, vmstate=None, delete_from=None, snapshot=None,
                 pruned=None, kept=None):
        self.action = action
        self.devices = devices or []
        self.vmstate = vmstate
        self.delete_from = delete_from or []
        self.snapshot = snapshot
        self.pruned = pruned or []
        self.kept = kept or []

    @property
    def changed(self) -> bool:
        return self.action is not None


def plan_present(view: SnapshotView, tag: str, devices: list | None, vmstate: str | None, force: bool,
                 ram: bool = True) -> Plan:
    devices = choose_devices(view, devices, 'write')
    vmstate = choose_vmstate(resolve_disk(view, vmstate), devices) if ram else None
    holders = view.holders(tag, devices)
    if not holders:
        return Plan('save', devices, vmstate)
    if force:
        return Plan('replace', devices, vmstate, delete_from=holders)
    if len(holders) < len(devices):
        missing = [d for d in devices if d not in holders]
        raise VMStateError(
            f'snapshot {tag!r} exists on {holders} but not on {missing}: it is inconsistent (partial). Use force: true to '
            'replace it on every device, or state: absent to remove it')
    return Plan(None, devices, view.state_node(tag, devices) or vmstate, snapshot=view.summary(tag, devices))


def plan_absent(view: SnapshotView, tag: str, devices: list | None) -> Plan:
    devices = choose_devices(view, devices, 'delete')
    holders = view.holders(tag, devices)
    if not holders:
        return Plan(None, devices)
    return Plan('delete', devices, view.state_node(tag, devices), delete_from=holders,
                snapshot=view.summary(tag, devices))


def plan_restored(view: SnapshotView, tag: str, devices: list | None, vmstate: str | None) -> Plan:
    devices = choose_devices(view, devices, 'write')
    vmstate = resolve_disk(view, vmstate)
    holders = view.holders(tag, devices)
    if not holders:
        known = view.names(devices)
        raise VMStateError('snapshot {0!r} does not exist on {1}; nothing was loaded. Existing snapshots: '
                           '{2}'.format(tag, devices, known or 'none'))
    if len(holders) < len(devices):
        missing = [d for d in devices if d not in holders]
        raise VMStateError(
            f'snapshot {tag!r} exists on {holders} but not on {missing}, so it cannot restore the whole VM; nothing was '
            'loaded. Pass devices to load it from a subset of disks deliberately')
    state_node = view.state_node(tag, devices)
    if vmstate is None:
        if state_node is None:
            files = [view.by_name[d]['file'] for d in devices if view.by_name[d].get('file')]
            raise VMStateError(
                'snapshot {0!r} holds no RAM state (a disk-only snapshot): QEMU cannot load it into a running VM, '
                'so nothing was loaded. Shut the VM down, then revert its images offline with state=restored and '
                'images: {1} (qemu-img snapshot -a)'.format(tag, files or '[the qcow2 paths]'))
        vmstate = state_node
    else:
        choose_vmstate(vmstate, devices)
        if view.record(tag, vmstate)['vm_state_size'] == 0:
            raise ParameterError('vmstate', 'vmstate: node {0!r} holds no VM state for snapshot {1!r}{2}'.format(
                vmstate, tag, f'; it is on {state_node!r}' if state_node else ''))
    return Plan('load', devices, vmstate, snapshot=view.summary(tag, devices))


def plan_pruned(view: SnapshotView, prefix: str, keep: int | None, max_age: int | None, devices: list | None,
                now: float | None = None) -> Plan:
    """Retention over snapshots whose name starts with `prefix`, newest first:
    the newest `keep` are kept; of the rest, those older than `max_age` seconds are
    deleted (all of the rest when max_age is None). Others are never looked at."""
    devices = choose_devices(view, devices, 'delete')
    now = time.time() if now is None else now
    ours = [s for s in view.summaries(devices) if s['name'].startswith(prefix)]
    newest_first = list(reversed(ours))
    pruned, kept = [], []
    for index, snap in enumerate(newest_first):
        protected = keep is not None and index < keep
        old_enough = max_age is None or now - snap['date_epoch'] > max_age
        (kept if protected or not old_enough else pruned).append(snap)
    pruned.reverse()
    kept.reverse()
    return Plan('prune' if pruned else None, devices, pruned=pruned, kept=kept)


# -- the request, the decision and its check --------------------------------------------

def default_quiesce(params: dict) -> str:
    """quiesce as given, else as for qemu_backup for a disk-only snapshot: preferred when qga is given.

    A snapshot with RAM state is consistent without freezing, and one taken frozen loads frozen,
    so it is not quiesced unless asked."""
    if params.get('quiesce') is not None:
        return params['quiesce']
    disk_only = params.get('state', 'present') == 'present' and params.get('ram') is False
    return 'preferred' if params.get('qga') and disk_only else 'off'


class SnapshotRequest(NamedTuple):
    """qemu_snapshot's parameters, checked without the VM."""

    state: str
    name: str | None
    force: bool
    prefix: str | None
    keep: int | None
    max_age: int | None
    devices: list | None
    vmstate: str | None
    ram: bool
    images: list | None
    quiesce: str


def parse_request(params: dict) -> SnapshotRequest:
    """qemu_snapshot's parameters, checked without the VM; raises ParameterError naming the bad one."""
    state, vmstate = params['state'], params['vmstate']
    ram, images = params.get('ram', True), params.get('images')
    devices = check_devices(params['devices'])
    _check_disk_only(state, ram, vmstate, devices, images, params)
    name = prefix = keep = max_age = None
    if state == 'pruned':
        if params['name'] is not None:
            raise ParameterError('name', 'name is not used with state=pruned: give prefix (and keep and/or max_age)')
        prefix = check_prefix(params['prefix'])
        if params['keep'] is None and params['max_age'] is None:
            raise ParameterError('keep', 'state=pruned needs keep, max_age or both')
        if params['keep'] is not None and params['keep'] < 0:
            raise ParameterError('keep', 'keep must be 0 or more, got {0}'.format(params['keep']))
        keep = params['keep']
        if params['max_age'] is not None:
            max_age = parse_age(params['max_age'])
    else:
        name = check_tag(params['name'])
        for option in ('prefix', 'keep', 'max_age'):
            if params[option] is not None:
                raise ParameterError(option, f'{option} is only used with state=pruned')
    if params['force'] and state != 'present':
        raise ParameterError('force', 'force is only used with state=present')
    if vmstate is not None:
        if state in ('absent', 'pruned'):
            raise ParameterError('vmstate', 'vmstate is only used with state=present or state=restored')
        if not vmstate:
            raise ParameterError('vmstate', 'vmstate must be a device id or node name; omit it for the default')
    quiesce = default_quiesce(params)
    if quiesce != 'off':
        if state != 'present':
            raise ParameterError('quiesce', 'quiesce is only used with state=present')
        if not params['qga']:
            raise ParameterError('qga', f'quiesce={quiesce} needs qga, the guest agent socket')
    return SnapshotRequest(state, name, params['force'], prefix, keep, max_age, devices, vmstate, ram, images, quiesce)


def _check_disk_only(state: str, ram: bool, vmstate: str | None, devices: list | None, images: list | None,
                     params: dict) -> None:
    """ram=false (save without RAM state) and images (offline revert) combine with little else."""
    if not ram:
        if state != 'present':
            raise ParameterError('ram', 'ram=false is only used with state=present (it takes a disk-only snapshot)')
        if vmstate is not None:
            raise ParameterError('vmstate', 'vmstate is not used with ram=false: a disk-only snapshot stores no RAM '
                                            'state')
    if images is not None:
        if state != 'restored':
            raise ParameterError('images', 'images is only used with state=restored (an offline revert of the '
                                           'images of a VM that is not running)')
        for option, value in (('devices', devices), ('vmstate', vmstate)):
            if value is not None:
                raise ParameterError(option, f'{option} is not used with images: the images are the disks')
    elif not params.get('qmp'):
        raise ParameterError('qmp', 'qmp is required: the path of the VM\'s QMP monitor socket (or host:port); only '
                                    'state=restored with images works without a running VM')


def decide(request: SnapshotRequest, view: SnapshotView) -> Plan:
    """The Plan for a parse_request() request on `view`."""
    state = request.state
    if state == 'present':
        return plan_present(view, request.name, request.devices, request.vmstate, request.force,
                            request.ram)
    if state == 'absent':
        return plan_absent(view, request.name, request.devices)
    if state == 'restored':
        return plan_restored(view, request.name, request.devices, request.vmstate)
    return plan_pruned(view, request.prefix, request.keep, request.max_age, request.devices)


def verify(view: SnapshotView, plan: Plan, request: SnapshotRequest) -> None:
    """Re-read after acting: what QEMU said it did must be what the images show."""
    name = request.name
    if plan.action in ('save', 'replace'):
        missing = [d for d in plan.devices if view.record(name, d) is None]
        if missing:
            raise VMStateError(f'QEMU reported snapshot {name!r} saved, but {missing} do not have it')
    if plan.action == 'delete' or plan.action == 'prune':
        names = [name] if plan.action == 'delete' else [s['name'] for s in plan.pruned]
        left = [n for n in names if view.holders(n, plan.devices)]
        if left:
            raise VMStateError(f'QEMU reported snapshots {left} deleted, but they are still there')


def predicted_names(before: list, plan: Plan, request: SnapshotRequest) -> list:
    """The snapshot names after `plan` (check mode: without acting)."""
    if plan.action in ('save', 'replace'):
        return [n for n in before if n != request.name] + [request.name]
    if plan.action == 'delete':
        return [n for n in before if n != request.name]
    if plan.action == 'prune':
        gone = set(s['name'] for s in plan.pruned)
        return [n for n in before if n not in gone]
    return list(before)


def report_snapshot(view: SnapshotView, plan: Plan, request: SnapshotRequest, check_mode: bool) -> dict | None:
    """The `snapshot` result: what the snapshot is after the task (would be, in check mode)."""
    if plan.action == 'delete' or (plan.action == 'replace' and check_mode):
        return plan.snapshot
    if plan.action == 'save' and check_mode:
        return None
    return view.summary(request.name, plan.devices)
