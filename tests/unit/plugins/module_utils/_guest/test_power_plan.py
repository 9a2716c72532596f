# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Power decisions without I/O, the thaw-failure wording, and temporary-file bookkeeping."""

from __future__ import annotations

import os

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import JobError, QemuTimeoutError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.fetch import remove_stale_temps
from ansible_collections.qemu.vm.plugins.module_utils._guest.power_plan import plan_power
from ansible_collections.qemu.vm.plugins.module_utils._guest.quiesce import thaw_failure


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


def test_thaw_failure_on_a_paused_vm_keeps_the_snapshot_error():
    thaw = QemuTimeoutError('guest-fsfreeze-thaw on qga.sock', 5)
    message = str(thaw_failure(thaw, JobError('j1', 'snapshot-save', 'Input/output error'), 'io-error'))
    assert 'paused on an I/O error' in message and "'io-error'" in message
    assert 'the guest may still be frozen' in message and 'as soon as the VM runs again' in message
    assert 'The snapshot failed first: snapshot-save job j1 failed: Input/output error' in message
    running = str(thaw_failure(thaw, None, 'running'))
    assert 'may still be frozen' in running and 'paused' not in running and 'failed first' not in running


def test_stale_fetch_temps_of_dead_runs_are_removed(tmp_path):
    dest = tmp_path / 'app.log'
    dead = tmp_path / '.app.log.999999999.abc.qemu-vm.tmp'  # no such pid
    mine = tmp_path / f'.app.log.{os.getpid()}.def.qemu-vm.tmp'  # a run in progress
    other = tmp_path / '.other.log.999999999.abc.qemu-vm.tmp'
    for path in (dead, mine, other):
        path.write_bytes(b'partial')
    assert remove_stale_temps(str(dest)) == [str(dead)]
    assert not dead.exists() and mine.exists() and other.exists()
