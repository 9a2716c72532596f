# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest-agent session on a dirty channel, against scripted fake agents."""

from __future__ import annotations

import json
import threading
import time

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import ReplyTooLargeError
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import MAX_FILE_CHUNK, MAX_REPLY_BYTES, MAX_SYNC_LINE, SMALL_REPLY_BYTES, QGASession

from harness.fake_peers import FakePeer


def serve_commands(conn, replies):
    """Answer each request with replies[command] (a value, or an (error_class, desc) tuple)."""
    while True:
        request = conn.read_request()
        answer = replies[request['execute']]
        if isinstance(answer, tuple):
            conn.error(request, *answer)
        else:
            conn.reply(request, answer)


def test_sync_starts_with_sentinel_and_skips_stale_bytes_and_replies():
    seen = {}

    def agent(conn):
        seen['first_byte'] = conn.answer_sync(stale=[
            b'{"return": {}, "id": "__qmp#00007"}\n',          # a reply an earlier client never read
            b'\x80\xfe\xc3 not json at all {"ret',              # garbage and invalid UTF-8
            b'{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\ufffd\'"}}\n',
            b'\xff{"return": 4242}\n',                          # an earlier client's sync
        ])
        serve_commands(conn, {'guest-ping': {}, 'guest-info': {'version': '9.9'}})

    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=5) as qga:
            assert qga.execute('guest-ping') == {}
            assert qga.execute('guest-info') == {'version': '9.9'}
        assert not peer.errors
    assert seen['first_byte'] == b'\xff'


def test_reply_with_another_id_is_dropped():
    def agent(conn):
        conn.answer_sync()
        request = conn.read_request()
        conn.send({'return': 'stale', 'id': 'someone-else'})
        conn.reply(request, 'mine')

    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=5) as qga:
            assert qga.execute('guest-info') == 'mine'


def test_silent_agent_is_classified_within_the_sync_timeout():
    release = threading.Event()

    def agent(conn):
        conn.read_request()
        release.wait(30)

    with FakePeer(agent) as peer:
        try:
            start = time.monotonic()
            with pytest.raises(errors.AgentNotRespondingError) as caught:
                QGASession(peer.path, timeout=1).open()
            # Gave up at its own bound, long before the peer would answer (margin for a loaded machine).
            assert time.monotonic() - start < 15
        finally:
            release.set()
        assert peer.path in str(caught.value)


def test_reply_that_never_comes_times_out_naming_the_command():
    release = threading.Event()

    def agent(conn):
        conn.answer_sync()
        conn.read_request()
        release.wait(30)

    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=20) as qga:
            start = time.monotonic()
            with pytest.raises(errors.QemuTimeoutError) as caught:
                qga.execute('guest-get-osinfo', timeout=0.5)
            assert time.monotonic() - start < 15  # its own bound, not the session's nor the peer's
            release.set()
    assert 'guest-get-osinfo' in str(caught.value)
    assert '0.5 s' in str(caught.value)


def test_disconnect_in_the_middle_of_a_reply():
    def agent(conn):
        conn.answer_sync()
        conn.read_request()
        conn.send(b'{"return": {"version": "7.')
        conn.close()

    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=5) as qga:
            with pytest.raises(errors.ConnectionLostError) as caught:
                qga.execute('guest-info')
    assert 'guest-info' in str(caught.value)


def test_disconnect_during_handshake():
    def agent(conn):
        conn.read_request()
        conn.send(b'\xff{"retu')
        conn.close()

    with FakePeer(agent) as peer:
        with pytest.raises(errors.ConnectionLostError):
            QGASession(peer.path, timeout=5).open()


def test_idless_error_after_handshake_ends_the_session_cleanly():
    def agent(conn):
        conn.answer_sync()
        conn.read_request()
        conn.send({'error': {'class': 'GenericError', 'desc': 'JSON parse error'}})
        time.sleep(1)

    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=5) as qga:
            with pytest.raises(errors.ConnectionLostError):
                qga.execute('guest-ping')


@pytest.mark.parametrize('error_class, desc, expected', [
    ('CommandNotFound', 'Command guest-file-open has been disabled: the agent is in frozen state',
     errors.GuestFrozenError),
    ('CommandNotFound', 'Command guest-exec has been disabled', errors.CommandDisabledError),
    ('CommandNotFound', 'The command guest-foo has not been found', errors.CommandNotFoundError),
    ('GenericError', 'failed to open file', errors.CommandError),
])
def test_agent_errors_are_classified(error_class, desc, expected):
    def agent(conn):
        conn.answer_sync()
        serve_commands(conn, {'guest-x': (error_class, desc)})

    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=5) as qga:
            with pytest.raises(expected) as caught:
                qga.execute('guest-x')
    assert caught.type is expected
    assert caught.value.desc == desc
    if expected is errors.GuestFrozenError:
        assert 'frozen' in str(caught.value) and 'thaw' in str(caught.value)


def test_reply_larger_than_qemu_qmp_default_buffer():
    payload = 'A' * (30 * 1024 * 1024)

    def agent(conn):
        conn.answer_sync()
        serve_commands(conn, {'guest-file-read': {'count': len(payload), 'buf-b64': payload, 'eof': False}})

    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=10) as qga:
            reply = qga.execute('guest-file-read', {'handle': 1000, 'count': len(payload)})
    assert len(reply['buf-b64']) == len(payload)


def test_send_no_reply_reports_a_late_error():
    def agent(conn):
        conn.answer_sync()
        request = conn.read_request()
        time.sleep(0.3)
        conn.error(request, 'GenericError', 'suspend not supported')
        time.sleep(1)

    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=5) as qga:
            pending = qga.send_no_reply('guest-suspend-disk')
            assert pending.check() is None
            deadline = time.monotonic() + 3
            with pytest.raises(errors.CommandError) as caught:
                while time.monotonic() < deadline:
                    qga.runner.run(__import__('asyncio').sleep(0.05))
                    pending.check()
    assert 'suspend not supported' in str(caught.value)


def test_request_json_is_one_object_per_command():
    """The agent parses a stream: requests must be plain JSON objects it can tokenise."""
    got = []

    def agent(conn):
        conn.answer_sync()
        while True:
            request = conn.read_request()
            got.append(request)
            conn.reply(request, {})

    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=5) as qga:
            qga.execute('guest-file-close', {'handle': 1000})
    assert got[0]['execute'] == 'guest-file-close'
    assert got[0]['arguments'] == {'handle': 1000}
    assert json.dumps(got[0])


def test_default_bound_fits_the_largest_guest_file_read_reply():
    """48 MiB read (qemu_guest_file's largest chunk_size) in base64, with the JSON around it."""
    count = MAX_FILE_CHUNK
    b64_length = (count + 2) // 3 * 4
    around = json.dumps({'return': {'count': count, 'buf-b64': '', 'eof': False}, 'id': '__qmp#99999'}) + '\n'
    assert b64_length + len(around) <= MAX_REPLY_BYTES < 80 * 1024 * 1024
    assert QGASession('/nonexistent.sock').max_reply == MAX_REPLY_BYTES


def test_reply_over_the_session_bound_is_a_clear_error_not_memory_growth():
    payload = 'A' * (3 * 1024 * 1024)

    def agent(conn):
        conn.answer_sync()
        serve_commands(conn, {'guest-get-osinfo': {'name': payload}, 'guest-ping': {}})

    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=5, max_reply=SMALL_REPLY_BYTES) as qga:
            start = time.monotonic()
            with pytest.raises(errors.ConnectionLostError) as caught:
                qga.execute('guest-get-osinfo')
            assert time.monotonic() - start < 4  # at once, not at the timeout
            with pytest.raises(errors.ConnectionLostError):
                qga.execute('guest-ping')  # the session is over
    assert isinstance(caught.value, ReplyTooLargeError)
    assert 'guest-get-osinfo' in str(caught.value) and str(SMALL_REPLY_BYTES) in str(caught.value)
    assert caught.value.details()['reply_limit'] == SMALL_REPLY_BYTES
    # The same reply within a default session is fine.
    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=5) as qga:
            assert len(qga.execute('guest-get-osinfo')['name']) == len(payload)


def test_endless_line_after_the_sync_delimiter_is_a_clear_error_at_once():
    release = threading.Event()

    def agent(conn):
        conn.read_request()
        conn.send(b'\xff{"return": ' + b'9' * (256 * 1024))  # and never a newline
        release.wait(30)

    with FakePeer(agent) as peer:
        try:
            start = time.monotonic()
            with pytest.raises(ReplyTooLargeError) as caught:
                QGASession(peer.path, timeout=20).open()
            assert time.monotonic() - start < 8  # long before the 10 s sync bound
        finally:
            release.set()
    assert '0xFF' in str(caught.value) and str(MAX_SYNC_LINE) in str(caught.value)


def test_stale_bytes_without_delimiter_are_dropped_as_they_come():
    """Megabytes of junk before the sync reply: skipped (the buffer never holds more than a read)."""
    def agent(conn):
        request = conn.read_request()
        junk = b'{"return": "' + b'x' * (1024 * 1024) + b'"}\n'
        conn.send(junk * 16)
        conn.send(b'\xff' + json.dumps({'return': request['arguments']['id']}).encode() + b'\n')
        serve_commands(conn, {'guest-ping': {}})

    with FakePeer(agent) as peer:
        with QGASession(peer.path, timeout=20) as qga:
            assert qga.execute('guest-ping') == {}
