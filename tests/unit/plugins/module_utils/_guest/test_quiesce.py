# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest.quiesce: the thaw-failure wording."""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import JobError, QemuTimeoutError
from ansible_collections.qemu.vm.plugins.module_utils._guest.quiesce import thaw_failure


def test_thaw_failure_on_a_paused_vm_keeps_the_snapshot_error():
    thaw = QemuTimeoutError('guest-fsfreeze-thaw on qga.sock', 5)
    message = str(thaw_failure(thaw, JobError('j1', 'snapshot-save', 'Input/output error'), 'io-error'))
    assert 'paused on an I/O error' in message and "'io-error'" in message
    assert 'the guest may still be frozen' in message and 'as soon as the VM runs again' in message
    assert 'The snapshot failed first: snapshot-save job j1 failed: Input/output error' in message
    running = str(thaw_failure(thaw, None, 'running'))
    assert 'may still be frozen' in running and 'paused' not in running and 'failed first' not in running
