# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest.facts: which subsets are gathered, and what is skipped instead of failing (an in-process
stand-in for QGASession; the real guest is in tests/system/test_guest_facts.py)."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._guest import facts as guest_facts
from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandError,
)

from .helpers import FROZEN_ALLOWED, FakeAgent


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
