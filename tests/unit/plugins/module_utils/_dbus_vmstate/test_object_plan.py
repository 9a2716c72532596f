# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_dbus_vmstate.object_plan, the decisions of qemu_dbus_vmstate: the request and the QMP commands."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate import object_plan as module
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError


def obj(addr='unix:path=/b', ids=()):
    return {'id': 'dbus-vmstate0', 'type': 'dbus-vmstate', 'addr': addr, 'id_list': list(ids)}


def params(addr='unix:path=/b', id_list=None):
    return {'object_id': 'dbus-vmstate0', 'addr': addr, 'id_list': id_list}


def plan_for(current, wanted_params):
    request = module.parse_request(dict(wanted_params, state='present', check_helpers=True))
    return module.decide(current, module.wanted_object(request, current))


def test_plan_add_and_nothing_to_do():
    assert plan_for(None, params(id_list=['a'])) == ([('object-add', {
        'qom-type': 'dbus-vmstate', 'id': 'dbus-vmstate0', 'addr': 'unix:path=/b', 'id-list': 'a'})], False)
    assert plan_for(None, params()) == ([('object-add', {
        'qom-type': 'dbus-vmstate', 'id': 'dbus-vmstate0', 'addr': 'unix:path=/b'})], False)
    assert plan_for(obj(ids=['a', 'b']), params(id_list=['b', 'a'])) == ([], False)
    assert plan_for(obj(ids=['a']), params()) == ([], False)
    assert plan_for(obj(), params(id_list=[])) == ([], False)


def test_plan_in_place_and_recreate():
    assert plan_for(obj(ids=['a']), params(id_list=['a', 'c'])) == ([('qom-set', {
        'path': '/objects/dbus-vmstate0', 'property': 'id-list', 'value': 'a,c'})], False)
    commands, recreated = plan_for(obj(ids=['a']), params(addr='unix:path=/other'))
    assert [c[0] for c in commands] == ['object-del', 'object-add'] and recreated
    assert commands[1][1]['id-list'] == 'a' and commands[1][1]['addr'] == 'unix:path=/other'
    commands, recreated = plan_for(obj(ids=['a']), params(id_list=[]))
    assert [c[0] for c in commands] == ['object-del', 'object-add'] and recreated
    assert 'id-list' not in commands[1][1]


def test_plan_absent():
    assert module.decide(obj(), None) == ([('object-del', {'id': 'dbus-vmstate0'})], False)
    assert module.decide(None, None) == ([], False)


@pytest.mark.parametrize('changes, parameter, words', [
    (dict(object_id='0bad'), 'object_id', 'not a valid QEMU object id'),
    (dict(addr=''), 'addr', 'D-Bus address'),
    (dict(id_list=['a,b']), 'id_list', 'contains a comma'),
    (dict(id_list=['x' * 256]), 'id_list', 'is 256 bytes long'),
    (dict(id_list=['a', 'a']), 'id_list', "names 'a' twice"),
])
def test_parameters_are_checked_before_the_vm(changes, parameter, words):
    wanted = dict(params(), state='present', **changes)
    with pytest.raises(ParameterError) as caught:
        module.check_object_params(wanted)
    assert caught.value.parameter == parameter and words in str(caught.value)
    module.check_object_params(dict(params(), state='absent', addr=None))
