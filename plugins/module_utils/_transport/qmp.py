# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""QMP sessions on top of qemu.qmp: commands, events and jobs, each with a deadline."""

from __future__ import annotations

import contextlib
import time
import uuid

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    ConnectionLostError,
    JobError,
    QemuTimeoutError,
    QemuVMError,
    SocketBusyError,
    SocketError,
)
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import ClientSession, Deadline, _describe, qmp_lib
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import wait_until

#: Every job this collection starts has an id with this prefix, so a later run
#: can recognise (and dismiss) a concluded job an interrupted run left behind.
JOB_ID_PREFIX = 'qemu-vm-'

#: How long a long wait keeps asking on the session it started with (short jobs end within it),
#: and the bounds of the interval between fresh sessions after that: QEMU serves one client per
#: monitor, so other clients get it between our questions; a finished job is noticed within POLL_MAX.
ATTACHED_SECONDS = 0.5
POLL_MIN = 0.2
POLL_MAX = 1.0


class QMPSession(ClientSession):
    """A QMP monitor session: `with QMPSession(path, timeout) as qmp: qmp.execute(...)`."""

    kind = 'QMP'

    def __init__(self, address, timeout=30.0, lock=True, runner=None, connector=None):
        super().__init__(address, timeout, lock, runner, connector)
        self._commands = None
        self._stale_jobs_dismissed = False

    def _open(self, deadline):
        sock = self.connect(deadline)
        client = self._new_client()
        try:
            self.runner.run(
                client.connect(sock), deadline.remaining(),
                what=f'the QMP greeting on {self.shown}',
                hint='another client may be holding the monitor (QEMU serves one QMP client at a time)')
        except qmp_lib.QMPError as exc:
            sock.close()
            raise ConnectionLostError(self.shown, f'QMP handshake failed: {_describe(exc)}')
        except BaseException:
            sock.close()
            raise
        self._client = client

    # -- facts from the greeting ------------------------------------------------

    @property
    def version(self):
        """{'major', 'minor', 'micro', 'package'} from the QMP greeting."""
        raw = self._client.greeting.QMP.version
        qemu = raw.get('qemu', {})
        return {
            'major': int(qemu.get('major', 0)),
            'minor': int(qemu.get('minor', 0)),
            'micro': int(qemu.get('micro', 0)),
            'package': (raw.get('package') or '').strip(),
        }

    @property
    def version_string(self):
        v = self.version
        return '{0}.{1}.{2}'.format(v['major'], v['minor'], v['micro'])

    def version_at_least(self, major, minor=0):
        v = self.version
        return (v['major'], v['minor']) >= (major, minor)

    def has_command(self, name):
        if self._commands is None:
            self._commands = frozenset(c['name'] for c in self.execute('query-commands'))
        return name in self._commands

    def run_state(self):
        return self.execute('query-status')['status']

    # -- events -------------------------------------------------------------------

    @contextlib.contextmanager
    def events(self, *names):
        """Listen for events named `names` (all if none) for the life of the block.

        Register before sending the command that causes them, so none is missed.
        """
        listener = self.runner.call(lambda: qmp_lib.EventListener(names or None))
        self._client.register_listener(listener)
        try:
            yield EventWatcher(self, listener)
        finally:
            self._client.remove_listener(listener)

    # -- sharing the monitor ----------------------------------------------------

    def watch(self, probe, deadline, what, hint=None):
        """Wait until `probe()` returns something truthy, and return that, without holding the monitor.

        QEMU serves one client per monitor socket, and a job (a backup's copy, a snapshot save)
        runs inside QEMU without needing us: for the first ATTACHED_SECONDS we ask on this session
        (short jobs end here, measured precisely); after that the socket and our per-socket lock
        are released between questions, and each question is asked on a fresh session, every
        POLL_MIN to POLL_MAX seconds. The job's state in QEMU is the truth between sessions, so
        nothing is lost while we are away. The session is open again when this returns or raises.
        """
        attached = Deadline(min(ATTACHED_SECONDS, deadline.remaining()))
        found = wait_until(probe, attached, what, interval=0.02, max_interval=0.1, default=None)
        if found or deadline.expired:
            return found or wait_until(probe, deadline, what, hint=hint)

        def ask_on_a_fresh_session():
            self.open()
            try:
                return probe()
            finally:
                self.close()

        self.close()
        try:
            found = wait_until(ask_on_a_fresh_session, deadline, what, hint=hint, interval=POLL_MIN, max_interval=POLL_MAX)
        except BaseException:
            self._reopen_for_cleanup()
            raise
        self.open()
        return found

    def _reopen_for_cleanup(self):
        """Reopen after a failed wait so the caller's cleanup can run; the wait's error is the one to report."""
        try:
            self.open()
        except QemuVMError:
            pass  # the cleanup's own commands then fail with "the session is closed"

    # -- jobs -------------------------------------------------------------------

    def run_job(self, command, arguments, timeout=None, grace=30.0):
        """Start a job-style command, wait until it concludes, dismiss it, return its info.

        Raises JobError with QEMU's message when the job concluded with an error, and
        QemuTimeoutError when it did not conclude within `timeout`. The job is dismissed
        on every path where it concluded; after a timeout we wait up to `grace` seconds
        more for that, and a job still running then is dismissed by the next run
        (dismiss_stale_jobs).
        """
        bound = self.timeout if timeout is None else timeout
        if not self._stale_jobs_dismissed:
            # Once per session: after that every job of ours is dismissed by run_job itself,
            # and this round trip stays out of windows callers time (a frozen guest's).
            self.dismiss_stale_jobs()
        job_id = f'{JOB_ID_PREFIX}{command}-{uuid.uuid4().hex[:12]}'
        args = dict(arguments)
        args['job-id'] = job_id

        def concluded(event):
            data = event.get('data', {})
            return data.get('id') == job_id and data.get('status') == 'concluded'

        deadline = Deadline(bound)
        with self.events('JOB_STATUS_CHANGE', 'STOP', 'RESUME') as watcher:
            self.execute(command, args, timeout=bound)
            # Short jobs end while we listen (their STOP/RESUME events time the guest's downtime).
            try:
                ended = watcher.wait(concluded, min(ATTACHED_SECONDS, bound), what=f'{command} job {job_id}')
            except QemuTimeoutError:
                ended = None
            seen = list(watcher.seen)
        if ended is None:
            # A long job: watched through short sessions (watch), so the monitor stays free for others.
            info = self._watch_job(job_id, command, deadline, grace)
            info['ended_at'] = time.time()
        else:
            info = self._job_info(job_id)
        if 'status' not in info:
            raise JobError(job_id, command, 'the job disappeared from query-jobs while we were not connected (another '
                                            'client dismissed it); its outcome is unknown')
        self._dismiss(job_id)
        info['events'] = seen
        if info.get('error'):
            raise JobError(job_id, command, info['error'])
        return info

    def _watch_job(self, job_id, command, deadline, grace):
        def concluded():
            info = self._job_info(job_id)
            return info if info.get('status') in ('concluded', None) else None

        try:
            return self.watch(concluded, deadline, f'{command} job {job_id}')
        except QemuTimeoutError:
            if not deadline.expired:
                raise  # a query that timed out (the monitor held elsewhere), not the job
            try:
                self.watch(concluded, Deadline(min(grace, deadline.seconds)), f'conclusion of {job_id}')
                self._dismiss(job_id)
                note = 'it concluded later and was dismissed'
            except QemuTimeoutError:
                note = 'it is still running; the next qemu.vm run dismisses it once it concludes'
            raise QemuTimeoutError(f'{command} job {job_id}', deadline.seconds, note) from None

    def _job_info(self, job_id):
        for job in self.execute('query-jobs'):
            if job.get('id') == job_id:
                return dict(job)
        return {'id': job_id}

    def _dismiss(self, job_id):
        self.execute('job-dismiss', {'id': job_id})

    def dismiss_stale_jobs(self):
        """Dismiss concluded jobs an earlier, interrupted run of ours left behind."""
        if not self.has_command('query-jobs'):
            return []
        stale = [job['id'] for job in self.execute('query-jobs')
                 if job.get('id', '').startswith(JOB_ID_PREFIX) and job.get('status') == 'concluded']
        for job_id in stale:
            self._dismiss(job_id)
        self._stale_jobs_dismissed = True
        return stale


class EventWatcher:
    """Synchronous view of one scoped event listener; remembers every event it saw."""

    def __init__(self, session, listener):
        self._session = session
        self._listener = listener
        self.seen = []

    def wait(self, predicate, timeout, what='event'):
        """Return the first event matching `predicate`, waiting at most `timeout` seconds."""
        deadline = Deadline(timeout)
        while True:
            for event in self._drain():
                if predicate(event):
                    return event
            if deadline.expired:
                raise QemuTimeoutError(f'waiting for {what} on {self._session.shown}', timeout)
            try:
                event = self._session.runner.run(self._listener.get(), deadline.remaining(), what=what)
            except QemuTimeoutError:
                raise QemuTimeoutError(f'waiting for {what} on {self._session.shown}', timeout)
            self.seen.append(dict(event))
            if predicate(event):
                return event

    def _drain(self):
        events = [dict(e) for e in self._listener.clear()]
        self.seen.extend(events)
        return events

    def pending(self):
        """Events that arrived without being waited for (non-blocking)."""
        self._session.runner.run(_yield_once(), timeout=1)
        return self._drain()


async def _yield_once():
    # Lets the reader task route anything already received.
    import asyncio
    await asyncio.sleep(0)


def event_time(event):
    """Seconds since the epoch of a QMP event, from QEMU's own timestamp."""
    stamp = event.get('timestamp', {})
    return stamp.get('seconds', 0) + stamp.get('microseconds', 0) / 1e6


def stopped_ms(events, until=None):
    """Total guest downtime from STOP/RESUME pairs in `events`, in milliseconds.

    `until` (seconds since the epoch) closes a STOP whose RESUME came while we were not connected:
    the job was seen concluded then, so that downtime is exact to the watch interval (POLL_MAX).
    """
    total = 0.0
    stopped_at = None
    for event in events:
        if event.get('event') == 'STOP' and stopped_at is None:
            stopped_at = event_time(event)
        elif event.get('event') == 'RESUME' and stopped_at is not None:
            total += event_time(event) - stopped_at
            stopped_at = None
    if stopped_at is not None and until is not None:
        total += max(0.0, until - stopped_at)
    return int(round(total * 1000))


def run_state_of(address, timeout=5.0):
    """QEMU's run state on a fresh session; 'gone' when nothing serves the socket, None when it cannot be asked."""
    try:
        with QMPSession(address, timeout=timeout) as qmp:
            return qmp.run_state()
    except SocketBusyError:
        return None
    except SocketError:
        return 'gone'
    except QemuVMError:
        return None
