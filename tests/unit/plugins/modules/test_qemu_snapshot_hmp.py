# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_snapshot on QEMU < 6.0 (no snapshot-save job): the HMP savevm/loadvm/delvm fallback,
against a fake QEMU 5.2 monitor (fake_qemu52.py)."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._snapshot import jobs as snap
from ansible_collections.qemu.vm.plugins.module_utils._snapshot.view import read_view
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession

from fake_qemu52 import FakeQemu52, parse_hmp_string
from harness.ansible import run_module

TRICKY = 'nightly "quoted" back\\slash \u00e9t\u00e9 \u96ea'


@pytest.fixture
def qemu():
    with FakeQemu52() as fake:
        yield fake
        assert not fake.errors


def test_hmp_quote_round_trips_through_the_hmp_parser():
    for tag in ('plain', 'with space', TRICKY, '"', '\\', 'end\\'):
        assert parse_hmp_string(snap.hmp_quote(tag)) == (tag, '')


def test_save_uses_hmp_and_measures_downtime(qemu):
    with QMPSession(qemu.path, timeout=5) as qmp:
        assert not snap.uses_jobs(qmp)
        outcome = snap.save_snapshot(qmp, TRICKY, 'disk0', ['disk0', 'disk1'], 5)
    assert outcome == {'method': 'hmp', 'downtime_ms': 120}
    assert qemu.hmp_lines == ['savevm ' + snap.hmp_quote(TRICKY)]
    assert qemu.tags('disk0') == qemu.tags('disk1') == [TRICKY]
    assert 'snapshot-save' not in qemu.commands


def test_hmp_text_error_becomes_an_error_quoting_qemu():
    with FakeQemu52(disks=[('disk0', 'qcow2', False), ('scratch', 'raw', False)]) as qemu:
        with QMPSession(qemu.path, timeout=5) as qmp:
            with pytest.raises(errors.CommandError) as caught:
                snap.save_snapshot(qmp, 'x', 'disk0', ['disk0'], 5)
    assert "HMP savevm of snapshot 'x' failed: Device 'scratch' is writable but does not support snapshots" \
        == str(caught.value)
    assert qemu.tags('disk0') == []


def test_hmp_parse_error_is_an_error_too(qemu):
    qemu.fail_next_hmp = 'savevm: extraneous characters at the end of line\r\n'
    with QMPSession(qemu.path, timeout=5) as qmp:
        with pytest.raises(errors.CommandError) as caught:
            snap.save_snapshot(qmp, 'x', 'disk0', ['disk0', 'disk1'], 5)
    assert 'extraneous characters' in str(caught.value)


def test_hmp_warning_only_output_is_success(qemu):
    qemu.fail_next_hmp = 'warning: something harmless\r\n'
    with QMPSession(qemu.path, timeout=5) as qmp:
        assert snap.delete_snapshot(qmp, 'x', ['disk0'], 5)['method'] == 'hmp'


def test_failed_loadvm_says_the_vm_is_left_in_restore_vm(qemu):
    qemu.add_snapshot('disk0', 'half', vm_state_size=10)
    with QMPSession(qemu.path, timeout=5) as qmp:
        with pytest.raises(errors.VMStateError) as caught:
            snap.load_snapshot(qmp, 'half', 'disk0', ['disk0', 'disk1'], 5)
    message = str(caught.value)
    assert "does not have the requested snapshot 'half'" in message
    assert 'restore-vm' in message and 'NOT resumed' in message
    assert qemu.status == 'restore-vm'
    assert 'cont' not in qemu.commands


def test_explicit_device_subset_is_refused_before_touching_the_vm(qemu):
    with QMPSession(qemu.path, timeout=5) as qmp:
        view = read_view(qmp)
        with pytest.raises(errors.ParameterError) as caught:
            snap.require_job_selection(qmp, view, ['disk0'], None)
        snap.require_job_selection(qmp, view, ['disk1', 'disk0'], None)
        snap.require_job_selection(qmp, view, None, 'disk0')
        with pytest.raises(errors.ParameterError):
            snap.require_job_selection(qmp, view, None, 'disk1')
    assert 'QEMU 5.2.0 has no snapshot-save job' in str(caught.value)
    assert not any(c == 'human-monitor-command' for c in qemu.commands)


# -- the module, run the way users run it --------------------------------------------------

def snapshot(qemu, check=False, **args):
    args['qmp'] = qemu.path
    return run_module('qemu_snapshot', args, check=check)


def test_module_present_four_steps_restore_and_absent_over_hmp(qemu):
    step = snapshot(qemu, check=True, name=TRICKY)
    assert (step['rc'], step.changed, step['method']) == (0, True, 'hmp'), step['output']
    assert qemu.hmp_lines == [] and qemu.tags('disk0') == []

    step = snapshot(qemu, name=TRICKY)
    assert step.changed and not step.failed, step['output']
    assert step['snapshot']['name'] == TRICKY
    assert step['snapshot']['devices'] == ['disk0', 'disk1'] and step['snapshot']['complete']
    assert step['snapshot']['vmstate'] == 'disk0' and step['snapshot']['vm_state_size'] == 104857600
    assert step['snapshot']['date'].endswith('Z') and step['snapshot']['vm_clock'] == 42.5
    assert step['downtime_ms'] == 120
    assert qemu.tags('disk0') == qemu.tags('disk1') == [TRICKY]

    for check in (True, False):
        step = snapshot(qemu, check=check, name=TRICKY)
        assert not step.changed and not step.failed, step['output']
    assert len(qemu.hmp_lines) == 1

    step = snapshot(qemu, name=TRICKY, state='restored')
    assert step.changed and step['status'] == 'running', step['output']
    assert qemu.hmp_lines[-1] == 'loadvm ' + snap.hmp_quote(TRICKY)

    step = snapshot(qemu, name=TRICKY, state='absent')
    assert step.changed and qemu.tags('disk0') == qemu.tags('disk1') == []
    step = snapshot(qemu, name=TRICKY, state='absent')
    assert not step.changed and not step.failed
    assert qemu.hmp_lines[-1] == 'delvm ' + snap.hmp_quote(TRICKY)


def test_module_refuses_device_subset_on_old_qemu(qemu):
    step = snapshot(qemu, name='x', devices=['disk0'])
    assert step.failed and 'has no snapshot-save job (added in 6.0)' in step['msg']
    assert qemu.hmp_lines == []


def test_module_partial_snapshot_is_an_error_unless_forced(qemu):
    qemu.add_snapshot('disk0', 'partial', vm_state_size=5)
    step = snapshot(qemu, name='partial')
    assert step.failed and "exists on ['disk0'] but not on ['disk1']" in step['msg'], step['output']
    assert qemu.hmp_lines == []
    step = snapshot(qemu, name='partial', force=True)
    assert step.changed and not step.failed, step['output']
    assert qemu.tags('disk0') == qemu.tags('disk1') == ['partial']
    assert qemu.hmp_lines == ['delvm "partial"', 'savevm "partial"']
