# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_vm's decision, without a VM: every row of the table in plan.py."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._vm.definition import parse_request
from ansible_collections.qemu.vm.plugins.module_utils._vm.plan import Observed, decide, diff_of

from .test_definition import params

WANTED = parse_request(params()).definition
BIGGER = parse_request(params(memory='2G')).definition


def observed(alive, definition=WANTED, state='running', exists=True):
    record = {'definition': definition, 'state': state} if definition is not None else None
    return Observed(exists, 4242 if alive else None, record)


NOTHING = Observed(False, None, None)


@pytest.mark.parametrize('state, restart, found, action, changed, extra', [
    ('running', False, observed(True), 'none', False, {}),
    ('running', False, observed(True, BIGGER), 'none', True, {'restart_required': True, 'differences': ('memory',)}),
    ('running', True, observed(True, BIGGER), 'restart', True, {'restart_required': False}),
    ('running', True, observed(True), 'none', False, {}),
    ('running', False, NOTHING, 'start', True, {'recovered': False}),
    ('running', False, observed(False, state='stopped'), 'start', True, {'recovered': False}),
    ('running', False, observed(False, state='running'), 'start', True, {'recovered': True}),
    ('running', False, observed(False, None), 'start', True, {'recovered': False}),
    ('restarted', False, observed(True), 'restart', True, {}),
    ('restarted', False, observed(False, state='running'), 'start', True, {'recovered': True}),
    ('stopped', False, observed(True), 'stop', True, {}),
    ('stopped', False, observed(False, state='stopped'), 'none', False, {'mark_stopped': False}),
    ('stopped', False, observed(False, state='running'), 'none', False, {'mark_stopped': True}),
    ('stopped', False, NOTHING, 'none', False, {'state_after': 'absent'}),
    ('absent', False, observed(True), 'remove', True, {}),
    ('absent', False, observed(False, state='stopped'), 'remove', True, {}),
    ('absent', False, NOTHING, 'none', False, {}),
])
def test_decide(state, restart, found, action, changed, extra):
    request = parse_request(params(state=state, restart=restart))
    plan = decide(request, found)
    assert (plan.action, plan.changed) == (action, changed)
    for key, value in extra.items():
        assert getattr(plan, key) == value, key


def test_unknown_running_definition_is_a_difference():
    plan = decide(parse_request(params()), Observed(True, 4242, None))
    assert plan.restart_required and plan.differences == tuple(sorted(WANTED))


def test_diff_shows_state_and_changed_values():
    request = parse_request(params(memory='2G'))
    found = observed(True, WANTED)
    plan = decide(request, found)
    assert diff_of(plan, found, request.definition) == {'before': {'state': 'running', 'memory': 1024},
                                                        'after': {'state': 'running', 'memory': 2048}}
    plan = decide(parse_request(params(state='stopped')), found)
    assert diff_of(plan, found, WANTED) == {'before': {'state': 'running'}, 'after': {'state': 'stopped'}}
    new = decide(request, NOTHING)
    shown = diff_of(new, NOTHING, request.definition)
    assert shown['before'] == {'state': 'absent'} and shown['after']['memory'] == 2048
