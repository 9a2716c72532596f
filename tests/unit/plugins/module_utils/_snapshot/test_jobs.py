# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_snapshot.jobs: the disk-only save's transaction, and jobs an earlier run left."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._snapshot import jobs as snapshot_actions
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import wait_until


class TransactionQMP:
    def __init__(self):
        self.sent = []

    def execute(self, command, arguments=None, timeout=None):
        self.sent.append((command, arguments))
        return {}


def test_the_disk_only_save_is_one_transaction():
    qmp = TransactionQMP()
    assert snapshot_actions.save_disk_snapshot(qmp, 'tag', ['disk0', 'disk1'], 5) == {
        'method': 'transaction', 'downtime_ms': 0}
    assert qmp.sent == [('transaction', {'actions': [
        {'type': 'blockdev-snapshot-internal-sync', 'data': {'device': 'disk0', 'name': 'tag'}},
        {'type': 'blockdev-snapshot-internal-sync', 'data': {'device': 'disk1', 'name': 'tag'}}]})]


class JobsQMP:
    """query-jobs answers: a snapshot job of ours that concludes after `running_for` queries."""

    def __init__(self, running_for):
        self.running_for = running_for
        self.queries = 0
        self.dismissed = False

    def has_command(self, name):
        return name == 'query-jobs'

    def execute(self, command, arguments=None):
        assert command == 'query-jobs'
        self.queries += 1
        status = 'running' if self.queries <= self.running_for else 'concluded'
        return [{'id': snapshot_actions.SNAPSHOT_JOB_PREFIX + 'save-1', 'status': status},
                {'id': 'someone-else', 'status': 'running'}]

    def dismiss_stale_jobs(self):
        self.dismissed = True
        return ['dismissed']

    @staticmethod
    def watch(probe, deadline, what, hint=None):
        # QMPSession.watch asks through fresh sessions; here every answer comes from execute().
        return wait_until(probe, deadline, what, hint=hint, interval=0.01)


def test_earlier_jobs_are_waited_for_then_dismissed():
    qmp = JobsQMP(running_for=2)
    assert snapshot_actions.settle_earlier_jobs(qmp, 10) == ['dismissed']
    assert qmp.queries == 3 and qmp.dismissed
    qmp = JobsQMP(running_for=0)
    assert snapshot_actions.settle_earlier_jobs(qmp, 10, dismiss=False) == [] and not qmp.dismissed


def test_an_earlier_job_that_does_not_conclude_is_named():
    with pytest.raises(errors.VMStateError) as caught:
        snapshot_actions.settle_earlier_jobs(JobsQMP(running_for=10 ** 6), 0.3)
    assert 'snapshot job qemu-vm-snapshot-save-1 started by an earlier run' in str(caught.value)
    assert 'is still running after 0.3 s' in str(caught.value)
    assert isinstance(caught.value.__cause__, errors.QemuTimeoutError)
