# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""QMP sessions and the job runner against scripted fake monitors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._transport import qmp as _qmp
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import JOB_ID_PREFIX, QMPSession, stopped_ms

from harness.fake_peers import FakePeer, serve_qmp_handshake


def job_event(job_id, status, seconds):
    return {'event': 'JOB_STATUS_CHANGE', 'data': {'id': job_id, 'status': status},
            'timestamp': {'seconds': seconds, 'microseconds': 0}}


class FakeMonitor:
    """A scripted monitor: answers the job protocol and records what it was asked."""

    def __init__(self, job_error=None, conclude_when=None, stale_jobs=(), vanish=False):
        self.job_error = job_error
        # The job is dismissed by "another client" instead of concluding.
        self.vanish = vanish
        # A threading.Event: the job concludes once it is set (else at once).
        self.conclude_when = conclude_when
        self.jobs = {job_id: {'id': job_id, 'status': 'concluded', 'type': 'snapshot-save'}
                     for job_id in stale_jobs}
        self.requests = []

    def __call__(self, conn):
        serve_qmp_handshake(conn)
        while True:
            request = conn.read_request()
            self.requests.append(request)
            command, args = request['execute'], request.get('arguments', {})
            if command == 'query-commands':
                conn.reply(request, [{'name': n} for n in ('query-jobs', 'job-dismiss', 'snapshot-save')])
            elif command == 'snapshot-save':
                job_id = args['job-id']
                self.jobs[job_id] = {'id': job_id, 'status': 'running', 'type': 'snapshot-save'}
                conn.reply(request, {})
                conn.send(job_event(job_id, 'created', 100))
                conn.send(job_event(job_id, 'running', 100))
                conn.send({'event': 'STOP', 'timestamp': {'seconds': 100, 'microseconds': 250000}})
                conn.send({'event': 'RESUME', 'timestamp': {'seconds': 100, 'microseconds': 400000}})
                if self.conclude_when is None:
                    self._conclude(job_id)
                    conn.send(job_event(job_id, 'concluded', 101))
                else:
                    # Like QEMU, keep answering while the job runs; it ends when the test says so.
                    threading.Thread(target=self._conclude, args=(job_id, self.conclude_when), daemon=True).start()
            elif command == 'query-jobs':
                conn.reply(request, list(self.jobs.values()))
            elif command == 'job-dismiss':
                self.jobs.pop(args['id'])
                conn.reply(request, {})
            else:
                conn.error(request, 'CommandNotFound', f'The command {command} has not been found')

    def _conclude(self, job_id, when=None):
        if when is not None:
            when.wait(30)
        if self.vanish:
            self.jobs.pop(job_id)
            return
        self.jobs[job_id]['status'] = 'concluded'
        if self.job_error:
            self.jobs[job_id]['error'] = self.job_error

    def executed(self, command):
        return [r for r in self.requests if r['execute'] == command]


def test_job_success_is_dismissed_and_downtime_comes_from_events():
    monitor = FakeMonitor()
    with FakePeer(monitor) as peer:
        with QMPSession(peer.path, timeout=5) as qmp:
            info = qmp.run_job('snapshot-save', {'tag': 't', 'vmstate': 'd', 'devices': ['d']})
    job_id = info['id']
    assert job_id.startswith(JOB_ID_PREFIX)
    assert [r['arguments']['id'] for r in monitor.executed('job-dismiss')] == [job_id]
    assert monitor.jobs == {}
    assert stopped_ms(info['events']) == 150


def test_job_ids_are_unique():
    monitor = FakeMonitor()
    with FakePeer(monitor) as peer:
        with QMPSession(peer.path, timeout=5) as qmp:
            ids = {qmp.run_job('snapshot-save', {'tag': 't'})['id'] for _attempt in range(3)}
    assert len(ids) == 3


def test_job_error_is_raised_with_qemu_message_and_still_dismissed():
    monitor = FakeMonitor(job_error="Snapshot 't' already exists in one or more devices")
    with FakePeer(monitor) as peer:
        with QMPSession(peer.path, timeout=5) as qmp:
            with pytest.raises(errors.JobError) as caught:
                qmp.run_job('snapshot-save', {'tag': 't'})
    assert "Snapshot 't' already exists" in str(caught.value)
    assert len(monitor.executed('job-dismiss')) == 1
    assert monitor.jobs == {}


def test_job_timeout_is_clear_and_the_job_is_dismissed_once_it_concludes(monkeypatch):
    # The job concludes only once the watch over the job's whole timeout has timed out, so the
    # order is exact however loaded the machine; the conclusion then has the grace window
    # (min(grace, timeout) = 2 s), also watched through fresh sessions.
    timed_out = threading.Event()
    watch = _qmp.QMPSession.watch

    def watch_and_tell(session, probe, deadline, what, hint=None):
        try:
            return watch(session, probe, deadline, what, hint)
        except errors.QemuTimeoutError:
            timed_out.set()
            raise

    monkeypatch.setattr(_qmp.QMPSession, 'watch', watch_and_tell)
    monitor = FakeMonitor(conclude_when=timed_out)
    with FakePeer(monitor) as peer:
        with QMPSession(peer.path, timeout=5) as qmp:
            with pytest.raises(errors.QemuTimeoutError) as caught:
                qmp.run_job('snapshot-save', {'tag': 't'}, timeout=2, grace=30)
    assert 'snapshot-save job' in str(caught.value)
    assert 'concluded later and was dismissed' in str(caught.value)
    assert monitor.jobs == {}


def _conclude_once_watched_from_a_fresh_session(peer, event):
    """Sets `event` once the peer has served a second connection (the watch's first fresh session)."""
    def watch():
        while peer.connections < 2:
            time.sleep(0.01)
        event.set()
    threading.Thread(target=watch, daemon=True).start()


def test_a_long_job_is_watched_through_fresh_sessions_and_its_downtime_closed_when_seen():
    concluded = threading.Event()
    monitor = FakeMonitor(conclude_when=concluded)
    with FakePeer(monitor) as peer:
        _conclude_once_watched_from_a_fresh_session(peer, concluded)
        with QMPSession(peer.path, timeout=5) as qmp:
            info = qmp.run_job('snapshot-save', {'tag': 't'}, timeout=10)
            assert qmp.execute('query-jobs') == []  # the session is open again, the job dismissed
        assert peer.connections >= 2
    # The STOP/RESUME pair came on the first session; the job's end is when the watch saw it.
    assert info['status'] == 'concluded' and info['ended_at'] > 0
    assert [r['arguments']['id'] for r in monitor.executed('job-dismiss')] == [info['id']]


def test_a_job_cancelled_while_we_were_away_is_reported_with_its_reason():
    concluded = threading.Event()
    monitor = FakeMonitor(conclude_when=concluded, job_error='Operation cancelled by another client')
    with FakePeer(monitor) as peer:
        _conclude_once_watched_from_a_fresh_session(peer, concluded)
        with QMPSession(peer.path, timeout=5) as qmp:
            with pytest.raises(errors.JobError) as caught:
                qmp.run_job('snapshot-save', {'tag': 't'}, timeout=10)
    assert 'Operation cancelled by another client' in str(caught.value)
    assert monitor.jobs == {}


def test_a_job_dismissed_by_another_client_is_an_unknown_outcome_not_a_success():
    concluded = threading.Event()
    monitor = FakeMonitor(conclude_when=concluded, vanish=True)
    with FakePeer(monitor) as peer:
        _conclude_once_watched_from_a_fresh_session(peer, concluded)
        with QMPSession(peer.path, timeout=5) as qmp:
            with pytest.raises(errors.JobError) as caught:
                qmp.run_job('snapshot-save', {'tag': 't'}, timeout=10)
    assert 'disappeared from query-jobs' in str(caught.value)


def test_an_open_stop_is_closed_by_the_time_the_end_was_seen():
    events = [{'event': 'STOP', 'timestamp': {'seconds': 100, 'microseconds': 0}}]
    assert stopped_ms(events) == 0
    assert stopped_ms(events, until=101.5) == 1500


def test_stale_concluded_jobs_of_ours_are_dismissed_but_not_foreign_ones():
    stale = JOB_ID_PREFIX + 'snapshot-save-deadbeef0000'
    monitor = FakeMonitor(stale_jobs=(stale, 'libvirt-job-1'))
    with FakePeer(monitor) as peer:
        with QMPSession(peer.path, timeout=5) as qmp:
            qmp.run_job('snapshot-save', {'tag': 't'})
    assert set(monitor.jobs) == {'libvirt-job-1'}


def test_monitor_held_by_another_client_times_out_with_a_hint():
    release = threading.Event()

    def busy_monitor(conn):
        release.wait(30)  # accepted by the backlog, but no greeting: QEMU serves another client

    with FakePeer(busy_monitor) as peer:
        try:
            start = time.monotonic()
            with pytest.raises(errors.QemuTimeoutError) as caught:
                QMPSession(peer.path, timeout=0.5).open()
            # It gave up at its own timeout, long before the holder lets go (a wide margin for a loaded machine).
            assert time.monotonic() - start < 15
        finally:
            release.set()
    assert 'greeting' in str(caught.value)
    assert 'one QMP client at a time' in str(caught.value)


def test_version_comes_from_the_greeting():
    def monitor(conn):
        serve_qmp_handshake(conn, version=(5, 2, 1))
        conn.read_request()

    with FakePeer(monitor) as peer:
        with QMPSession(peer.path, timeout=5) as qmp:
            assert qmp.version_string == '5.2.1'
            assert not qmp.version_at_least(6, 0)


def test_events_written_ahead_of_the_greeting_are_skipped():
    # QEMU 7.2 did this in CI: a JOB_STATUS_CHANGE meant for the previous client came first
    def monitor(conn):
        conn.send(job_event('harness-job', 'pending', 1))
        conn.send(job_event('harness-job', 'concluded', 2))
        serve_qmp_handshake(conn, version=(7, 2, 0))
        request = conn.read_request()
        conn.reply(request, {'status': 'running', 'running': True, 'singlestep': False})

    with FakePeer(monitor) as peer:
        with QMPSession(peer.path, timeout=5) as qmp:
            assert qmp.version_string == '7.2.0'
            assert qmp.run_state() == 'running'


def test_a_peer_that_never_greets_fails_the_handshake_clearly():
    def not_a_monitor(conn):
        conn.send({'return': {}})
        time.sleep(1)

    with FakePeer(not_a_monitor) as peer:
        with pytest.raises(errors.ConnectionLostError) as caught:
            QMPSession(peer.path, timeout=5).open()
    assert 'QMP handshake failed' in str(caught.value)


LOCK_HOLDER = textwrap.dedent('''
    import sys, time
    from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import SocketLock
    lock = SocketLock(sys.argv[1])
    lock.acquire(5)
    print('locked', flush=True)
    time.sleep(float(sys.argv[2]))
''')


def hold_lock(path, seconds):
    proc = subprocess.Popen([sys.executable, '-c', LOCK_HOLDER, path, str(seconds)],
                            stdout=subprocess.PIPE, env=dict(os.environ), universal_newlines=True)
    assert proc.stdout.readline().strip() == 'locked'
    return proc


def test_second_client_waits_its_turn_within_timeout():
    def monitor(conn):
        serve_qmp_handshake(conn)
        request = conn.read_request()
        conn.reply(request, {'status': 'running', 'running': True})

    with FakePeer(monitor) as peer:
        holder = hold_lock(peer.path, 30)
        # The holder lets go 1 s after we start waiting (killed: the kernel drops its flock).
        release = threading.Timer(1.0, holder.kill)
        try:
            start = time.monotonic()
            release.start()
            with QMPSession(peer.path, timeout=20) as qmp:
                assert qmp.run_state() == 'running'
            waited = time.monotonic() - start
        finally:
            release.cancel()
            holder.kill()
            holder.wait()
    assert waited >= 1.0  # it really waited for the holder


def test_second_client_gives_up_with_busy_error_after_timeout():
    with FakePeer(lambda conn: None) as peer:
        holder = hold_lock(peer.path, 3.0)
        try:
            with pytest.raises(errors.SocketBusyError) as caught:
                QMPSession(peer.path, timeout=0.5).open()
        finally:
            holder.kill()
            holder.wait()
    assert peer.path in str(caught.value)
    assert 'timeout=0.5' in str(caught.value)


def test_stale_job_check_runs_once_per_session():
    """Later jobs of a session start without the extra query-jobs round trip (it would sit
    inside the frozen window of a quiesced snapshot)."""
    monitor = FakeMonitor()
    with FakePeer(monitor) as peer:
        with QMPSession(peer.path, timeout=5) as qmp:
            qmp.run_job('snapshot-save', {'tag': 'a'})
            first = len(monitor.executed('query-jobs'))
            qmp.run_job('snapshot-save', {'tag': 'b'})
            second = len(monitor.executed('query-jobs')) - first
    assert first == 2   # stale-job check + the job's own result
    assert second == 1  # only the job's own result
