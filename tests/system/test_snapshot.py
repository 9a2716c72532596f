# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_snapshot and qemu_snapshot_info against the real tiny guest (QEMU 7.2, snapshot jobs).

One VM with two qcow2 disks is shared by the tests of this file that only need "a running VM
with two disks"; each of them uses its own snapshot names. Observation goes through the
harness' own QMP monitor and guest agent connection, never through the code under test.
"""

from __future__ import annotations

import re
import time

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._snapshot import jobs as snapshot_utils
from ansible_collections.qemu.vm.plugins.module_utils._errors import VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession

from harness.ansible import run_module
from harness.guest import VM

ISO_UTC = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')
SAVE_JOB = 'qemu-vm-snapshot-save-'


@pytest.fixture(scope='module')
def vm2(guest_images, tmp_path_factory):
    """A running guest with two writable qcow2 disks, disk0 (the data disk) and disk1."""
    machine = VM(tmp_path_factory.mktemp('snapvm'), images=guest_images, disks=[{'format': 'qcow2', 'size': '16M'}])
    try:
        machine.start()
        yield machine
    finally:
        machine.stop()


def snapshot(vm, check=False, diff=False, **args):
    args['qmp'] = vm.qmp_path
    return run_module('qemu_snapshot', args, check=check, diff=diff)


def snapshot_info(vm, **args):
    args['qmp'] = vm.qmp_path
    return run_module('qemu_snapshot_info', args)


def snapshots(vm):
    """{node: {tag: vm-state-size}} for the format nodes, read by the harness."""
    result = {}
    for node in vm.qmp('query-named-block-nodes', flat=True):
        if node['drv'] != 'file':
            result[node['node-name']] = dict((s['name'], s['vm-state-size'])
                                             for s in node.get('image', {}).get('snapshots', []))
    return result


def tags(vm, node):
    return sorted(snapshots(vm)[node])


def our_jobs(vm):
    return [job for job in vm.qmp('query-jobs') if job['id'].startswith('qemu-vm-')]


def raw_job(vm, command, **args):
    """Run a snapshot job on the harness monitor (setup outside the code under test)."""
    job_id = f'harness-{command}-{time.monotonic_ns()}'
    args['job-id'] = job_id
    vm.qmp(command, **args)
    deadline = time.monotonic() + 60
    while True:
        job = [j for j in vm.qmp('query-jobs') if j['id'] == job_id][0]
        if job['status'] == 'concluded':
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    vm.qmp('job-dismiss', id=job_id)
    assert 'error' not in job, job
    return job


def guest_sh(vm, script):
    return vm.guest_exec(['sh', '-c', script])


# -- the rollback is real -----------------------------------------------------------------------

def test_save_write_load_rolls_back_disk_and_memory(vm2):
    saved = snapshot(vm2, name='rollback point')
    assert saved.changed and not saved.failed, saved['output']
    snap = saved['snapshot']
    assert (snap['name'], snap['devices'], snap['vmstate'], snap['complete']) == \
        ('rollback point', ['disk0', 'disk1'], 'disk0', True)
    assert snap['vm_state_size'] > 0 and ISO_UTC.match(snap['date']) and snap['vm_clock'] > 0
    assert (saved['method'], saved['status'], saved['vmstate']) == ('job', 'running', 'disk0')
    assert saved['downtime_ms'] > 0  # STOP and RESUME were seen
    assert our_jobs(vm2) == []

    assert guest_sh(vm2, 'echo after > /data/after.txt && echo after > /after-ram && sync')[0] == 0
    assert guest_sh(vm2, 'cat /data/after.txt /after-ram')[1] == b'after\nafter\n'

    loaded = snapshot(vm2, name='rollback point', state='restored')
    assert loaded.changed and not loaded.failed, loaded['output']
    assert loaded['status'] == 'running' and vm2.status() == 'running'
    assert loaded['snapshot']['name'] == 'rollback point'
    code, out = guest_sh(vm2, 'test -e /data/after.txt; echo disk=$?; test -e /after-ram; echo ram=$?; '
                              'cat /data/hello.txt')[:2]
    assert (code, out) == (0, b'disk=1\nram=1\nhello from qemu.vm guest\n')
    assert our_jobs(vm2) == []

    again = snapshot(vm2, name='rollback point', state='restored')
    assert again.changed and not again.failed  # restored always loads


def test_restore_of_a_paused_vm_keeps_it_paused(vm2):
    assert snapshot(vm2, name='paused restore').changed
    vm2.qmp('stop')
    try:
        loaded = snapshot(vm2, name='paused restore', state='restored')
        assert loaded.changed and not loaded.failed, loaded['output']
        assert loaded['status'] == 'paused' and loaded['downtime_ms'] == 0
        assert vm2.status() == 'paused'
        saved = snapshot(vm2, name='saved while paused')
        assert saved.changed and saved['status'] == 'paused' and saved['downtime_ms'] == 0, saved['output']
        assert vm2.status() == 'paused'
    finally:
        vm2.qmp('cont')
    vm2.wait_status('running')
    assert guest_sh(vm2, 'echo alive')[1] == b'alive\n'


def test_failed_load_leaves_restore_vm_and_a_good_load_recovers(vm2):
    assert snapshot(vm2, name='good state').changed
    # The module checks the tag first; go below it to make QEMU fail a load for real.
    with QMPSession(vm2.qmp_path, timeout=30) as qmp:
        with pytest.raises(VMStateError) as caught:
            snapshot_utils.load_snapshot(qmp, 'not there', 'disk0', ['disk0', 'disk1'], 30)
    message = str(caught.value)
    assert "does not exist" in message and 'restore-vm' in message and 'NOT resumed' in message
    assert vm2.status() == 'restore-vm'
    try:
        refused = snapshot(vm2, name='over a broken guest')
        assert refused.failed and 'restore-vm' in refused['msg'], refused['output']
        assert 'over a broken guest' not in snapshots(vm2)['disk0']
        recovered = snapshot(vm2, name='good state', state='restored')
        assert recovered.changed and not recovered.failed, recovered['output']
        assert recovered['status'] == 'restore-vm'  # left stopped, as it was before the load
    finally:
        vm2.qmp('cont')
    vm2.wait_status('running')
    assert guest_sh(vm2, 'echo alive')[1] == b'alive\n'


def test_hmp_fallback_commands_work_on_real_qemu(vm2):
    """The HMP path (used on QEMU < 6.0) against QEMU 7.2's real HMP parser."""
    tag = 'hmp \u00e9t\u00e9 "quoted" back\\slash'
    with QMPSession(vm2.qmp_path, timeout=30) as qmp:
        saved = snapshot_utils.hmp_command(qmp, 'savevm', tag, 30)
        assert saved['method'] == 'hmp' and saved['downtime_ms'] > 0
        state = snapshots(vm2)
        assert state['disk0'][tag] > 0 and state['disk1'][tag] == 0
        snapshot_utils.hmp_command(qmp, 'loadvm', tag, 30)
        assert vm2.status() == 'running'
        snapshot_utils.hmp_command(qmp, 'delvm', tag, 30)
        assert tag not in snapshots(vm2)['disk0'] and tag not in snapshots(vm2)['disk1']


# -- idempotency ----------------------------------------------------------------------------------

def test_present_four_steps_on_two_qcow2_disks(vm2):
    name = 'four steps'
    first = snapshot(vm2, check=True, diff=True, name=name)
    assert first.changed and not first.failed, first['output']
    assert first['snapshot'] is None and first['devices'] == ['disk0', 'disk1']
    assert name not in snapshots(vm2)['disk0'] and name not in snapshots(vm2)['disk1']  # check mode created nothing
    assert '+++ after' in first['output'] and re.search(r'^\+\s+"four steps"', first['output'], re.M)

    second = snapshot(vm2, name=name)
    assert second.changed and not second.failed, second['output']
    state = snapshots(vm2)
    assert state['disk0'][name] > 0 and state['disk1'][name] == 0  # both disks, RAM state on disk0

    for check in (True, False):
        step = snapshot(vm2, check=check, name=name)
        assert not step.changed and not step.failed, step['output']
        assert step['snapshot']['id'] == second['snapshot']['id']
        assert step['duration_ms'] == 0 and step['downtime_ms'] == 0
    assert sorted(s for s in snapshots(vm2)['disk0'] if s == name) == [name]
    assert our_jobs(vm2) == []


def test_devices_by_device_id_as_for_backups(vm2):
    # disk0 is the device vda, disk1 is vdb: the ids qemu_backup and qemu_vm name disks by
    name = 'by device id'
    saved = snapshot(vm2, name=name, devices=['vdb'], vmstate='vdb')
    assert saved.changed and not saved.failed, saved['output']
    assert saved['devices'] == ['disk1'] and saved['vmstate'] == 'disk1'
    state = snapshots(vm2)
    assert state['disk1'][name] > 0 and name not in state['disk0']
    info = snapshot_info(vm2, devices=['vdb'], name=name)
    assert info['devices'] == ['disk1'] and [s['name'] for s in info['snapshots']] == [name], info['output']
    assert snapshot(vm2, name=name, devices=['disk1']).changed is False  # node names still work
    deleted = snapshot(vm2, name=name, devices=['vdb'], state='absent')
    assert deleted.changed and name not in snapshots(vm2)['disk1']


def test_absent_four_steps(vm2):
    name = 'to be deleted'
    assert snapshot(vm2, name=name).changed
    first = snapshot(vm2, check=True, diff=True, name=name, state='absent')
    assert first.changed and first['snapshot']['name'] == name, first['output']
    assert name in snapshots(vm2)['disk0'] and name in snapshots(vm2)['disk1']  # check mode deleted nothing
    assert re.search(r'^-\s+"to be deleted"', first['output'], re.M)

    second = snapshot(vm2, name=name, state='absent')
    assert second.changed and not second.failed, second['output']
    assert name not in snapshots(vm2)['disk0'] and name not in snapshots(vm2)['disk1']

    for check in (True, False):
        step = snapshot(vm2, check=check, name=name, state='absent')
        assert not step.changed and not step.failed and step['snapshot'] is None, step['output']
    assert our_jobs(vm2) == []


def test_tag_with_spaces_and_non_ascii_round_trips(vm2):
    name = 'nightly backup \u00e9t\u00e9 \u96ea "quoted" \\ end'
    saved = snapshot(vm2, name=name)
    assert saved.changed and saved['snapshot']['name'] == name, saved['output']
    assert name in snapshots(vm2)['disk0'] and name in snapshots(vm2)['disk1']

    listed = snapshot_info(vm2, name=name)
    assert listed['names'] == [name] and listed['snapshots'][0]['complete']

    loaded = snapshot(vm2, name=name, state='restored')
    assert loaded.changed and not loaded.failed, loaded['output']
    assert snapshot(vm2, name=name, state='absent').changed
    assert name not in snapshots(vm2)['disk0']


# -- a consistent view, partial snapshots -----------------------------------------------------------

def test_info_tells_complete_from_partial_and_force_repairs(vm2):
    raw_job(vm2, 'snapshot-save', tag='half made', vmstate='disk0', devices=['disk0'])
    info = snapshot_info(vm2)
    assert not info.failed and info['devices'] == ['disk0', 'disk1'], info['output']
    assert info['status'] == 'running'
    half = [s for s in info['snapshots'] if s['name'] == 'half made'][0]
    assert (half['complete'], half['devices'], half['missing_devices']) == (False, ['disk0'], ['disk1'])
    assert 'half made' in info['partial'] and info['names'][-1] == 'half made'  # newest last
    dates = [s['date_epoch'] for s in info['snapshots']]
    assert dates == sorted(dates)
    assert all(ISO_UTC.match(s['date']) for s in info['snapshots'])
    assert snapshot_info(vm2, prefix='half')['names'] == ['half made']
    assert snapshot_info(vm2, devices=['disk0'])['partial'] == []

    refused = snapshot(vm2, name='half made')
    assert refused.failed and "exists on ['disk0'] but not on ['disk1']" in refused['msg']
    refused = snapshot(vm2, name='half made', state='restored')
    assert refused.failed and 'nothing was loaded' in refused['msg']
    assert vm2.status() == 'running'

    forced = snapshot(vm2, name='half made', force=True)
    assert forced.changed and forced['snapshot']['complete'], forced['output']
    assert 'half made' in snapshots(vm2)['disk1']
    assert snapshot_info(vm2)['partial'] == []


# -- retention ----------------------------------------------------------------------------------

def test_retention_keeps_exactly_n_prefixed_and_never_touches_others(vm2):
    others = ['manual', 'bk', 'old-bk-1', 'BK-1']
    ours = ['bk-1', 'bk-2', 'bk-3', 'bk-4']
    for tag in others + ours:
        raw_job(vm2, 'snapshot-save', tag=tag, vmstate='disk0', devices=['disk0', 'disk1'])
    everything_before = snapshots(vm2)

    planned = snapshot(vm2, check=True, state='pruned', prefix='bk-', keep=2)
    assert planned.changed and not planned.failed, planned['output']
    assert (planned['pruned'], planned['kept']) == (['bk-1', 'bk-2'], ['bk-3', 'bk-4'])
    assert snapshots(vm2) == everything_before  # check mode deletes nothing

    pruned = snapshot(vm2, state='pruned', prefix='bk-', keep=2)
    assert pruned.changed and (pruned['pruned'], pruned['kept']) == (['bk-1', 'bk-2'], ['bk-3', 'bk-4'])
    for node in ('disk0', 'disk1'):
        names = snapshots(vm2)[node]
        assert sorted(n for n in names if n.startswith('bk-')) == ['bk-3', 'bk-4']
        assert all(other in names for other in others)
        assert set(everything_before[node]) - set(names) == {'bk-1', 'bk-2'}

    again = snapshot(vm2, state='pruned', prefix='bk-', keep=2)
    assert not again.changed and again['pruned'] == [] and again['kept'] == ['bk-3', 'bk-4']

    young = snapshot(vm2, state='pruned', prefix='bk-', max_age='1w')
    assert not young.changed and young['kept'] == ['bk-3', 'bk-4']
    time.sleep(1.1)
    aged = snapshot(vm2, state='pruned', prefix='bk-', max_age='1s', keep=1)
    assert aged.changed and (aged['pruned'], aged['kept']) == (['bk-3'], ['bk-4'])
    assert all(other in snapshots(vm2)['disk0'] for other in others)
    assert our_jobs(vm2) == []


# -- timeouts -----------------------------------------------------------------------------------

def test_timeout_while_the_job_runs_is_clear_and_the_job_is_dismissed_later(vm2):
    # A save with RAM state takes a few hundred ms here; 0.05 s runs out while QEMU works on it.
    # The same bound applies to connecting: retry the rare run that times out before the job starts.
    for _attempt in range(3):
        timed_out = snapshot(vm2, name='slow save', timeout=0.05)
        assert timed_out.failed, timed_out['output']
        if 'saving snapshot' in timed_out['msg']:
            break
    assert timed_out['msg'].startswith("saving snapshot 'slow save' did not complete within 0.05 s"), timed_out['msg']
    assert timed_out['error_type'] == 'QemuTimeoutError'
    if 'concluded later and was dismissed' not in timed_out['msg']:
        assert 'the next qemu.vm.qemu_snapshot task on this VM waits for it' in timed_out['msg']
        left = our_jobs(vm2)
        assert [j['id'][:len(SAVE_JOB)] for j in left] == [SAVE_JOB], left

    follow_up = snapshot(vm2, name='slow save')
    assert not follow_up.failed, follow_up['output']
    assert not follow_up.changed  # the timed-out job finished the save; it is not saved twice
    assert our_jobs(vm2) == []
    assert 'slow save' in snapshots(vm2)['disk0'] and 'slow save' in snapshots(vm2)['disk1']


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize('args, words, error_type', [
    ({'name': ''}, 'name must be a non-empty snapshot name', 'ParameterError'),
    ({'name': '\u00e9' * 128}, 'name is 256 bytes long', 'ParameterError'),
    ({'name': 'x', 'devices': ['nope']}, "no disk with device id or node name 'nope'", 'ParameterError'),
    ({'name': 'x', 'devices': ['disk0-file']}, "did you mean its format node 'disk0'", 'ParameterError'),
    ({'name': 'x', 'devices': ['disk0'], 'vmstate': 'disk1'}, "vmstate: node 'disk1' must be one of", 'ParameterError'),
    ({'name': 'never saved', 'state': 'restored'}, "snapshot 'never saved' does not exist", 'VMStateError'),
    ({'state': 'pruned', 'keep': 1}, 'prefix', None),
    ({'state': 'pruned', 'prefix': ' ', 'keep': 1}, 'prefix is required and must not be empty', 'ParameterError'),
    ({'state': 'pruned', 'prefix': 'bk-'}, 'needs keep, max_age or both', 'ParameterError'),
    ({'state': 'pruned', 'prefix': 'bk-', 'max_age': '2 weeks'}, 'max_age', 'ParameterError'),
    ({'name': 'x', 'keep': 3}, 'keep is only used with state=pruned', 'ParameterError'),
])
def test_bad_input_is_refused_naming_the_problem(vm2, args, words, error_type):
    before = snapshots(vm2)
    result = snapshot(vm2, **args)
    assert result.failed and words in result['msg'], result['output']
    # None: AnsibleModule's own validation (required_if) refused it.
    assert result.get('error_type') == error_type, result['output']
    assert snapshots(vm2) == before and our_jobs(vm2) == [] and vm2.status() == 'running'


# -- other VMs ----------------------------------------------------------------------------------

def test_writable_raw_disk_is_named_and_devices_can_exclude_it(vm_factory):
    vm = vm_factory(disks=[{'format': 'raw', 'size': '8M'}, {'format': 'qcow2', 'size': '8M', 'readonly': True}])
    refused = snapshot(vm, name='all disks')
    assert refused.failed and refused['error_type'] == 'VMStateError'
    assert "node 'disk1' (device vdb) is a writable disk with driver raw" in refused['msg']
    assert "devices: ['disk0']" in refused['msg']
    assert snapshots(vm)['disk0'] == {} and vm.qmp('query-jobs') == []

    read_only = snapshot(vm, name='ro', devices=['disk0', 'disk2'])
    assert read_only.failed and "node 'disk2' is read-only" in read_only['msg']

    saved = snapshot(vm, name='without scratch', devices=['disk0'])
    assert saved.changed and saved['devices'] == ['disk0'] and saved['snapshot']['complete'], saved['output']
    assert list(snapshots(vm)['disk0']) == ['without scratch']
    assert snapshot(vm, name='without scratch', devices=['disk0']).changed is False

    info = snapshot_info(vm)
    assert info['devices'] == ['disk0'] and info['names'] == ['without scratch']
    loaded = snapshot(vm, name='without scratch', devices=['disk0'], state='restored')
    assert loaded.changed and loaded['status'] == 'running', loaded['output']
    deleted = snapshot(vm, name='without scratch', state='absent')  # raw disks are skipped when deleting
    assert deleted.changed and snapshots(vm)['disk0'] == {}


def test_vm_waiting_for_migration_is_refused_untouched(vm_factory):
    vm = vm_factory(agent=False, wait_agent=False, extra_args=['-incoming', 'defer'])
    assert vm.status() == 'inmigrate'
    refused = snapshot(vm, name='x')
    assert refused.failed and 'run state inmigrate (waiting for an incoming migration)' in refused['msg']
    assert snapshots(vm)['disk0'] == {} and vm.qmp('query-jobs') == [] and vm.status() == 'inmigrate'
    info = snapshot_info(vm)
    assert not info.failed and info['status'] == 'inmigrate' and info['snapshots'] == []
