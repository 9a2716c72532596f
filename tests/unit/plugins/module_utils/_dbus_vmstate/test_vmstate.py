# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_dbus_vmstate.vmstate, the pure decisions of the dbus-vmstate preflight, and a bus that hangs."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import DBusBusError
from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate import vmstate as dv
from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuTimeoutError


def helper(name, helper_id, error=None):
    entry = {'name': name, 'id': helper_id}
    if error:
        entry['error'] = error
    return entry


def kinds(problems):
    return [(p['problem'], p['id'], p['helpers']) for p in problems]


@pytest.mark.parametrize('text, ids', [('', []), ('a', ['a']), ('a,b', ['a', 'b'])])
def test_id_list_round_trip(text, ids):
    assert dv.parse_id_list(text) == ids
    assert dv.format_id_list(ids) == text


def test_id_limits_are_in_bytes():
    assert dv.id_error('x' * 255) is None
    assert '256 bytes long' in dv.id_error('x' * 256)
    # 128 two-byte characters: 256 bytes.
    assert '256 bytes long' in dv.id_error('\u00e9' * 128)
    assert dv.id_error('') == 'empty'
    assert 'comma' in dv.id_list_entry_error('a,b')
    assert dv.id_list_entry_error('net0') is None


def test_clean_bus_has_no_problems():
    helpers = [helper(':1.3', 'net0'), helper(':1.4', 'tpm0')]
    assert dv.find_problems(helpers, None) == ([], [])
    assert dv.find_problems(helpers, ['tpm0']) == ([], [])
    assert dv.find_problems([], None) == ([], [])


def test_duplicates_without_id_list_would_abort_qemu():
    helpers = [helper(':1.3', 'dup'), helper(':1.4', 'other'), helper(':1.5', 'dup')]
    problems = dv.find_problems(helpers, [])[0]
    assert kinds(problems) == [('duplicate_id', 'dup', [':1.3', ':1.5'])]
    assert 'aborts' in problems[0]['message']


def test_duplicates_with_id_list_lose_state_silently():
    helpers = [helper(':1.3', 'dup'), helper(':1.5', 'dup'), helper(':1.6', 'x'), helper(':1.7', 'x')]
    problems = dv.find_problems(helpers, ['dup'])[0]
    # 'x' is not in the id-list: QEMU ignores those helpers, so their duplicates do not matter.
    assert kinds(problems) == [('duplicate_id', 'dup', [':1.3', ':1.5'])]
    assert 'only the first one (:1.3)' in problems[0]['message']


def test_missing_helper_is_named_with_strays():
    helpers = [helper(':1.3', 'net0')]
    problems = dv.find_problems(helpers, ['net0', 'ghost'])[0]
    assert kinds(problems) == [('missing_helper', 'ghost', [])]
    assert "'ghost'" in problems[0]['message'] and 'DO_NOT_QUEUE' not in problems[0]['message']
    problems = dv.find_problems(helpers, ['net0', 'ghost'], strays={'ghost': [':1.9']})[0]
    assert kinds(problems) == [('missing_helper', 'ghost', [':1.9'])]
    assert ':1.9' in problems[0]['message'] and 'DO_NOT_QUEUE' in problems[0]['message']


def test_invalid_ids():
    long_id = 'l' * 300
    problems = dv.find_problems([helper(':1.3', long_id), helper(':1.4', '')], None)[0]
    assert kinds(problems) == [('invalid_id', long_id, [':1.3']), ('invalid_id', '', [':1.4'])]
    # With an id-list, the entry is what is wrong (reported once), whether or not a helper has it.
    problems = dv.find_problems([helper(':1.3', long_id)], [long_id])[0]
    assert kinds(problems) == [('invalid_id_list_entry', long_id, [':1.3'])]
    assert "'llllllll" in problems[0]['message'] and '300 bytes long' in problems[0]['message']
    # A long Id outside the id-list is ignored by QEMU.
    assert dv.find_problems([helper(':1.3', long_id), helper(':1.4', 'a')], ['a']) == ([], [])


def test_unreadable_id_is_a_warning():
    problems, warnings = dv.find_problems([helper(':1.3', None, error='no Id')], None)
    assert problems == []
    assert len(warnings) == 1 and ':1.3' in warnings[0] and 'no Id' in warnings[0]


def test_included_follows_qemu():
    helpers = [helper(':1.1', 'a'), helper(':1.2', None, 'x'), helper(':1.3', 'a'), helper(':1.4', 'b')]
    assert [h['included'] for h in dv.mark_included(helpers, None)] == [True, False, True, True]
    assert [h['included'] for h in dv.mark_included(helpers, ['a'])] == [True, False, False, False]


class SilentBus:
    """Accepts, authenticates, then never answers (a wedged dbus-daemon)."""

    def __init__(self, path):
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.conns = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            conn = self.server.accept()[0]
        except OSError:
            return
        self.conns.append(conn)
        data = b''
        while b'\r\n' not in data:
            chunk = conn.recv(1024)
            if not chunk:
                return
            data += chunk
        conn.sendall(b'OK 0123456789abcdef0123456789abcdef\r\n')

    def close(self):
        for conn in self.conns:
            conn.close()
        self.server.close()


def test_silent_bus_times_out(tmp_path):
    path = str(tmp_path / 'bus')
    bus = SilentBus(path)
    try:
        started = time.monotonic()
        with pytest.raises(QemuTimeoutError):
            dv.list_helpers('unix:path=' + path, 1.0)
        assert time.monotonic() - started < 10
    finally:
        bus.close()


def test_nobody_listening(tmp_path):
    with pytest.raises(DBusBusError, match='cannot connect'):
        dv.list_helpers('unix:path={0}'.format(tmp_path / 'none'), 1.0)
