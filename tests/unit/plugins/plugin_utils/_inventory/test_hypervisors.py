# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's hypervisors option and the host names of VMs of several hypervisors (pure functions)."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.hypervisors import (
    host_names,
    parse_hypervisor,
    parse_hypervisors,
    scan_all,
)


@pytest.mark.parametrize('text, expected', [
    ('hv1', {'host': 'hv1', 'user': None, 'port': None, 'name': 'hv1'}),
    ('root@hv1', {'host': 'hv1', 'user': 'root', 'port': None, 'name': 'hv1'}),
    ('root@hv1.example.com:2222', {'host': 'hv1.example.com', 'user': 'root', 'port': 2222, 'name': 'hv1.example.com'}),
    ('[2001:db8::1]:22', {'host': '2001:db8::1', 'user': None, 'port': 22, 'name': '2001:db8::1'}),
    ('localhost', {'host': 'localhost', 'user': None, 'port': None, 'name': 'localhost'}),
])
def test_a_string_entry(text, expected):
    parsed = parse_hypervisor(0, text)
    assert dict((key, parsed[key]) for key in expected) == expected
    assert parsed['private_key_file'] is None and parsed['ssh_args'] is None


def test_a_mapping_entry():
    parsed = parse_hypervisor(0, {'host': '192.0.2.7', 'user': 'root', 'port': '2222', 'private_key_file': '~/.ssh/k',
                                  'ssh_args': '-o ControlPath=none', 'name': 'hv2'})
    assert parsed == {'host': '192.0.2.7', 'user': 'root', 'port': 2222, 'private_key_file': '~/.ssh/k',
                      'ssh_args': '-o ControlPath=none', 'name': 'hv2'}


@pytest.mark.parametrize('entry, said', [
    ('root@', 'hypervisors[0]'),
    ('a b', 'is not [user@]host[:port]'),
    ('hv:99999', 'is not a port number'),
    ({'host': 'hv', 'port': 0}, 'is not a port number'),
    ({'host': 'hv', 'colour': 'red'}, 'unknown key(s) colour'),
    ({'user': 'root'}, 'host (a host name or address) is required'),
    ({'host': '-oProxyCommand=x'}, 'host (a host name or address) is required'),
    ({'host': 'hv', 'ssh_args': ['-v']}, 'ssh_args must be a string'),
    (42, 'a string [user@]host[:port] or a mapping'),
])
def test_bad_entries_name_the_option(entry, said):
    with pytest.raises(ParameterError) as caught:
        parse_hypervisor(0, entry)
    assert said in str(caught.value) and caught.value.parameter == 'hypervisors'


def test_names_must_be_unique():
    with pytest.raises(ParameterError, match='repeated: hv1'):
        parse_hypervisors(['hv1', {'host': '192.0.2.1', 'name': 'hv1'}])


def test_no_hypervisors_scans_nothing():
    assert scan_all([], None, 3, ()) == ([], [], [])


def _vm(name, hypervisor, pid):
    return {'name': name, 'hypervisor': hypervisor, 'pid': pid, 'qmp': f'/run/{name}/qmp.sock'}


def test_names_unique_across_hypervisors_stay_plain():
    vms = [_vm('web', 'hv1', 10), _vm('db', 'hv2', 10)]
    assert host_names(vms) == (['web', 'db'], [])


def test_a_name_on_two_hypervisors_is_given_to_neither():
    vms = [_vm('web', 'hv1', 10), _vm('web', 'hv2', 10), _vm('db', 'hv2', 11)]
    assert host_names(vms)[0] == ['web@hv1', 'web@hv2', 'db']


def test_within_one_hypervisor_the_local_rule_applies_first():
    vms = [_vm('web', 'hv1', 10), _vm('web', 'hv1', 12), _vm('web', 'hv2', 7)]
    names, conflicts = host_names(vms)
    assert names == ['web-pid10', 'web-pid12', 'web']
    assert conflicts == [('web', [0, 1])]
