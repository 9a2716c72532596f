# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest.power: GuestPower's confirmation through QMP, with QEMU's messages in the order QEMU writes
them, and the failure paths the real tiny guest cannot produce (odd run states, a silent agent); the
peers are in-process stand-ins for QGASession / QMPSession. The real guest is in
tests/system/test_guest_power.py."""

from __future__ import annotations

import contextlib

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._guest import power as power_utils
from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    AgentNotRespondingError,
    QemuTimeoutError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.power import GuestPower

from .helpers import FakeAgent


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


class FakeMonitor:
    def __init__(self, status, machine=None, commands=('system_wakeup', 'query-current-machine')):
        self.status = status
        self.machine = machine if machine is not None else {'wakeup-suspend-support': True}
        self.commands = set(commands)
        self.executed = []

    def run_state(self):
        return self.status

    def has_command(self, name):
        return name in self.commands

    def execute(self, command, arguments=None, timeout=None):
        self.executed.append(command)
        if command == 'query-current-machine':
            return self.machine
        raise AssertionError('unexpected QMP command ' + command)


class AgentContext:
    def __init__(self, agent):
        self.agent = agent
        self.opened = 0

    def __call__(self):
        self.opened += 1
        return self

    def __enter__(self):
        if isinstance(self.agent, Exception):
            raise self.agent
        return self.agent

    def __exit__(self, *exc):
        return False


def power(qmp, agent=None, check_mode=False, **kwargs):
    opener = AgentContext(agent if agent is not None else FakeAgent())
    return power_utils.GuestPower(qmp, opener, 'qga.sock', 5.0, check_mode=check_mode,
                                  wait_for_agent=lambda address, timeout: 0.1, **kwargs)


@pytest.mark.parametrize('state, status', [
    ('poweroff', 'shutdown'), ('halt', 'shutdown'), ('suspended_disk', 'shutdown'),
    ('suspended_ram', 'suspended'), ('suspended_hybrid', 'suspended'), ('running', 'running'),
])
def test_power_already_there_is_unchanged_without_asking_the_agent(state, status):
    control = power(FakeMonitor(status))
    result = control.ensure(state).as_dict()
    assert not result['changed'] and result['state_before'] == result['state_after'] == status
    assert (result['method'], result['duration_ms']) == ('none', 0)
    assert control.open_qga.opened == 0


@pytest.mark.parametrize('state, status, words', [
    ('poweroff', 'suspended', 'wake it first with state=running'),
    ('reboot', 'shutdown', 'does not start guests'),
    ('suspended_ram', 'paused', "QEMU run state is 'paused'"),
    ('running', 'paused', 'resume a paused VM with QMP cont'),
    ('running', 'shutdown', 'does not start guests'),
])
def test_power_refuses_states_the_agent_cannot_act_in(state, status, words):
    control = power(FakeMonitor(status))
    with pytest.raises(VMStateError) as caught:
        control.ensure(state)
    assert words in str(caught.value)
    assert control.open_qga.opened == 0


def test_suspend_refused_when_qemu_cannot_wake_it():
    for monitor, words in ((FakeMonitor('running', machine={'wakeup-suspend-support': False}), 'wakeup-suspend-support'),
                           (FakeMonitor('running', commands=('query-current-machine',)), 'no system_wakeup')):
        control = power(monitor, check_mode=True)
        with pytest.raises(VMStateError) as caught:
            control.ensure('suspended_hybrid')
        assert words in str(caught.value) and control.open_qga.opened == 0


def test_power_check_mode_predicts_without_acting():
    agent = FakeAgent()
    control = power(FakeMonitor('running'), agent, check_mode=True)
    result = control.ensure('suspended_ram').as_dict()
    assert result['changed'] and (result['state_before'], result['state_after']) == ('running', 'suspended')
    assert [sent for sent in agent.sent if sent[0].startswith('guest-suspend')] == []


def test_power_check_mode_with_force_predicts_the_escalation():
    control = power(FakeMonitor('running'), AgentNotRespondingError('qga.sock', 3), check_mode=True, force=True)
    result = control.ensure('poweroff')
    assert result.changed and result.method == 'acpi' and result.state_after == 'shutdown'
    assert 'would press the ACPI power button' in result.warnings[0]


def test_power_without_force_reports_the_silent_agent():
    control = power(FakeMonitor('running'), AgentNotRespondingError('qga.sock', 3))
    with pytest.raises(AgentNotRespondingError):
        control.ensure('poweroff')


@pytest.mark.parametrize('kwargs, state, words', [
    (dict(force=True), 'reboot', 'force: only applies to state=poweroff and state=halt'),
    (dict(force=True, qmp=None), 'poweroff', 'force: needs qmp'),
    (dict(qmp=None), 'suspended_ram', 'qmp is required for state=suspended_ram'),
    (dict(qga=None), 'reboot', 'qga is required for state=reboot'),
    (dict(qmp=None, qga=None), 'running', 'state=running needs qmp'),
    (dict(), 'sleeping', "state: 'sleeping' is not one of"),
])
def test_power_validation(kwargs, state, words):
    qmp = kwargs.pop('qmp', FakeMonitor('running'))
    address = kwargs.pop('qga', 'qga.sock')
    control = power_utils.GuestPower(qmp, AgentContext(FakeAgent()), address, 5.0, **kwargs)
    with pytest.raises(ValueError) as caught:
        control.ensure(state)
    assert words in str(caught.value)
