# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GuestPower's confirmation through QMP, with QEMU's messages in the order QEMU writes them.
The real guest is in tests/system/test_guest_power.py."""

from __future__ import annotations

import contextlib

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuTimeoutError
from ansible_collections.qemu.vm.plugins.module_utils._guest.power import GuestPower


class FakeWatcher:
    """An EventWatcher: received events wait in `received` until a wait reads them."""

    def __init__(self):
        self.received = []
        self.seen = []

    def wait(self, predicate, timeout, what='event'):
        while self.received:
            event = self.received.pop(0)
            self.seen.append(event)
            if predicate(event):
                return event
        raise QemuTimeoutError(f'waiting for {what}', timeout)


class PoweringOffQEMU:
    """A QMP session on a guest that powers off while query-status is asked: QEMU sends the
    SHUTDOWN event, then the reply saying `shutdown`, so the event is already received (not yet
    waited for) when run_state() returns."""

    def __init__(self, running_answers):
        self.watcher = FakeWatcher()
        self.running_answers = running_answers

    @contextlib.contextmanager
    def events(self, *names):
        assert 'SHUTDOWN' in names
        yield self.watcher

    def run_state(self):
        if self.running_answers:
            self.running_answers -= 1
            return 'running'
        if not self.watcher.seen and not self.watcher.received:
            self.watcher.received.append({'event': 'SHUTDOWN', 'data': {'guest': True}})
        return 'shutdown'


class Agent:
    def command_state(self, name):
        assert name == 'guest-shutdown'
        return 'enabled'

    def send_no_reply(self, command, arguments):
        return Pending()


class Pending:
    def check(self):
        pass  # the agent refused nothing


def test_poweroff_seen_by_query_status_is_confirmed_by_the_event_already_received():
    qemu = PoweringOffQEMU(running_answers=3)  # the state before, then two slices without the event
    power = GuestPower(qemu, lambda: contextlib.nullcontext(Agent()), '/run/qga.sock', 10)
    result = power.ensure('poweroff')
    assert (result.state_before, result.state_after, result.method) == ('running', 'shutdown', 'agent')
    assert result.confirmed_by == 'SHUTDOWN event'
    assert result.events == ['SHUTDOWN']
