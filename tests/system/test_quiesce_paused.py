# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The frozen window meets a paused VM: the error says so, the guard thaws once the VM runs again,
and the next session on that agent thaws a freeze of ours that was never confirmed thawed."""

from __future__ import annotations

import os
import time

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._guest.session import freeze_marker_path, remember_freeze
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession
from ansible_collections.qemu.vm.plugins.module_utils._guest.quiesce import quiesced

from harness.ansible import run_module
from harness.runs import wait_for


def test_vm_paused_inside_the_frozen_window(vm):
    marker = freeze_marker_path(vm.qga_path)
    with QMPSession(vm.qmp_path, timeout=30) as qmp:
        def save(bound):
            vm.qmp('stop')  # someone pauses the VM while the guest is frozen
            return qmp.run_job('snapshot-save', {'tag': 't', 'vmstate': 'nosuchnode', 'devices': ['nosuchnode']},
                               bound)
        with pytest.raises(errors.VMStateError) as caught:
            quiesced(vm.qga_path, 'required', 5, 30, save, lambda m: None, qmp=qmp)
    message = str(caught.value)
    assert "QEMU run state 'paused'" in message and 'the guest may still be frozen' in message
    assert 'as soon as the VM runs again' in message
    assert 'The snapshot failed first' in message and 'nosuchnode' in message  # the job's own error is kept
    assert os.path.exists(marker)
    assert vm.status() == 'paused'
    time.sleep(3)  # the guard is already trying; it must keep waiting while the VM is paused
    vm.qmp('cont')
    # Margins: the guard's agent attempt in flight at `cont` lasts up to 10 s on a loaded machine.
    wait_for(lambda: vm.qga('guest-fsfreeze-status', timeout=30) == 'thawed', 'the guard thawing', interval=0.2)
    wait_for(lambda: not os.path.exists(marker), 'the guard removing its marker', timeout=30, interval=0.2)


def test_next_session_thaws_a_freeze_of_ours_left_frozen(vm):
    marker = freeze_marker_path(vm.qga_path)
    assert vm.qga('guest-fsfreeze-freeze') >= 1
    remember_freeze(vm.qga_path)  # as a quiesced snapshot leaves it when nobody could thaw
    assert os.path.exists(marker)
    try:
        result = run_module('qemu_guest_facts', {'qga': vm.qga_path, 'gather_subset': ['fsfreeze']})
    finally:
        vm.qga('guest-fsfreeze-thaw')
    assert not result.failed, result['output']
    assert result['ansible_facts']['qemu_guest']['fsfreeze_status'] == 'thawed'
    assert not os.path.exists(marker)


def test_silent_agent_of_a_paused_vm_says_paused(vm):
    vm.qmp('stop')
    try:
        result = run_module('qemu_guest_facts', {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'timeout': 3})
    finally:
        vm.qmp('cont')
    assert result.failed and result['error_type'] == 'VMStateError', result['output']
    assert "QEMU run state 'paused'" in result['msg'] and 'QMP cont' in result['msg']
