# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest.freeze: mountpoints, and the freeze failure paths the real tiny guest cannot produce (an
in-process stand-in for QGASession; the real guest is in tests/system/test_guest_fsfreeze.py)."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._guest import freeze as freezing
from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    AgentNotRespondingError,
    CommandError,
    QemuTimeoutError,
    VMStateError,
)

from .helpers import FakeAgent


def test_normalize_mountpoints():
    assert freezing.normalize_mountpoints(['/data/', '/', '/data', '//']) == ['/data', '/']
    assert freezing.normalize_mountpoints(None) == []
    with pytest.raises(ValueError) as caught:
        freezing.normalize_mountpoints(['/ok', 'data'])
    assert "mountpoints: 'data' is not an absolute path" in str(caught.value)


def test_check_mountpoints_names_what_is_missing():
    agent = FakeAgent({'guest-get-fsinfo': [{'mountpoint': '/data'}, {'mountpoint': '/'}]})
    freezing.check_mountpoints(agent, ['/data'])
    with pytest.raises(VMStateError) as caught:
        freezing.check_mountpoints(agent, ['/data', '/srv', '/var'])
    assert str(caught.value).startswith('mountpoints: /srv, /var are not a mounted filesystem')
    assert '(mounted: /, /data)' in str(caught.value)


def test_check_mountpoints_without_fsinfo_leaves_it_to_the_agent():
    agent = FakeAgent(blocked=['guest-get-fsinfo'])
    freezing.check_mountpoints(agent, ['/anything'])  # no error: cannot tell


def test_freeze_failure_reports_the_agents_reason_and_that_it_thawed():
    agent = FakeAgent({'guest-fsfreeze-freeze': CommandError(
        'guest-fsfreeze-freeze', 'GenericError', 'failed to freeze /data: Device or resource busy')})
    with pytest.raises(CommandError) as caught:
        freezing.freeze(agent)
    message = str(caught.value)
    assert 'guest-fsfreeze-freeze failed in the guest: failed to freeze /data: Device or resource busy' in message
    assert 'the guest filesystems are thawed' in message
    assert ('guest-fsfreeze-thaw', None) not in agent.sent


def test_freeze_failure_that_left_the_guest_frozen_is_thawed():
    agent = FakeAgent()

    def fail_frozen():
        agent.frozen = True
        raise CommandError('guest-fsfreeze-freeze', 'GenericError', 'boom')
    agent.replies['guest-fsfreeze-freeze'] = fail_frozen
    with pytest.raises(CommandError) as caught:
        freezing.freeze(agent)
    assert 'guest-fsfreeze-thaw was sent and thawed 1 filesystem(s)' in str(caught.value)
    assert not agent.frozen


def test_freeze_timeout_sends_a_thaw():
    agent = FakeAgent()

    def slow():
        agent.frozen = True  # the freeze completes in the guest after we gave up
        raise QemuTimeoutError('guest-fsfreeze-freeze on qga.sock', 300)
    agent.replies['guest-fsfreeze-freeze'] = slow
    with pytest.raises(QemuTimeoutError) as caught:
        freezing.freeze(agent)
    assert 'then guest-fsfreeze-thaw was sent and thawed 1' in str(caught.value)
    assert not agent.frozen


def test_freeze_when_thaw_cannot_be_confirmed_says_so_loudly():
    agent = FakeAgent({'guest-fsfreeze-freeze': CommandError('guest-fsfreeze-freeze', 'GenericError', 'boom'),
                       'guest-fsfreeze-status': AgentNotRespondingError('qga.sock', 3)})
    with pytest.raises(CommandError) as caught:
        freezing.freeze(agent)
    assert 'COULD NOT CONFIRM THE GUEST IS THAWED' in str(caught.value)
    assert 'state=thawed' in str(caught.value)


def test_freeze_list_that_froze_nothing_fails():
    agent = FakeAgent({'guest-fsfreeze-freeze-list': 0})
    with pytest.raises(VMStateError) as caught:
        freezing.freeze(agent, ['/srv'])
    assert 'mountpoints: none of /srv could be frozen' in str(caught.value)
    assert agent.sent[0] == ('guest-fsfreeze-freeze-list', {'mountpoints': ['/srv']})
