# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Internal VM snapshots: acting on QEMU.

The snapshot code is cut by concern:

* _snapshot_view: reading the VM (`read_view`) into a `SnapshotView`, grouped by tag;
* _snapshot_plan: input checks and pure decisions (`parse_request`, `decide` -> `Plan`);
* here: the actions (`save_snapshot`, `load_snapshot`, `delete_snapshot`): QMP snapshot
  jobs on QEMU >= 6.0, HMP savevm/loadvm/delvm through human-monitor-command before that,
  and `settle_earlier_jobs` for jobs an earlier, timed-out run left behind.

`save_snapshot(qmp, tag, vmstate, devices, timeout)` is the one call that stops the guest
to write its state, `save_disk_snapshot` takes one without RAM state (a QMP transaction, the
guest keeps running): wrap either (freeze -> save -> thaw) to quiesce a snapshot. Offline
reverts of images (qemu-img snapshot -a) are in _snapshot_offline.

No Ansible imports here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandError,
    JobError,
    ParameterError,
    QemuTimeoutError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import JOB_ID_PREFIX, stopped_ms
from ansible_collections.qemu.vm.plugins.module_utils._snapshot.plan import choose_devices, resolve_disk, resolve_disks
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline

if TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession
    from ansible_collections.qemu.vm.plugins.module_utils._snapshot.view import SnapshotView

SNAPSHOT_JOB_PREFIX = JOB_ID_PREFIX + 'snapshot-'

_JOB_ID = re.compile(re.escape(SNAPSHOT_JOB_PREFIX) + r'[A-Za-z0-9-]+')


def settle_earlier_jobs(qmp: QMPSession, timeout: float, dismiss: bool = True) -> list:
    """Wait for snapshot jobs an earlier, timed-out run of ours left running; dismiss them.

    Reading snapshots while such a job still runs would give a half-made view, and a
    second snapshot job would collide with it.
    """
    if not qmp.has_command('query-jobs'):
        return []
    running = []

    def settled():
        running[:] = [job for job in qmp.execute('query-jobs')
                      if job.get('id', '').startswith(SNAPSHOT_JOB_PREFIX) and job.get('status') != 'concluded']
        return not running

    try:
        qmp.watch(settled, Deadline(timeout), 'snapshot jobs of an earlier run')
    except QemuTimeoutError as exc:
        if not running:  # a query-jobs that timed out, not the wait
            raise
        raise VMStateError(
            'snapshot job {0} started by an earlier run is still {1} after {2:g} s; wait for it to finish '
            '(query-jobs) and retry'.format(running[0]['id'], running[0].get('status'), timeout)) from exc
    if dismiss:
        return qmp.dismiss_stale_jobs()
    return []


def uses_jobs(qmp: QMPSession) -> bool:
    """QEMU >= 6.0 has snapshot-save/load/delete jobs; before that only HMP savevm & co."""
    return qmp.has_command('snapshot-save')


def require_job_selection(qmp: QMPSession, view: SnapshotView, devices: list | None, vmstate: str | None) -> None:
    """HMP savevm/loadvm/delvm always cover every writable disk and pick the state node
    themselves: refuse an explicit `devices` / `vmstate` (as the user gave them, None when
    omitted) they cannot honour, before touching the VM."""
    if uses_jobs(qmp) or (devices is None and vmstate is None):
        return
    devices, vmstate = resolve_disks(view, devices), resolve_disk(view, vmstate)
    everything = choose_devices(view, None, 'write')
    if (devices is not None and sorted(devices) != sorted(everything)) or \
            (vmstate is not None and vmstate != everything[0]):
        raise ParameterError(
            'devices' if devices is not None else 'vmstate',
            f'QEMU {qmp.version_string} has no snapshot-save job (added in 6.0); its HMP savevm/loadvm/delvm always act on every '
            f'writable disk ({everything}) and keep the VM state on {everything[0]!r}, so devices and vmstate cannot choose '
            'otherwise')


def save_snapshot(qmp: QMPSession, tag: str, vmstate: str, devices: list, timeout: float) -> dict:
    """Save `tag` (RAM state on `vmstate`, disks `devices`). Returns {method, downtime_ms}.

    The guest is stopped while QEMU writes; this is the step a filesystem freeze wraps.
    """
    if uses_jobs(qmp):
        return _job(qmp, 'snapshot-save', {'tag': tag, 'vmstate': vmstate, 'devices': list(devices)}, timeout)
    return hmp_command(qmp, 'savevm', tag, timeout)


def save_disk_snapshot(qmp: QMPSession, tag: str, devices: list, timeout: float) -> dict:
    """Save `tag` without RAM state: one QMP transaction of blockdev-snapshot-internal-sync per
    node, so every disk is taken at the same instant or none is. The VM is not stopped; this is
    the step a filesystem freeze wraps (milliseconds). Returns {method, downtime_ms}."""
    actions = [{'type': 'blockdev-snapshot-internal-sync', 'data': {'device': node, 'name': tag}} for node in devices]
    try:
        qmp.execute('transaction', {'actions': actions}, timeout=timeout)
    except QemuTimeoutError as exc:
        raise QemuTimeoutError(f'saving disk-only snapshot {tag!r}', timeout,
                               'QEMU may still finish it; check with qemu.vm.qemu_snapshot_info') from exc
    return {'method': 'transaction', 'downtime_ms': 0}


def load_snapshot(qmp: QMPSession, tag: str, vmstate: str, devices: list, timeout: float) -> dict:
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
                f'loading snapshot {tag!r} failed: {reason}. QEMU had already stopped the VM to restore it, so it is left '
                'in run state restore-vm and was NOT resumed: its memory and disks may be half-restored. Load a '
                'good snapshot with state=restored; resume it (cont) only if you accept a possibly corrupt '
                'guest') from exc
        if status == 'paused':
            raise VMStateError(
                f'loading snapshot {tag!r} failed: {reason}. The VM stays paused; if QEMU had begun restoring, its memory '
                'and disks may be half-restored: load a good snapshot with state=restored before resuming '
                'it') from exc
        raise


def delete_snapshot(qmp: QMPSession, tag: str, devices: list, timeout: float) -> dict:
    if uses_jobs(qmp):
        return _job(qmp, 'snapshot-delete', {'tag': tag, 'devices': list(devices)}, timeout)
    return hmp_command(qmp, 'delvm', tag, timeout)


_DOING = {'snapshot-save': 'saving', 'snapshot-load': 'loading', 'snapshot-delete': 'deleting'}


def _job(qmp, command, arguments, timeout):
    try:
        info = qmp.run_job(command, arguments, timeout=timeout)
    except QemuTimeoutError as exc:
        raise QemuTimeoutError('{0} snapshot {1!r}'.format(_DOING[command], arguments['tag']), timeout,
                               _timeout_note(command, str(exc))) from exc
    return {'method': 'job', 'downtime_ms': stopped_ms(info.get('events', []), until=info.get('ended_at'))}


def _timeout_note(command, message):
    if 'concluded later and was dismissed' in message:
        return f'the {command} job concluded later and was dismissed'
    job = _JOB_ID.search(message)
    return ('QEMU keeps running the {0} job{1}: the next qemu.vm.qemu_snapshot task on this VM waits for it to '
            'conclude and dismisses it'.format(command, ' ' + job.group(0) if job else ''))


def hmp_quote(tag: str) -> str:
    """A tag as one HMP string argument: double-quoted, backslash and quote escaped."""
    return '"{0}"'.format(tag.replace('\\', '\\\\').replace('"', '\\"'))


def hmp_command(qmp: QMPSession, verb: str, tag: str, timeout: float) -> dict:
    """HMP savevm/loadvm/delvm of `tag`; HMP answers errors as text, which become CommandError."""
    line = f'{verb} {hmp_quote(tag)}'
    with qmp.events('STOP', 'RESUME') as watcher:
        try:
            output = qmp.execute('human-monitor-command', {'command-line': line}, timeout=timeout)
        except QemuTimeoutError as exc:
            raise QemuTimeoutError(f'HMP {verb} of snapshot {tag!r}', timeout,
                                   'QEMU may still be working on it; check with qemu.vm.qemu_snapshot_info') from exc
        watcher.pending()
        events = list(watcher.seen)
    problems = [ln.strip() for ln in (output or '').splitlines()
                if ln.strip() and not ln.strip().lower().startswith('warning:')]
    if problems:
        desc = ' '.join(problems)
        if desc.startswith('Error: '):
            desc = desc[len('Error: '):]
        raise CommandError('human-monitor-command', 'HMP', desc,
                           message=f'HMP {verb} of snapshot {tag!r} failed: {desc}')
    return {'method': 'hmp', 'downtime_ms': stopped_ms(events)}
