# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest decisions and failure paths the real tiny guest cannot produce (freeze errors,
agents without commands, odd run states). The peers here are in-process stand-ins for
QGASession / QMPSession; the real behaviour is covered in tests/system/test_guest_*.py."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._guest import facts as guest_facts
from ansible_collections.qemu.vm.plugins.module_utils._guest import freeze as freezing
from ansible_collections.qemu.vm.plugins.module_utils._guest import agent as guest
from ansible_collections.qemu.vm.plugins.module_utils._guest import power as power_utils
from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    AgentNotRespondingError,
    CommandError,
    CommandNotFoundError,
    GuestFrozenError,
    QemuTimeoutError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import classify_command_error

FROZEN_ALLOWED = ('guest-ping', 'guest-info', 'guest-sync', 'guest-sync-delimited',
                  'guest-fsfreeze-status', 'guest-fsfreeze-thaw')


class FakeAgent:
    """Answers like qemu-ga: `replies` maps a command to a value or an exception to raise."""

    timeout = 5.0

    def __init__(self, replies=None, commands=None, frozen=False, blocked=()):
        self.replies = dict(replies or {})
        self.frozen = frozen
        self.blocked = set(blocked)
        self.sent = []
        names = commands if commands is not None else (
            list(FROZEN_ALLOWED) + [entry[1] for entry in guest_facts.FACT_SUBSETS] + [
                'guest-fsfreeze-freeze', 'guest-fsfreeze-freeze-list', 'guest-shutdown', 'guest-suspend-ram'])
        self.commands = list(dict.fromkeys(names))

    def info(self):
        return {'version': '9.9.9', 'supported_commands': [
            {'name': n, 'enabled': self._enabled(n)} for n in self.commands]}

    def _enabled(self, name):
        return name not in self.blocked and (not self.frozen or name in FROZEN_ALLOWED)

    def command_state(self, name):
        if name not in self.commands:
            return 'missing'
        return 'enabled' if self._enabled(name) else 'disabled'

    def execute(self, command, arguments=None, timeout=None):
        self.sent.append((command, arguments))
        if command == 'guest-fsfreeze-status' and command not in self.replies:
            return 'frozen' if self.frozen else 'thawed'
        if command == 'guest-fsfreeze-thaw' and command not in self.replies:
            was, self.frozen = self.frozen, False
            return 1 if was else 0
        if not self._enabled(command):
            suffix = ': the agent is in frozen state' if self.frozen else ''
            raise classify_command_error(command, 'CommandNotFound', f'Command {command} has been disabled{suffix}')
        reply = self.replies.get(command)
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply()
        return reply


# -- gather_subset ------------------------------------------------------------------------

ALL = list(guest_facts.SUBSET_NAMES)


@pytest.mark.parametrize('requested, expected', [
    (None, ALL),
    (['all'], ALL),
    (['min'], ['agent', 'os', 'hostname', 'fsfreeze']),
    (['network'], ['agent', 'network']),
    (['!network', '!disks'], [s for s in ALL if s not in ('network', 'disks')]),
    (['!all'], ['agent', 'os', 'hostname', 'fsfreeze']),
    (['!all', 'vcpus'], ['agent', 'os', 'hostname', 'vcpus', 'fsfreeze']),
    (['!all', '!min'], ['agent']),
    (['all', '!agent'], ALL),  # agent is always gathered
    ([' time ', 'time'], ['agent', 'time']),
])
def test_resolve_gather_subset(requested, expected):
    assert guest_facts.resolve_gather_subset(requested) == expected


def test_resolve_gather_subset_names_the_bad_entry():
    with pytest.raises(ValueError) as caught:
        guest_facts.resolve_gather_subset(['min', '!hardware'])
    assert "gather_subset: unknown subset '!hardware'" in str(caught.value)
    assert 'network' in str(caught.value)


# -- mountpoints ---------------------------------------------------------------------------


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


# -- freeze failures -----------------------------------------------------------------------


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


def test_command_missing_disabled_or_frozen():
    agent = FakeAgent(commands=list(FROZEN_ALLOWED))
    with pytest.raises(CommandNotFoundError) as caught:
        freezing.require_freeze_support(agent, [])
    assert 'qemu-ga 9.9.9' in str(caught.value) and 'does not offer guest-fsfreeze-freeze' in str(caught.value)
    agent = FakeAgent(frozen=True)
    with pytest.raises(GuestFrozenError) as caught:
        guest.require_command(agent, 'guest-shutdown')
    assert 'qemu.vm.qemu_guest_fsfreeze state=thawed' in str(caught.value)
    agent = FakeAgent(blocked=['guest-shutdown'])
    error = guest.command_unavailable(agent, 'guest-shutdown')
    assert type(error).__name__ == 'CommandDisabledError' and 'blocked by the agent configuration' in str(error)


# -- facts ---------------------------------------------------------------------------------


def test_facts_skip_and_list_instead_of_failing():
    agent = FakeAgent({
        'guest-get-host-name': {'host-name': 'web1'},
        'guest-get-disks': CommandError('guest-get-disks', 'GenericError', 'cannot read sysfs'),
        'guest-network-get-interfaces': [{'name': 'eth0', 'hardware-address': 'aa:bb:cc:dd:ee:ff',
                                          'ip-addresses': [{'ip-address': '10.0.0.2', 'ip-address-type': 'ipv4',
                                                            'prefix': 24}]}],
        'guest-get-time': 1700000000123456789,
    }, blocked=['guest-get-users'])
    agent.commands.remove('guest-get-vcpus')
    facts = guest_facts.gather_facts(agent, ['agent', 'hostname', 'network', 'disks', 'users', 'vcpus', 'time'])
    assert facts['hostname'] == 'web1'
    assert facts['network_interfaces'] == [{'name': 'eth0', 'hardware_address': 'aa:bb:cc:dd:ee:ff', 'ip_addresses': [
        {'ip_address': '10.0.0.2', 'ip_address_type': 'ipv4', 'prefix': 24}]}]
    assert facts['time']['epoch_ns'] == 1700000000123456789
    assert facts['time']['iso8601'] == '2023-11-14T22:13:20Z'
    reasons = dict((s['subset'], s['reason']) for s in facts['skipped'])
    assert reasons == {'disks': 'failed', 'users': 'disabled', 'vcpus': 'missing'}
    assert facts['agent']['version'] == '9.9.9' and 'guest-get-users' in facts['agent']['disabled_commands']


def test_facts_of_a_frozen_guest():
    agent = FakeAgent(frozen=True)
    facts = guest_facts.gather_facts(agent, list(guest_facts.SUBSET_NAMES))
    assert facts['fsfreeze_status'] == 'frozen'
    assert set(s['reason'] for s in facts['skipped']) == set(['frozen'])
    assert len(facts['skipped']) == len(guest_facts.SUBSET_NAMES) - 2
    # nothing but the allowed commands was sent to the frozen agent
    assert set(sent[0] for sent in agent.sent) <= set(FROZEN_ALLOWED)


# -- power decisions -----------------------------------------------------------------------


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
