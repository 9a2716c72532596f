# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_backup and qemu_backup_info against the real tiny guest (QEMU 7.2, real qcow2 files).

One VM (vda: the data disk, vdb: an empty 32 MiB qcow2, vdc: a raw disk) is shared by the tests
that only need "a running VM"; each of them writes into its own `dest`, so its own chain and
bitmap, and none depends on another having run. The crash test kills its own VM. Observation
goes through the harness' own QMP monitor and guest agent connection, and the files themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import subprocess

import pytest

from harness.ansible import run_module
from harness.guest import VM
from harness.runs import kill_when, start_module, wait_for

MIB = 1024 * 1024


@pytest.fixture(scope='module')
def shared_vm(guest_images, tmp_path_factory):
    machine = VM(tmp_path_factory.mktemp('backupvm'), images=guest_images,
                 disks=[{'format': 'qcow2', 'size': '32M'}, {'format': 'raw', 'size': '1M'}])
    try:
        machine.start()
        yield machine
    finally:
        machine.stop()


def backup(vm, dest, check=False, diff=False, **args):
    args.update(qmp=vm.qmp_path, dest=str(dest))
    return run_module('qemu_backup', args, check=check, diff=diff)


def bitmaps(vm):
    """{node: {bitmap name: bitmap}} read by the harness (a running job's anonymous bitmaps left out)."""
    return dict((n['node-name'], dict((b['name'], b) for b in n.get('dirty-bitmaps', []) if 'name' in b))
                for n in vm.qmp('query-named-block-nodes', flat=True) if n['drv'] == 'qcow2')


def write_guest(vm, device, mib, seek_mib=0):
    """Write `mib` MiB of random data onto a guest disk at `seek_mib` and flush it."""
    code, _out, err = vm.guest_exec(['sh', '-c', f'dd if=/dev/urandom of={device} bs=1M count={mib} seek={seek_mib} conv=fsync'], timeout=60)
    assert code == 0, err


def allocated(paths):
    return sum(os.stat(p).st_blocks * 512 for p in paths)


def tree(dest):
    """Every file under dest with its size and mtime (to show that nothing was written)."""
    found = {}
    for root, _dirs, files in os.walk(str(dest)):
        for name in files:
            stat = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), str(dest))] = (stat.st_size, stat.st_mtime_ns)
    return found


def manifest(result):
    with open(os.path.join(os.path.dirname(result['files'][0]['path']), 'manifest.json')) as handle:
        return json.load(handle)


def our_jobs(vm):
    return [j for j in vm.qmp('query-jobs') if j['id'].startswith('qemu-vm-')]


def test_quiesced_full_then_small_incremental(shared_vm, tmp_path):
    vm = shared_vm
    write_guest(vm, '/dev/vdb', 12, seek_mib=16)  # data for the full point to copy
    full = backup(vm, tmp_path, qga=vm.qga_path, quiesce='required')
    assert not full.failed, full['output']
    assert full['mode'] == 'full' and full['chain'] == full['point']
    assert 'no chain' in full['chain_reset']['reason']
    assert full['quiesced'] is True and 0 < full['frozen_ms'] < full['duration_ms']
    print('frozen_ms full={0} of duration_ms={1}'.format(full['frozen_ms'], full['duration_ms']))
    assert [f['device'] for f in full['files']] == ['vda', 'vdb']
    assert 'vdc' in full['output'] and 'not qcow2' in full['output']  # the raw disk is left out, with a warning
    for item in full['files']:
        assert os.path.basename(item['path']) == '{0}.{1}.qcow2'.format(full['point'], item['device'])
        assert os.path.getsize(item['path']) == item['bytes']
    assert sorted(os.listdir(str(tmp_path / full['chain']))) == sorted(
        [os.path.basename(f['path']) for f in full['files']] + ['manifest.json'])
    name = 'qemu-vm-' + full['chain']
    for node in ('disk0', 'disk1'):
        bitmap = bitmaps(vm)[node][name]
        assert bitmap['persistent'] and bitmap['recording'] and not bitmap.get('inconsistent')
    assert vm.qga('guest-fsfreeze-status') == 'thawed'

    write_guest(vm, '/dev/vdb', 1)
    assert bitmaps(vm)['disk1'][name]['count'] >= MIB
    incremental = backup(vm, tmp_path, qga=vm.qga_path, quiesce='required')
    assert not incremental.failed, incremental['output']
    assert (incremental['mode'], incremental['chain'], incremental['chain_reset']) == ('incremental', full['chain'], None)
    assert vm.qga('guest-fsfreeze-status') == 'thawed'
    small = allocated(f['path'] for f in incremental['files'])
    big = allocated(f['path'] for f in full['files'])
    assert small < 0.25 * big, (small, big)
    assert bitmaps(vm)['disk1'][name]['count'] < MIB  # cleared by the successful incremental

    data = manifest(incremental)
    assert [p['point'] for p in data['points']] == [full['point'], incremental['point']]
    assert data['points'][1]['parent'] == full['point'] and data['bitmap'] == name
    # The incremental file is the whole disk through its backing chain: same bytes as the guest sees.
    image = str(tmp_path / 'vdb.raw')
    vdb = [f['path'] for f in incremental['files'] if f['device'] == 'vdb'][0]
    subprocess.run(['qemu-img', 'convert', '-O', 'raw', vdb, image], check=True)
    code, out, _err = vm.guest_exec(['sha256sum', '/dev/vdb'], timeout=60)
    assert code == 0
    with open(image, 'rb') as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == out.split()[0].decode()


def test_check_mode_and_diff_write_nothing(shared_vm, tmp_path):
    vm = shared_vm
    before_bitmaps = set(n for node in bitmaps(vm).values() for n in node)
    result = backup(vm, tmp_path, check=True, diff=True)
    assert not result.failed and result.changed, result['output']
    assert result['mode'] == 'full' and result['files'] == [] and 'no chain' in result['chain_reset']['reason']
    assert os.listdir(str(tmp_path)) == []
    assert set(n for node in bitmaps(vm).values() for n in node) == before_bitmaps
    assert '+++ after' in result['output'] and re.search(r'^\+.*"{0}"'.format(result['point']), result['output'], re.M)

    first = backup(vm, tmp_path)
    assert first['mode'] == 'full', first['output']
    files = tree(tmp_path)
    result = backup(vm, tmp_path, check=True, diff=True, mode='incremental')
    assert not result.failed, result['output']
    assert (result['mode'], result['chain']) == ('incremental', first['chain'])
    assert re.search(r'^\+\s+"{0}"'.format(result['point']), result['output'], re.M), result['output']
    assert tree(tmp_path) == files
    assert set(n for node in bitmaps(vm).values() for n in node) == before_bitmaps | {'qemu-vm-' + first['chain']}


def test_bad_input_names_it_and_changes_nothing(shared_vm, tmp_path):
    vm = shared_vm
    cases = [
        (dict(dest='relative/dir'), 'absolute'),
        (dict(dest=str(tmp_path / 'missing')), 'does not exist'),
        (dict(devices=['nope']), "no disk 'nope'"),
        (dict(devices=['vdc']), 'not qcow2'),
        (dict(mode='incremental'), 'no valid chain'),
    ]
    before = bitmaps(vm)
    for args, words in cases:
        args.setdefault('dest', str(tmp_path))
        args['qmp'] = vm.qmp_path
        result = run_module('qemu_backup', args)
        assert result.failed and words in result['msg'], (args, result['msg'])
    assert os.listdir(str(tmp_path)) == []
    assert bitmaps(vm).keys() == before.keys() and all(
        bitmaps(vm)[n].keys() == before[n].keys() for n in before)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 MiB tmpfs (the test fills it so that a point does not fit)."""
    mount = tmp_path / 'tmpfs'
    mount.mkdir()
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(['umount', '-l', str(mount)], check=False)


def test_no_space_in_dest_is_refused_before_anything_changes(shared_vm, small_tmpfs):
    vm = shared_vm
    dest = small_tmpfs
    full = backup(vm, dest, qga=vm.qga_path)
    assert full['mode'] == 'full', full['output']
    assert full['bytes_written'] <= full['bytes_needed']
    name = 'qemu-vm-' + full['chain']
    # Leave 1 MiB free, then make vdb's next point need 4 MiB.
    stat = os.statvfs(str(dest))
    with open(str(dest / 'filler'), 'wb') as handle:
        handle.write(b'\0' * (stat.f_bavail * stat.f_frsize - MIB))
    write_guest(vm, '/dev/vdb', 4, seek_mib=2)
    counts = dict((node, found[name]['count']) for node, found in bitmaps(vm).items() if name in found)
    assert counts['disk1'] >= 4 * MIB
    files = tree(dest)

    for check in (True, False):
        refused = backup(vm, dest, check=check, qga=vm.qga_path)
        assert refused.failed and refused['error_type'] == 'ParameterError', refused['output']
        assert refused['msg'].startswith(f'dest {dest}: no space for this backup point'), refused['msg']
        assert 'vdb 5.' in refused['msg'] and 'nothing was changed' in refused['msg']
    assert our_jobs(vm) == []
    assert not [n for n in vm.qmp('query-named-block-nodes', flat=True) if n['node-name'].startswith('qemu-vm-')]
    assert dict((node, found[name]['count']) for node, found in bitmaps(vm).items() if name in found) == counts
    assert vm.qga('guest-fsfreeze-status') == 'thawed'
    assert tree(dest) == files  # manifest unchanged, no .partial left

    os.unlink(str(dest / 'filler'))
    again = backup(vm, dest, qga=vm.qga_path)
    assert (again['mode'], again['chain'], again['chain_reset']) == ('incremental', full['chain'], None), again['output']
    assert [f for f in again['files'] if f['device'] == 'vdb'][0]['bytes'] > 4 * MIB
    assert again['bytes_written'] <= again['bytes_needed']  # an upper bound (zeroes written in the guest take no room)


def test_a_failing_disk_cancels_the_grouped_jobs_and_changes_nothing(vm_factory, tmp_path):
    """QEMU's writes past RLIMIT_FSIZE fail with EFBIG: vdb's target becomes unwritable mid-copy,
    while vdc's small job succeeds and the VM's own image files (all below the limit) stay
    writable. vda (where the guest itself writes) is left out, so the bitmaps' counts are exact."""
    vm = vm_factory(disks=[{'format': 'qcow2', 'size': '32M'}, {'format': 'qcow2', 'size': '16M'}],
                    ignore_file_size_signal=True)
    dest = tmp_path / 'dest'
    dest.mkdir()
    devices = ['vdb', 'vdc']
    full = backup(vm, dest, qga=vm.qga_path, devices=devices)
    assert full['mode'] == 'full', full['output']
    name = 'qemu-vm-' + full['chain']
    write_guest(vm, '/dev/vdb', 12)
    write_guest(vm, '/dev/vdc', 1)
    counts = dict((node, found[name]['count']) for node, found in bitmaps(vm).items() if found)
    assert counts == {'disk1': 12 * MIB, 'disk2': MIB}
    files = tree(dest)
    limit = 8 * MIB
    assert max(os.path.getsize(d['path']) for d in vm.disks if d['device'] != 'vdb') < limit
    resource.prlimit(vm.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        for mode in ('incremental', 'full'):
            failed = backup(vm, dest, qga=vm.qga_path, mode=mode, devices=devices)
            assert failed.failed and failed['error_type'] == 'JobError', failed['output']
            assert 'failed: disk vdb: File too large' in failed['msg'] and 'cancelled' in failed['msg'], failed['msg']
            assert vm.qga('guest-fsfreeze-status') == 'thawed'
            assert vm.status() == 'running'
            assert our_jobs(vm) == []
            assert not [n for n in vm.qmp('query-named-block-nodes', flat=True)
                        if n['node-name'].startswith('qemu-vm-')]
            # Only the chain's bitmaps (a failed full's new ones were removed), neither cleared.
            assert dict((node, dict((b, found[b]['count']) for b in found))
                        for node, found in bitmaps(vm).items() if found) == \
                dict((node, {name: count}) for node, count in counts.items())
            assert tree(dest) == files  # manifest unchanged, no .partial left
    finally:
        resource.prlimit(vm.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    again = backup(vm, dest, qga=vm.qga_path, devices=devices)
    assert (again['mode'], again['chain']) == ('incremental', full['chain']), again['output']
    sizes = dict((f['device'], f['bytes']) for f in again['files'])
    assert sizes['vdb'] > 12 * MIB and sizes['vdc'] > MIB


def start_paused(vm, args):
    """A run started in the background; returns (run, its job id) once the harness has paused the
    run's job, so the run waits for it (for ever) and the job cannot end before it is resumed."""
    run = start_module('qemu_backup', args)
    try:
        job = wait_for(lambda: our_jobs(vm), "the run's backup job")[0]
        vm.qmp('job-pause', id=job['id'])
    except BaseException:
        kill_when(run, lambda: True)
        raise
    return run, job['id']


def our_nodes(vm):
    return [n['node-name'] for n in vm.qmp('query-named-block-nodes', flat=True) if n['node-name'].startswith('qemu-vm-')]


def test_a_killed_run_is_cleaned_up_and_its_chain_never_continued(vm_factory, tmp_path):
    """vdb is read at 2 MiB/s (a throttle filter), so copying what the guest wrote takes seconds,
    and the harness pauses each run's job as soon as it exists: the kill lands while it runs."""
    vm = vm_factory(disks=[{'format': 'qcow2', 'size': '32M', 'read_bps': 2 * MIB}])
    dest = tmp_path / 'dest'
    dest.mkdir()
    args = {'qmp': vm.qmp_path, 'dest': str(dest), 'devices': ['vdb']}
    full = backup(vm, dest, devices=['vdb'])
    assert full['mode'] == 'full', full['output']
    name = 'qemu-vm-' + full['chain']
    write_guest(vm, '/dev/vdb', 4)

    # An incremental run holds dest: a second run (on the VM's other monitor) is refused meanwhile.
    run, job_id = start_paused(vm, args)
    try:
        busy = run_module('qemu_backup', dict(args, qmp=vm.harness_qmp_path))
        assert busy.failed and 'another qemu_backup run is writing into it' in busy['msg'], busy['output']
    finally:
        kill_when(run, lambda: True)
    # Killed; its job finishes afterwards: the chain's bitmap is cleared for a point never recorded.
    vm.qmp('job-resume', id=job_id)
    concluded = wait_for(lambda: [j for j in our_jobs(vm) if j['status'] == 'concluded'], 'the orphaned job')
    assert 'error' not in concluded[0]
    assert bitmaps(vm)['disk1'][name]['count'] < MIB
    chain_dir = dest / full['chain']
    recorded = sorted(os.listdir(str(chain_dir)))
    assert [n for n in recorded if n.endswith('.partial')]

    after = backup(vm, dest, devices=['vdb'])
    assert (after['mode'], after['chain'] != full['chain']) == ('full', True), after['output']
    assert 'was interrupted after writing files its manifest does not list' in after['chain_reset']['reason']
    assert 'an interrupted earlier run left files chain {0} does not list'.format(full['chain']) in after['output']
    assert sorted(os.listdir(str(chain_dir))) == [n for n in recorded if not n.endswith('.partial')]
    assert our_jobs(vm) == [] and our_nodes(vm) == []
    assert list(bitmaps(vm)['disk1']) == ['qemu-vm-' + after['chain']]

    # A full run killed while its job runs leaves a chain directory without a manifest.
    write_guest(vm, '/dev/vdb', 4, seek_mib=8)
    run, job_id = start_paused(vm, dict(args, mode='full'))
    kill_when(run, lambda: True)
    aborted = [n for n in os.listdir(str(dest)) if n not in (full['chain'], after['chain'])]
    assert len(aborted) == 1 and not os.path.exists(str(dest / aborted[0] / 'manifest.json'))
    assert 'qemu-vm-' + aborted[0] in bitmaps(vm)['disk1']
    # Check mode clears nothing: it sees vdb under the orphaned job's filter, and says so.
    checked = backup(vm, dest, check=True, devices=['vdb'])
    assert checked.failed and 'disk vdb: another backup job is copying it' in checked['msg'], checked['output']
    again = backup(vm, dest, devices=['vdb'])
    assert not again.failed, again['output']
    assert (again['mode'], again['chain']) == ('incremental', after['chain']), again['output']
    assert f'left chain {aborted[0]} without a manifest' in again['output']
    assert f'left backup jobs ({job_id}) and target nodes in QEMU: stopped and removed them' in again['output']
    assert not os.path.exists(str(dest / aborted[0]))
    assert our_jobs(vm) == [] and our_nodes(vm) == []
    assert list(bitmaps(vm)['disk1']) == ['qemu-vm-' + after['chain']]
    assert again['files'][0]['bytes'] > 4 * MIB  # what the guest wrote since `after`, copied once


def test_retention_and_info(shared_vm, tmp_path):
    vm = shared_vm
    chains = []
    for _round in range(3):
        result = backup(vm, tmp_path, mode='full', keep_chains=2)
        assert not result.failed, result['output']
        chains.append(result['chain'])
    assert result['removed_chains'] == [chains[0]]
    assert sorted(os.listdir(str(tmp_path))) == sorted(chains[1:])
    names = set(n for node in bitmaps(vm).values() for n in node)
    assert 'qemu-vm-' + chains[2] in names
    assert not names & {'qemu-vm-' + chains[0], 'qemu-vm-' + chains[1]}  # older chains' bitmaps removed

    info = run_module('qemu_backup_info', {'dest': str(tmp_path), 'qmp': vm.qmp_path})
    assert not info.failed, info['output']
    assert [c['chain'] for c in info['chains']] == chains[1:]
    older, newest = info['chains']
    assert (newest['valid'], newest['current'], newest['problem']) == (True, True, None)
    assert older['valid'] is False and 'newest' in older['problem']
    assert newest['bytes'] == sum(f['bytes'] for f in newest['points'][0]['files']) > 0
    assert info['total_bytes'] == older['bytes'] + newest['bytes']
    plain = run_module('qemu_backup_info', {'dest': str(tmp_path)})
    assert [c['valid'] for c in plain['chains']] == [None, None]


def kill_and_restart(vm):
    vm.proc.kill()
    vm.proc.wait()
    vm.start()


def test_after_sigkill_auto_starts_a_new_chain(vm_factory, tmp_path):
    vm = vm_factory(disks=[{'format': 'qcow2', 'size': '16M'}])
    dest = tmp_path / 'dest'
    dest.mkdir()
    first = backup(vm, dest)
    assert first['mode'] == 'full', first['output']
    # Killed before QEMU ever stored the new bitmap in the image: it is gone.
    kill_and_restart(vm)
    assert 'qemu-vm-' + first['chain'] not in bitmaps(vm)['disk0']
    second = backup(vm, dest)
    assert (second['mode'], second['chain'] != first['chain']) == ('full', True), second['output']
    assert 'bitmap qemu-vm-{0} missing'.format(first['chain']) in second['chain_reset']['reason']

    # A clean restart keeps the chain going (persistent bitmaps stored and loaded) ...
    vm.stop()
    vm.start()
    assert backup(vm, dest)['mode'] == 'incremental'
    # ... a SIGKILL with the stored bitmap in use leaves it inconsistent: never trusted again.
    kill_and_restart(vm)
    name = 'qemu-vm-' + second['chain']
    assert bitmaps(vm)['disk0'][name].get('inconsistent') is True
    info = run_module('qemu_backup_info', {'dest': str(dest), 'qmp': vm.qmp_path})
    assert info['chains'][-1]['valid'] is False and 'inconsistent' in info['chains'][-1]['problem']
    refused = backup(vm, dest, mode='incremental')
    assert refused.failed and 'inconsistent' in refused['msg']
    third = backup(vm, dest)
    assert not third.failed, third['output']
    assert third['mode'] == 'full' and third['chain'] not in (first['chain'], second['chain'])
    reason = third['chain_reset']['reason']
    assert f'bitmap {name}' in reason and 'inconsistent' in reason
    assert name not in bitmaps(vm)['disk0'] and name not in bitmaps(vm)['disk1']  # the untrustworthy bitmap is gone
    assert backup(vm, dest)['mode'] == 'incremental'
