# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU serves one client per monitor socket: a long backup or snapshot save must leave the
collection's own QMP socket to other clients while its job runs inside QEMU.

Each test makes the job long with a throttled disk (the harness puts a throttle filter under the
disk's format node), then asks the same socket the module uses, again and again, while the job
is still running (checked on the harness's own monitor after each answer). Before this was built
a second client got no greeting for the whole copy. How fast the answers come is measured in
`make bench` (figure 11), not asserted here: each question only has a generous bound.

A RAM snapshot save is watched the same way (QMPSession.watch; unit-tested against a fake monitor),
but QEMU 7.2 itself cannot answer anyone while it writes the VM state: the save runs in its main
loop, so every monitor (the harness's own too) is silent until it ends. Measured here: an 800 MiB
state written in 4.6 s, and no client answered during it.
"""

from __future__ import annotations

import json
import os
import resource
import time

from harness.ansible import run_module
from harness.guest import qmp_command
from harness.runs import start_module, wait_for

MIB = 1024 * 1024
# A bound for one question of the second client: far below the job's length (20 s and more),
# far above what an answer takes on a loaded machine.
ASK_BOUND = 5.0


def our_jobs(vm):
    return [job for job in vm.qmp('query-jobs') if job['id'].startswith('qemu-vm-')]


def finish(run, timeout=300):
    """The background ad-hoc run's module result."""
    out = run.communicate(timeout=timeout)[0].decode()
    marker = out.find(' => ')
    assert marker >= 0, out
    result = json.JSONDecoder().raw_decode(out[marker + 4:].lstrip())[0]
    result['failed'] = 'FAILED!' in out[:marker].rsplit('\n', 1)[-1]
    result['output'] = out
    return result


def ask_while_the_job_runs(vm, run):
    """Ask query-status on the module's own socket until the run ends; return how many answers came
    while our job was still running (each one checked on the harness monitor right after)."""
    answered = 0
    while run.poll() is None:
        status = qmp_command(vm.qmp_path, 'query-status', timeout=ASK_BOUND)
        assert status['status'] in ('running', 'paused'), status
        if our_jobs(vm) and any(job['status'] == 'running' for job in our_jobs(vm)):
            answered += 1
            # qemu_vm_info is a whole module run on the same socket; it too answers meanwhile.
            if answered == 3:
                info = run_module('qemu_vm_info', {'qmp': vm.qmp_path, 'timeout': ASK_BOUND})
                assert not info.get('failed'), info['output']
                assert any(job['status'] == 'running' for job in our_jobs(vm)), 'the job ended first'
        time.sleep(0.5)
    return answered


def test_a_long_backup_leaves_the_monitor_to_other_clients(vm_factory, tmp_path):
    # vdb is read at 1 MiB/s: copying the 20 MiB the guest wrote takes 20 s and more.
    vm = vm_factory(disks=[{'format': 'qcow2', 'size': '24M', 'read_bps': MIB}])
    code, _out, err = vm.guest_exec(['sh', '-c', 'dd if=/dev/urandom of=/dev/vdb bs=1M count=20 conv=fsync'], timeout=120)
    assert code == 0, err
    dest = tmp_path / 'dest'
    dest.mkdir()
    run = start_module('qemu_backup', {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'dest': str(dest), 'devices': ['vdb'],
                                       'quiesce': 'required'})
    try:
        wait_for(lambda: our_jobs(vm), 'the backup job', timeout=120)
        answered = ask_while_the_job_runs(vm, run)
        result = finish(run)
    finally:
        if run.poll() is None:
            run.kill()
    assert not result['failed'], result['output']
    assert answered >= 10, f'only {answered} answers while the copy ran'
    assert result['mode'] == 'full' and result['changed']
    # The point is valid: the chain continues with an incremental, and the guest was thawed.
    info = run_module('qemu_backup_info', {'dest': str(dest), 'qmp': vm.qmp_path, 'devices': ['vdb']})
    assert not info.get('failed'), info['output']
    chain = info['chains'][0]
    assert chain['valid'] and chain['current'], chain
    assert result['frozen_ms'] > 0 and vm.qga('guest-fsfreeze-status') == 'thawed'
    assert our_jobs(vm) == []


def test_a_job_cancelled_by_another_client_while_we_are_away_is_reported(vm_factory, tmp_path):
    vm = vm_factory(disks=[{'format': 'qcow2', 'size': '24M', 'read_bps': MIB}])
    code, _out, err = vm.guest_exec(['sh', '-c', 'dd if=/dev/urandom of=/dev/vdb bs=1M count=20 conv=fsync'], timeout=120)
    assert code == 0, err
    dest = tmp_path / 'dest'
    dest.mkdir()
    run = start_module('qemu_backup', {'qmp': vm.qmp_path, 'dest': str(dest), 'devices': ['vdb']})
    try:
        job = wait_for(lambda: our_jobs(vm), 'the backup job', timeout=120)[0]
        # Another client (on the module's own socket) cancels it while the module watches from afar.
        wait_for(lambda: any(j['status'] == 'running' for j in our_jobs(vm)), 'the job running', timeout=120)
        qmp_command(vm.qmp_path, 'job-cancel', {'id': job['id']}, timeout=ASK_BOUND)
        result = finish(run)
    finally:
        if run.poll() is None:
            run.kill()
    assert result['failed'], result['output']
    assert result['error_type'] == 'JobError' and 'vdb' in result['msg'] and 'cancel' in result['msg'].lower(), result
    # The cleanup guarantees hold: no job, no file, no node and no bitmap of ours is left.
    assert our_jobs(vm) == []
    assert not os.listdir(dest), os.listdir(dest)
    nodes = vm.qmp('query-named-block-nodes', flat=True)
    assert [n['node-name'] for n in nodes if n['node-name'].startswith('qemu-vm-')] == []
    assert [b['name'] for n in nodes for b in n.get('dirty-bitmaps', []) if b.get('name', '').startswith('qemu-vm-')] == []


def test_a_job_failing_while_we_are_away_is_reported_with_its_reason(vm_factory, tmp_path):
    # QEMU's writes past RLIMIT_FSIZE fail with EFBIG: the target becomes unwritable at 8 MiB, some
    # seconds into the throttled copy, while the module is between two of its short sessions.
    vm = vm_factory(disks=[{'format': 'qcow2', 'size': '24M', 'read_bps': MIB}], ignore_file_size_signal=True)
    code, _out, err = vm.guest_exec(['sh', '-c', 'dd if=/dev/urandom of=/dev/vdb bs=1M count=20 conv=fsync'], timeout=120)
    assert code == 0, err
    assert max(os.path.getsize(d['path']) for d in vm.disks if d['device'] != 'vdb') < 8 * MIB
    dest = tmp_path / 'dest'
    dest.mkdir()
    resource.prlimit(vm.pid, resource.RLIMIT_FSIZE, (8 * MIB, resource.RLIM_INFINITY))
    try:
        run = start_module('qemu_backup', {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'dest': str(dest),
                                           'devices': ['vdb'], 'quiesce': 'required'})
        try:
            wait_for(lambda: any(j['status'] == 'running' for j in our_jobs(vm)), 'the job running', timeout=120)
            # the module is away (the socket answers someone else) while the job still runs
            assert qmp_command(vm.qmp_path, 'query-status', timeout=ASK_BOUND)['status'] == 'running'
            assert any(j['status'] == 'running' for j in our_jobs(vm)), 'the job ended before we could look'
            result = finish(run)
        finally:
            if run.poll() is None:
                run.kill()
    finally:
        resource.prlimit(vm.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert result['failed'] and result['error_type'] == 'JobError', result['output']
    assert 'vdb' in result['msg'] and 'File too large' in result['msg'], result['msg']
    # qemu_backup's cleanup guarantees: thawed, no job, no file, no node and no bitmap of ours
    assert vm.qga('guest-fsfreeze-status') == 'thawed'
    assert our_jobs(vm) == [] and not os.listdir(dest), os.listdir(dest)
    nodes = vm.qmp('query-named-block-nodes', flat=True)
    assert [n['node-name'] for n in nodes if n['node-name'].startswith('qemu-vm-')] == []
    assert [b['name'] for n in nodes for b in n.get('dirty-bitmaps', []) if b.get('name', '').startswith('qemu-vm-')] == []
