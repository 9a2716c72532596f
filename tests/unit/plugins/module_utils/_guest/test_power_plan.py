# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest.power_plan: power decisions without I/O."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest.power_plan import plan_power


@pytest.mark.parametrize('state, run_state, has_qga, expected', [
    ('poweroff', 'running', True, 'agent'),
    ('poweroff', 'running', False, 'escalate'),
    ('poweroff', 'shutdown', True, 'none'),
    ('poweroff', None, True, 'agent'),
    ('reboot', 'running', True, 'agent'),
    ('suspended_ram', 'suspended', True, 'none'),
    ('running', 'running', True, 'none'),
    ('running', 'suspended', True, 'wakeup'),
    ('running', None, True, 'probe'),
])
def test_plan_power(state, run_state, has_qga, expected):
    assert plan_power(state, run_state, has_qga) == expected


@pytest.mark.parametrize('state, run_state', [('reboot', 'paused'), ('poweroff', 'suspended'), ('running', 'io-error')])
def test_plan_power_refuses(state, run_state):
    with pytest.raises(VMStateError):
        plan_power(state, run_state, True)
