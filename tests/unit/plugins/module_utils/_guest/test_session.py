# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The guest layer's agent session: the marker-driven thaw, against a scripted fake agent.

The transport's QGASession does no guest operation; AgentSession thaws first when the marker
says a freeze of ours was never confirmed thawed. The real agent is in tests/system/test_quiesce_paused.py
and test_lock_files.py.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._guest import session as guest_session
from ansible_collections.qemu.vm.plugins.module_utils._transport import lock
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import RuntimeFileError
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import QGASession

from harness.fake_peers import FakePeer

TRANSPORT = pathlib.Path(__file__).resolve().parents[5] / 'plugins' / 'module_utils' / '_transport'


@pytest.fixture(autouse=True)
def rundir(tmp_path, monkeypatch):
    path = tmp_path / 'run' / 'qemu-vm'
    (tmp_path / 'run').mkdir()
    monkeypatch.setattr(lock, 'runtime_dir', lambda: str(path))
    return path


def agent_with_freeze_state(state, seen, thaw_works=True):
    """A fake agent that reports `state['status']`, and thaws on guest-fsfreeze-thaw when thaw_works."""
    def agent(conn):
        conn.answer_sync()
        while True:
            request = conn.read_request()
            seen.append(request['execute'])
            if request['execute'] == 'guest-fsfreeze-status':
                conn.reply(request, state['status'])
            elif request['execute'] == 'guest-fsfreeze-thaw':
                if thaw_works:
                    state['status'] = 'thawed'
                conn.reply(request, 1)
            else:
                conn.reply(request, {})
    return agent


def test_without_marker_opening_asks_nothing_about_freezing():
    seen = []
    with FakePeer(agent_with_freeze_state({'status': 'frozen'}, seen)) as peer:
        with guest_session.AgentSession(peer.path, timeout=5) as qga:
            qga.execute('guest-ping')
            assert not qga.thawed_interrupted_freeze
    assert seen == ['guest-ping']


@pytest.mark.parametrize('status, thaws', [('frozen', True), ('thawed', False)])
def test_marker_makes_the_next_session_thaw_and_is_then_removed(status, thaws):
    seen = []
    with FakePeer(agent_with_freeze_state({'status': status}, seen)) as peer:
        guest_session.remember_freeze(peer.path)
        assert guest_session.freeze_remembered(peer.path)
        with guest_session.AgentSession(peer.path, timeout=5) as qga:
            assert qga.thawed_interrupted_freeze is thaws
            qga.execute('guest-ping')
        assert not guest_session.freeze_remembered(peer.path)
    assert ('guest-fsfreeze-thaw' in seen) is thaws
    assert seen[-1] == 'guest-ping'


def test_marker_stays_while_the_guest_is_not_confirmed_thawed():
    seen = []
    with FakePeer(agent_with_freeze_state({'status': 'frozen'}, seen, thaw_works=False)) as peer:
        guest_session.remember_freeze(peer.path)
        with guest_session.AgentSession(peer.path, timeout=5):
            pass
        assert guest_session.freeze_remembered(peer.path)


def test_transport_session_does_no_guest_operation():
    seen = []
    with FakePeer(agent_with_freeze_state({'status': 'frozen'}, seen)) as peer:
        guest_session.remember_freeze(peer.path)
        with QGASession(peer.path, timeout=5) as qga:
            qga.execute('guest-ping')
        assert guest_session.freeze_remembered(peer.path)
    assert seen == ['guest-ping']


def test_symlink_at_the_marker_is_a_clear_error_and_not_followed(tmp_path, rundir):
    target = tmp_path / 'shadow'
    target.write_bytes(b'root:*:19000:0:99999:7:::\n')
    seen = []
    with FakePeer(agent_with_freeze_state({'status': 'thawed'}, seen)) as peer:
        marker = pathlib.Path(guest_session.freeze_marker_path(peer.path))
        rundir.mkdir(mode=0o700)
        marker.symlink_to(target)
        with pytest.raises(RuntimeFileError) as caught:
            guest_session.AgentSession(peer.path, timeout=5).open()
        with pytest.raises(RuntimeFileError):
            guest_session.remember_freeze(peer.path)
    assert str(marker) in str(caught.value) and 'symbolic link' in str(caught.value)
    assert target.read_bytes() == b'root:*:19000:0:99999:7:::\n'
    assert not any(command.startswith('guest-fsfreeze') for command in seen)


def test_marker_is_keyed_like_the_session_for_tcp_addresses():
    assert guest_session.freeze_marker_path('localhost:4444') == lock.runtime_path(('localhost', 4444), '.frozen')


def test_transport_imports_nothing_of_the_guest_layers():
    for path in sorted(TRANSPORT.glob('*.py')):
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert '._guest' not in node.module, f'{path.name} imports {node.module}'
