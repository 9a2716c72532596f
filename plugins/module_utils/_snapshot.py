# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Internal VM snapshots: read them as one view across devices, decide, and act.

Layers, top to bottom:

* validation of user input that needs no VM (`check_tag`, `check_prefix`, `parse_age`);
* reading the VM (`read_view`): block nodes plus every node's snapshot table,
  grouped by tag (`SnapshotView`);
* pure decisions (`choose_devices`, `plan_present`, `plan_absent`, `plan_restored`,
  `plan_pruned`), unit-testable without QEMU;
* actions (`save_snapshot`, `load_snapshot`, `delete_snapshot`): QMP snapshot jobs on
  QEMU >= 6.0, HMP savevm/loadvm/delvm through human-monitor-command before that.

`save_snapshot(qmp, tag, vmstate, devices, timeout)` is the one call that stops the guest
to write its state: wrap it (freeze → save → thaw) to quiesce a snapshot.

No Ansible imports here.
"""

from __future__ import annotations

import datetime
import re
import time

from ansible_collections.qemu.vm.plugins.module_utils._block import block_nodes
from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandError,
    JobError,
    QemuTimeoutError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._qmp import JOB_ID_PREFIX, stopped_ms

#: QEMU keeps at most 255 bytes of a tag (QEMUSnapshotInfo.name) and silently cuts the rest.
MAX_TAG_BYTES = 255

#: Run states in which a snapshot can be saved.
SAVE_STATES = ('running', 'paused')
#: Run states in which one can be loaded: restore-vm is where a failed load leaves a VM that
#: was running; loading a good snapshot is the way out.
LOAD_STATES = ('running', 'paused', 'restore-vm')
#: Run states in which the disks are not ours to write (handed over by migration).
NO_DELETE_STATES = ('inmigrate', 'postmigrate', 'finish-migrate')

SNAPSHOT_JOB_PREFIX = JOB_ID_PREFIX + 'snapshot-'

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

_AGE_PART = re.compile(r'([0-9]+)([smhdw])')
_AGE_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}
_JOB_ID = re.compile(re.escape(SNAPSHOT_JOB_PREFIX) + r'[A-Za-z0-9-]+')
_CONTROL = re.compile(u'[\u0000-\u001f\u007f]')


class SnapshotParameterError(ValueError):
    """A parameter is unusable; the message names it. Raised before the VM is touched."""


# -- input that needs no VM ----------------------------------------------------------

def check_tag(text, option='name'):
    """Reject tags QEMU would refuse, truncate or mangle."""
    if text is None or text == '':
        raise SnapshotParameterError('{0} must be a non-empty snapshot name'.format(option))
    if not text.strip():
        raise SnapshotParameterError('{0} must not be only whitespace'.format(option))
    size = len(text.encode('utf-8', 'surrogateescape'))
    if size > MAX_TAG_BYTES:
        raise SnapshotParameterError(
            '{0} is {1} bytes long (UTF-8); QEMU keeps at most {2} bytes of a snapshot name and would '
            'silently cut the rest'.format(option, size, MAX_TAG_BYTES))
    if _CONTROL.search(text):
        raise SnapshotParameterError('{0} {1!r} contains a control character (newline, tab...), '
                                     'which snapshot names cannot hold'.format(option, text))
    return text


def check_prefix(text, option='prefix'):
    """Retention prefix: as strict as a tag, since it must never match everything."""
    if text is None or not text.strip():
        raise SnapshotParameterError(
            '{0} is required and must not be empty: retention only touches snapshots whose names start '
            'with it, so it can never delete snapshots it did not create'.format(option))
    return check_tag(text, option)


def parse_age(text, option='max_age'):
    """'14d', '12h', '1d12h', '90m', '2w', '30s' -> seconds."""
    raw = (text or '').strip().lower()
    parts = _AGE_PART.findall(raw)
    if not raw or ''.join(n + u for n, u in parts) != raw:
        raise SnapshotParameterError(
            '{0} {1!r} is not an age: use a number with a unit s, m, h, d or w, for example 14d, 12h or '
            '1d12h'.format(option, text))
    seconds = sum(int(n) * _AGE_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise SnapshotParameterError('{0} must be longer than zero, got {1!r}'.format(option, text))
    return seconds


def check_devices(devices, option='devices'):
    """Node names as given: non-empty, no duplicates kept, order preserved."""
    if devices is None:
        return None
    result = []
    for name in devices:
        if not name:
            raise SnapshotParameterError('{0} must not contain empty node names'.format(option))
        if name not in result:
            result.append(name)
    if not result:
        raise SnapshotParameterError(
            '{0} must name at least one node; omit it to use every writable disk'.format(option))
    return result


# -- reading the VM -------------------------------------------------------------------

def iso_utc(seconds):
    return datetime.datetime.fromtimestamp(int(seconds), tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def snapshot_record(raw):
    """One entry of image.snapshots as the modules return it."""
    date_sec = int(raw.get('date-sec', 0))
    return {
        'name': raw.get('name'),
        'id': raw.get('id'),
        'vm_state_size': int(raw.get('vm-state-size', 0)),
        'date': iso_utc(date_sec),
        'date_epoch': date_sec,
        'vm_clock': round(int(raw.get('vm-clock-sec', 0)) + int(raw.get('vm-clock-nsec', 0)) / 1e9, 3),
        '_order': (date_sec, int(raw.get('date-nsec', 0)), _id_number(raw.get('id'))),
    }


def _id_number(snapshot_id):
    try:
        return int(snapshot_id)
    except (TypeError, ValueError):
        return 0


def public(record):
    """A record without its private sort key."""
    if record is None:
        return None
    return dict((k, v) for k, v in record.items() if not k.startswith('_'))


class SnapshotView(object):
    """The VM's block nodes and their snapshot tables, grouped by tag."""

    def __init__(self, nodes, tables):
        self.nodes = nodes
        self.by_name = dict((n['node_name'], n) for n in nodes)
        self.tables = tables  # node name -> [record]

    # which nodes a snapshot of "the VM" covers by default
    def writable_top(self):
        return [n for n in self.nodes if n['top'] and not n['read_only']]

    def default_scope(self):
        """Writable top-of-device nodes that can hold snapshots (what listing and deleting cover)."""
        return [n['node_name'] for n in self.writable_top() if n['can_snapshot']]

    def holders(self, tag, scope):
        """Nodes of `scope` whose image has `tag`, in scope order."""
        return [node for node in scope if self.record(tag, node) is not None]

    def record(self, tag, node):
        for record in self.tables.get(node, []):
            if record['name'] == tag:
                return record
        return None

    def names(self, scope):
        """Every tag on any node of `scope`, oldest first."""
        found = {}
        for node in scope:
            for record in self.tables.get(node, []):
                best = found.get(record['name'])
                if best is None or record['_order'] > best:
                    found[record['name']] = record['_order']
        return [item[0] for item in sorted(found.items(), key=lambda item: (item[1], item[0]))]

    def state_node(self, tag, scope):
        """The node of `scope` that holds the RAM state of `tag`, or None."""
        for node in scope:
            record = self.record(tag, node)
            if record is not None and record['vm_state_size'] > 0:
                return node
        return None

    def summary(self, tag, scope):
        """One snapshot across `scope`: the record of its state node (else the first holder),
        plus where it is and is not."""
        holders = self.holders(tag, scope)
        if not holders:
            return None
        vmstate = self.state_node(tag, scope)
        result = public(self.record(tag, vmstate or holders[0]))
        result['vmstate'] = vmstate
        result['devices'] = holders
        result['missing_devices'] = [node for node in scope if node not in holders]
        result['complete'] = not result['missing_devices']
        return result

    def summaries(self, scope):
        return [self.summary(tag, scope) for tag in self.names(scope)]


def read_view(qmp):
    """Read the block graph and every node's snapshot table (two read-only queries)."""
    nodes = block_nodes(qmp)
    tables = {}
    for raw in qmp.execute('query-named-block-nodes', {'flat': True}):
        image = raw.get('image') or {}
        tables[raw.get('node-name')] = [snapshot_record(s) for s in image.get('snapshots', [])]
    return SnapshotView(nodes, tables)


def settle_earlier_jobs(qmp, timeout, dismiss=True):
    """Wait for snapshot jobs an earlier, timed-out run of ours left running; dismiss them.

    Reading snapshots while such a job still runs would give a half-made view, and a
    second snapshot job would collide with it.
    """
    if not qmp.has_command('query-jobs'):
        return []
    end = time.monotonic() + timeout
    while True:
        ours = [job for job in qmp.execute('query-jobs') if job.get('id', '').startswith(SNAPSHOT_JOB_PREFIX)]
        running = [job for job in ours if job.get('status') != 'concluded']
        if not running:
            break
        if time.monotonic() >= end:
            raise VMStateError(
                'snapshot job {0} started by an earlier run is still {1} after {2:g} s; wait for it to finish '
                '(query-jobs) and retry'.format(running[0]['id'], running[0].get('status'), timeout))
        time.sleep(0.1)
    if dismiss:
        return qmp.dismiss_stale_jobs()
    return []


# -- decisions (pure) -----------------------------------------------------------------

def check_run_state(status, action):
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


def choose_devices(view, devices, purpose):
    """The nodes to act on: `devices` validated against the VM, or the default.

    purpose 'write' (save, load): the default is every writable node at the top of a
    device's chain, and one that cannot hold snapshots is an error naming it, since a
    snapshot without it would not be consistent. 'delete' (delete, prune) and 'list':
    such nodes are simply not looked at, since they cannot hold snapshots; 'list' also
    accepts read-only nodes given explicitly.
    """
    if devices is not None:
        for name in devices:
            node = view.by_name.get(name)
            if node is None:
                known = [n['node_name'] for n in view.nodes if n['node_name']]
                raise SnapshotParameterError('devices: the VM has no block node named {0!r}; its nodes are: {1} '
                                             '(use format node names, see qemu.vm.qemu_vm_info)'.format(
                                                 name, ', '.join(known) or 'none'))
            if purpose == 'list':
                continue
            if node['read_only']:
                raise SnapshotParameterError('devices: node {0!r} is read-only and cannot take part in a '
                                             'snapshot'.format(name))
            if not node['can_snapshot']:
                raise SnapshotParameterError(
                    'devices: node {0!r} (driver {1}) cannot hold internal snapshots; only writable qcow2 '
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
        return '; did you mean its format node {0!r}?'.format(parents[0])
    return ''


def choose_vmstate(vmstate, devices, option='vmstate'):
    if vmstate is None:
        return devices[0]
    if vmstate not in devices:
        raise SnapshotParameterError('{0}: node {1!r} must be one of the snapshot devices {2}'.format(
            option, vmstate, devices))
    return vmstate


class Plan(object):
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
    def changed(self):
        return self.action is not None


def plan_present(view, tag, devices, vmstate, force):
    devices = choose_devices(view, devices, 'write')
    vmstate = choose_vmstate(vmstate, devices)
    holders = view.holders(tag, devices)
    if not holders:
        return Plan('save', devices, vmstate)
    if force:
        return Plan('replace', devices, vmstate, delete_from=holders)
    if len(holders) < len(devices):
        missing = [d for d in devices if d not in holders]
        raise VMStateError(
            'snapshot {0!r} exists on {1} but not on {2}: it is inconsistent (partial). Use force: true to '
            'replace it on every device, or state: absent to remove it'.format(tag, holders, missing))
    return Plan(None, devices, view.state_node(tag, devices) or vmstate, snapshot=view.summary(tag, devices))


def plan_absent(view, tag, devices):
    devices = choose_devices(view, devices, 'delete')
    holders = view.holders(tag, devices)
    if not holders:
        return Plan(None, devices)
    return Plan('delete', devices, view.state_node(tag, devices), delete_from=holders,
                snapshot=view.summary(tag, devices))


def plan_restored(view, tag, devices, vmstate):
    devices = choose_devices(view, devices, 'write')
    holders = view.holders(tag, devices)
    if not holders:
        known = view.names(devices)
        raise VMStateError('snapshot {0!r} does not exist on {1}; nothing was loaded. Existing snapshots: '
                           '{2}'.format(tag, devices, known or 'none'))
    if len(holders) < len(devices):
        missing = [d for d in devices if d not in holders]
        raise VMStateError(
            'snapshot {0!r} exists on {1} but not on {2}, so it cannot restore the whole VM; nothing was '
            'loaded. Pass devices to load it from a subset of disks deliberately'.format(tag, holders, missing))
    state_node = view.state_node(tag, devices)
    if vmstate is None:
        if state_node is None:
            raise VMStateError('snapshot {0!r} holds no VM state (a disk-only snapshot), so it cannot be loaded '
                               'into a running VM; revert it offline with qemu-img snapshot -a'.format(tag))
        vmstate = state_node
    else:
        choose_vmstate(vmstate, devices)
        if view.record(tag, vmstate)['vm_state_size'] == 0:
            raise SnapshotParameterError('vmstate: node {0!r} holds no VM state for snapshot {1!r}{2}'.format(
                vmstate, tag, '; it is on {0!r}'.format(state_node) if state_node else ''))
    return Plan('load', devices, vmstate, snapshot=view.summary(tag, devices))


def plan_pruned(view, prefix, keep, max_age, devices, now=None):
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


# -- acting ---------------------------------------------------------------------------

def uses_jobs(qmp):
    """QEMU >= 6.0 has snapshot-save/load/delete jobs; before that only HMP savevm & co."""
    return qmp.has_command('snapshot-save')


def require_job_selection(qmp, view, devices, vmstate):
    """HMP savevm/loadvm/delvm always cover every writable disk and pick the state node
    themselves: refuse an explicit `devices` / `vmstate` (as the user gave them, None when
    omitted) they cannot honour, before touching the VM."""
    if uses_jobs(qmp) or (devices is None and vmstate is None):
        return
    everything = choose_devices(view, None, 'write')
    if (devices is not None and sorted(devices) != sorted(everything)) or \
            (vmstate is not None and vmstate != everything[0]):
        raise SnapshotParameterError(
            'QEMU {0} has no snapshot-save job (added in 6.0); its HMP savevm/loadvm/delvm always act on every '
            'writable disk ({1}) and keep the VM state on {2!r}, so devices and vmstate cannot choose '
            'otherwise'.format(qmp.version_string, everything, everything[0]))


def save_snapshot(qmp, tag, vmstate, devices, timeout):
    """Save `tag` (RAM state on `vmstate`, disks `devices`). Returns {method, downtime_ms}.

    The guest is stopped while QEMU writes; this is the step a filesystem freeze wraps.
    """
    if uses_jobs(qmp):
        return _job(qmp, 'snapshot-save', {'tag': tag, 'vmstate': vmstate, 'devices': list(devices)}, timeout)
    return hmp_command(qmp, 'savevm', tag, timeout)


def load_snapshot(qmp, tag, vmstate, devices, timeout):
    """Load `tag`. A failure after QEMU began restoring leaves the VM stopped (run state
    restore-vm when it was running), possibly half-restored, and it is not resumed."""
    try:
        if uses_jobs(qmp):
            return _job(qmp, 'snapshot-load', {'tag': tag, 'vmstate': vmstate, 'devices': list(devices)}, timeout)
        return hmp_command(qmp, 'loadvm', tag, timeout)
    except (JobError, CommandError) as exc:
        reason = getattr(exc, 'error', None) or getattr(exc, 'desc', None) or str(exc)
        status = qmp.run_state()
        if status == 'restore-vm':
            raise VMStateError(
                'loading snapshot {0!r} failed: {1}. QEMU had already stopped the VM to restore it, so it is left '
                'in run state restore-vm and was NOT resumed: its memory and disks may be half-restored. Load a '
                'good snapshot with state=restored; resume it (cont) only if you accept a possibly corrupt '
                'guest'.format(tag, reason))
        if status == 'paused':
            raise VMStateError(
                'loading snapshot {0!r} failed: {1}. The VM stays paused; if QEMU had begun restoring, its memory '
                'and disks may be half-restored: load a good snapshot with state=restored before resuming '
                'it'.format(tag, reason))
        raise


def delete_snapshot(qmp, tag, devices, timeout):
    if uses_jobs(qmp):
        return _job(qmp, 'snapshot-delete', {'tag': tag, 'devices': list(devices)}, timeout)
    return hmp_command(qmp, 'delvm', tag, timeout)


_DOING = {'snapshot-save': 'saving', 'snapshot-load': 'loading', 'snapshot-delete': 'deleting'}


def _job(qmp, command, arguments, timeout):
    try:
        info = qmp.run_job(command, arguments, timeout=timeout)
    except QemuTimeoutError as exc:
        raise QemuTimeoutError('{0} snapshot {1!r}'.format(_DOING[command], arguments['tag']), timeout,
                               _timeout_note(command, str(exc)))
    return {'method': 'job', 'downtime_ms': stopped_ms(info.get('events', []))}


def _timeout_note(command, message):
    if 'concluded later and was dismissed' in message:
        return 'the {0} job concluded later and was dismissed'.format(command)
    job = _JOB_ID.search(message)
    return ('QEMU keeps running the {0} job{1}: the next qemu.vm.qemu_snapshot task on this VM waits for it to '
            'conclude and dismisses it'.format(command, ' ' + job.group(0) if job else ''))


def hmp_quote(tag):
    """A tag as one HMP string argument: double-quoted, backslash and quote escaped."""
    return '"{0}"'.format(tag.replace('\\', '\\\\').replace('"', '\\"'))


def hmp_command(qmp, verb, tag, timeout):
    """HMP savevm/loadvm/delvm of `tag`; HMP answers errors as text, which become CommandError."""
    line = '{0} {1}'.format(verb, hmp_quote(tag))
    with qmp.events('STOP', 'RESUME') as watcher:
        try:
            output = qmp.execute('human-monitor-command', {'command-line': line}, timeout=timeout)
        except QemuTimeoutError:
            raise QemuTimeoutError('HMP {0} of snapshot {1!r}'.format(verb, tag), timeout,
                                   'QEMU may still be working on it; check with qemu.vm.qemu_snapshot_info')
        watcher.pending()
        events = list(watcher.seen)
    problems = [ln.strip() for ln in (output or '').splitlines()
                if ln.strip() and not ln.strip().lower().startswith('warning:')]
    if problems:
        desc = ' '.join(problems)
        if desc.startswith('Error: '):
            desc = desc[len('Error: '):]
        raise CommandError('human-monitor-command', 'HMP', desc,
                           message='HMP {0} of snapshot {1!r} failed: {2}'.format(verb, tag, desc))
    return {'method': 'hmp', 'downtime_ms': stopped_ms(events)}
