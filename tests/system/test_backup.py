# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Quiesced snapshots and the backup role, against the real guest agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._guest.errors import QuiesceError
from ansible_collections.qemu.vm.plugins.module_utils._guest.quiesce import quiesced

from harness.ansible import REPO, run_module, run_playbook


def freeze_status(vm):
    return vm.qga('guest-fsfreeze-status')


def snapshot_names(vm):
    nodes = vm.qmp('query-named-block-nodes', flat=True)
    return [s['name'] for n in nodes if n['node-name'] == 'disk0' for s in n.get('image', {}).get('snapshots', [])]


# -- the mechanism, driven directly -------------------------------------------------------


def start_guest_writer(vm, path='/data/ticks', rounds=400):
    """A writer inside the guest appending its uptime every 50 ms; a freeze shows as a gap."""
    script = (f'(i=0; while [ $i -lt {rounds} ]; do cat /proc/uptime >> {path}; i=$((i+1)); usleep 50000; done)'
              ' </dev/null >/dev/null 2>&1 &')
    rc, _out, err = vm.guest_exec(['sh', '-c', script])
    assert rc == 0, err
    time.sleep(0.5)


def longest_write_gap(vm, path='/data/ticks'):
    rc, out, _err = vm.guest_exec(['cat', path])
    assert rc == 0
    times = [float(line.split()[0]) for line in out.decode().splitlines() if line.strip()]
    assert len(times) > 5
    return max(b - a for a, b in zip(times, times[1:]))


def test_failing_save_leaves_the_guest_thawed(vm):
    start_guest_writer(vm)

    def failing_save(bound):
        time.sleep(1.5)  # frozen: the guest's writer is blocked meanwhile
        raise errors.JobError('job-x', 'snapshot-save', 'Device has no medium')

    with pytest.raises(errors.JobError):
        quiesced(vm.qga_path, 'required', 10, 30, failing_save, lambda m: None)
    assert freeze_status(vm) == 'thawed'
    time.sleep(0.5)
    assert longest_write_gap(vm) >= 1.0  # it really was frozen, and writes resumed after


KILLABLE = textwrap.dedent('''
    import sys, time
    from ansible_collections.qemu.vm.plugins.module_utils._guest.quiesce import quiesced
    def save(bound):
        print('frozen', flush=True)
        time.sleep(600)
    quiesced(sys.argv[1], 'required', 10, float(sys.argv[2]), save, lambda m: None)
''')


@pytest.mark.parametrize('freeze_timeout', [30])
def test_sigkill_while_frozen_is_thawed_by_the_guard(vm, freeze_timeout):
    start_guest_writer(vm)
    proc = subprocess.Popen([sys.executable, '-c', KILLABLE, vm.qga_path, str(freeze_timeout)],
                            stdout=subprocess.PIPE, universal_newlines=True, env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == 'frozen'
        time.sleep(2)
        proc.kill()
        proc.wait()
        killed_at = time.monotonic()
        deadline = killed_at + freeze_timeout + 5
        status = None
        while time.monotonic() < deadline:
            try:
                status = vm.qga('guest-fsfreeze-status', timeout=5)
            except Exception:  # pylint: disable=broad-except
                status = None  # the guard may hold the socket for a moment
            if status == 'thawed':
                break
            time.sleep(0.2)
        assert status == 'thawed'
        assert time.monotonic() - killed_at < freeze_timeout + 5
        time.sleep(0.5)
        assert longest_write_gap(vm) >= 1.5  # frozen while the process lived, writing again after
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_required_with_agent_blocking_freeze_takes_no_snapshot(vm_factory):
    vm = vm_factory(ga_block=('guest-fsfreeze-freeze', 'guest-fsfreeze-freeze-list'))
    saved = []
    with pytest.raises(QuiesceError) as caught:
        quiesced(vm.qga_path, 'required', 10, 30, saved.append, lambda m: None)
    assert saved == []
    assert 'guest-fsfreeze-freeze disabled' in str(caught.value)


# -- the module ------------------------------------------------------------------------------


def test_quiesced_snapshot_reports_frozen_window(vm):
    result = run_module('qemu_snapshot', {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'name': 'q1',
                                          'quiesce': 'required', 'timeout': 30})
    assert result['rc'] == 0, result['output']
    assert result.changed
    assert result['quiesced'] is True
    assert result['frozen_ms'] > 0
    assert result['frozen_ms'] < result['duration_ms'] + 1
    assert freeze_status(vm) == 'thawed'
    assert 'q1' in snapshot_names(vm)


def test_guest_frozen_before_the_run_ends_thawed_with_a_warning(vm):
    assert vm.qga('guest-fsfreeze-freeze') >= 1
    result = run_module('qemu_snapshot', {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'name': 'q2',
                                          'quiesce': 'required', 'timeout': 30})
    assert result['rc'] == 0, result['output']
    assert result['quiesced'] is True
    assert 'already frozen' in result['output']  # shown as a [WARNING]
    assert freeze_status(vm) == 'thawed'


def test_preferred_without_agent_is_crash_consistent_and_says_why(vm_noagent):
    result = run_module('qemu_snapshot', {'qmp': vm_noagent.qmp_path, 'qga': vm_noagent.qga_path, 'name': 'q3',
                                          'quiesce': 'preferred', 'timeout': 3})
    assert result['rc'] == 0, result['output']
    assert result['quiesced'] is False
    assert 'did not answer' in result['quiesce_reason']
    assert 'q3' in snapshot_names(vm_noagent)


def test_required_without_agent_fails_and_takes_nothing(vm_noagent):
    result = run_module('qemu_snapshot', {'qmp': vm_noagent.qmp_path, 'qga': vm_noagent.qga_path, 'name': 'q4',
                                          'quiesce': 'required', 'timeout': 3})
    assert result.failed
    assert 'quiesce=required' in result['msg']
    assert 'q4' not in snapshot_names(vm_noagent)


def test_invalid_vmstate_fails_clearly_and_guest_stays_thawed(vm):
    result = run_module('qemu_snapshot', {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'name': 'q5',
                                          'quiesce': 'required', 'vmstate': 'no-such-node'})
    assert result.failed
    assert 'no-such-node' in result['msg']
    assert freeze_status(vm) == 'thawed'
    assert 'q5' not in snapshot_names(vm)


def test_quiesce_needs_qga(vm):
    result = run_module('qemu_snapshot', {'qmp': vm.qmp_path, 'name': 'q6', 'quiesce': 'required'})
    assert result.failed
    assert 'qga' in result['msg']


# -- the role and the playbooks ----------------------------------------------------------------


def test_backup_role_rotates_only_its_prefix_and_continues_after_a_failed_vm(vm_factory, tmp_path):
    vm = vm_factory()
    vm.qmp('human-monitor-command', **{'command-line': 'savevm keep-me'})
    vms = [{'name': 'good', 'qmp': vm.qmp_path, 'qga': vm.qga_path},
           {'name': 'broken', 'qmp': str(tmp_path / 'missing.sock')}]
    for _round in range(3):
        proc = run_playbook(os.path.join(REPO, 'playbooks', 'backup.yml'), {
            'backup_vms': vms, 'backup_keep': 2, 'backup_quiesce': 'required', 'backup_timeout': 30})
        assert proc.returncode != 0, proc.stdout          # the broken VM fails the play at the end
        assert 'Backups failed for: broken' in proc.stdout
        assert "'name': 'good'" in proc.stdout or '"name": "good"' in proc.stdout
        time.sleep(1.1)  # backup tags have one-second resolution
    names = snapshot_names(vm)
    assert 'keep-me' in names
    assert len([n for n in names if n.startswith('backup-')]) == 2
    assert freeze_status(vm) == 'thawed'


def test_restore_playbook_refuses_without_confirmation_then_restores(vm):
    vm.qmp('human-monitor-command', **{'command-line': 'savevm known-good'})
    extra = {'restore_qmp': vm.qmp_path, 'restore_tag': 'known-good'}
    refused = run_playbook(os.path.join(REPO, 'playbooks', 'restore.yml'), extra)
    assert refused.returncode != 0
    assert 'restore_confirm=true' in refused.stdout
    rc, _out, _err = vm.guest_exec(['sh', '-c', 'echo changed > /data/after.txt && sync'])
    assert rc == 0
    done = run_playbook(os.path.join(REPO, 'playbooks', 'restore.yml'), dict(extra, restore_confirm=True))
    assert done.returncode == 0, done.stdout
    vm.wait_agent(timeout=30)
    rc, _out, _err = vm.guest_exec(['test', '-e', '/data/after.txt'])
    assert rc != 0  # the file written after the snapshot is gone


def disk_snapshot_sizes(vm):
    """{tag: vm-state-size} of disk0."""
    nodes = vm.qmp('query-named-block-nodes', flat=True)
    return dict((s['name'], s['vm-state-size']) for n in nodes if n['node-name'] == 'disk0'
                for s in n.get('image', {}).get('snapshots', []))


def test_backup_role_disk_snapshot_and_external_methods_then_restore_playbook(vm_factory, tmp_path):
    vm = vm_factory()
    good = {'name': 'good', 'qmp': vm.qmp_path, 'qga': vm.qga_path}
    broken = {'name': 'broken', 'qmp': str(tmp_path / 'missing.sock')}
    playbook = os.path.join(REPO, 'playbooks', 'backup.yml')

    disk_only = run_playbook(playbook, {'backup_vms': [good], 'backup_method': 'disk-snapshot',
                                        'backup_quiesce': 'required', 'backup_timeout': 30})
    assert disk_only.returncode == 0, disk_only.stdout
    sizes = disk_snapshot_sizes(vm)
    assert [size for name, size in sizes.items() if name.startswith('backup-')] == [0]  # no RAM state
    assert vm.status() == 'running' and freeze_status(vm) == 'thawed'

    dest = tmp_path / 'external'
    dest.mkdir()
    for expected_points in (1, 2):
        proc = run_playbook(playbook, {'backup_vms': [good, broken], 'backup_method': 'external',
                                       'backup_dest': str(dest), 'backup_quiesce': 'required', 'backup_timeout': 30})
        assert proc.returncode != 0 and 'Backups failed for: broken' in proc.stdout, proc.stdout
        chains = os.listdir(str(dest / 'good'))
        assert len(chains) == 1, chains
        with open(str(dest / 'good' / chains[0] / 'manifest.json')) as handle:
            points = json.load(handle)['points']
        assert [p['mode'] for p in points] == ['full', 'incremental'][:expected_points]
        assert freeze_status(vm) == 'thawed'
    assert not os.path.exists(str(dest / 'broken'))

    target = str(tmp_path / 'restored.qcow2')
    restore = os.path.join(REPO, 'playbooks', 'restore.yml')
    extra = {'restore_dest': str(dest / 'good'), 'restore_device': 'vda', 'restore_target': target}
    refused = run_playbook(restore, extra)
    assert refused.returncode != 0 and 'restore_confirm=true' in refused.stdout and not os.path.exists(target)
    done = run_playbook(restore, dict(extra, restore_confirm=True))
    assert done.returncode == 0, done.stdout
    assert 'at point {0} (incremental'.format(points[-1]['point']) in ' '.join(done.stdout.split())
    info = json.loads(subprocess.run(['qemu-img', 'info', '--output=json', target], check=True,
                                     stdout=subprocess.PIPE).stdout)
    assert info['format'] == 'qcow2' and 'backing-filename' not in info


def test_backup_role_checks_each_input_with_its_own_message(tmp_path):
    playbook = os.path.join(REPO, 'playbooks', 'backup.yml')
    no_vm = run_playbook(playbook, {'backup_method': 'external', 'backup_dest': str(tmp_path)})
    assert no_vm.returncode != 0 and 'give backup_vms' in no_vm.stdout, no_vm.stdout
    one = {'backup_qmp': str(tmp_path / 'missing.sock')}
    no_prefix = run_playbook(playbook, dict(one, backup_prefix=''))
    assert no_prefix.returncode != 0, no_prefix.stdout
    assert 'backup_prefix must not be empty with backup_method=snapshot' in no_prefix.stdout
    assert 'backup_dest' not in no_prefix.stdout
    no_dest = run_playbook(playbook, dict(one, backup_method='external'))
    assert no_dest.returncode != 0 and 'needs an absolute backup_dest' in no_dest.stdout, no_dest.stdout
    assert 'backup_prefix' not in no_dest.stdout


def test_backup_role_external_needs_no_prefix_and_passes_job_timeout(vm, tmp_path):
    playbook = os.path.join(REPO, 'playbooks', 'backup.yml')
    extra = {'backup_qmp': vm.qmp_path, 'backup_qga': vm.qga_path, 'backup_name': 'one', 'backup_prefix': '',
             'backup_method': 'external', 'backup_dest': str(tmp_path), 'backup_timeout': 30}
    # a job_timeout qemu_backup refuses shows that the role hands backup_job_timeout to it
    refused = run_playbook(playbook, dict(extra, backup_job_timeout=0))
    assert refused.returncode != 0 and 'Backups failed for: one' in refused.stdout, refused.stdout
    assert 'job_timeout must be a finite number of seconds' in refused.stdout
    assert "'task': 'Write an external backup point" in refused.stdout
    assert not os.listdir(str(tmp_path / 'one'))
    done = run_playbook(playbook, dict(extra, backup_job_timeout=600))
    assert done.returncode == 0, done.stdout
    assert len(os.listdir(str(tmp_path / 'one'))) == 1
    assert freeze_status(vm) == 'thawed'
