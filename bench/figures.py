# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measuring code shared by the figures (bench/fig<N>_*.py register them; see bench/registry.py).

Every figure function takes a started harness VM (or starts its own peer), runs `runs`
interleaved rounds and returns a dict of raw samples. No assertions on times here: a figure
that misses its target is reported, not failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import subprocess
import tempfile
import time

from harness.ansible import BIN, REPO, ansible_env, run_playbook  # pylint: disable=import-error
from tools import (
    DOWNTIME_MS,
    FROZEN_MS,
    MIB,
    AgentTap,
    HostAgent,
    random_file,
    run_module_process,
)

from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import MAX_FILE_CHUNK, QGASession
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession, stopped_ms

#: guest-file-write's largest chunk: the agent refuses JSON tokens over 64 MiB, and a full
#: 48 MiB chunk is exactly 64 MiB of base64 (see _guest_file.MAX_WRITE_CHUNK).
MAX_WRITE = MAX_FILE_CHUNK - 4096
GUEST_DIR = '/tmp/bench'


def log(message):
    print('[bench {0}] {1}'.format(time.strftime('%H:%M:%S'), message), flush=True)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(8 * MIB), b''):
            digest.update(block)
    return digest.hexdigest()


def _rotate(items, index):
    index %= len(items)
    return items[index:] + items[:index]


# -- figure 1: frozen window ---------------------------------------------------------------------------


def snapshot_names(vm):
    names = set()
    for node in vm.qmp('query-named-block-nodes', flat=True):
        for snap in (node.get('image') or {}).get('snapshots', []) or []:
            names.add(snap['name'])
    return sorted(names)


def delete_snapshots(vm):
    for name in snapshot_names(vm):
        vm.qmp('human-monitor-command', **{'command-line': f'delvm "{name}"'})


def floor_freeze(vm, qga_path, tag):
    """The floor: freeze, snapshot-save job, thaw over sockets opened beforehand.

    Returns (ms from the freeze reply to the thaw reply as this script saw them, ms the
    VM was stopped for the save from QEMU's STOP/RESUME events).
    """
    job = f'bench-floor-{tag}'

    def concluded(event):
        data = event.get('data', {})
        return data.get('id') == job and data.get('status') == 'concluded'

    with QMPSession(vm.qmp_path, timeout=120) as qmp, QGASession(qga_path, timeout=120) as qga:
        with qmp.events('JOB_STATUS_CHANGE', 'STOP', 'RESUME') as watcher:
            qga.execute('guest-fsfreeze-freeze')
            frozen = time.perf_counter()
            try:
                qmp.execute('snapshot-save', {'job-id': job, 'tag': tag, 'vmstate': 'disk0', 'devices': ['disk0']})
                watcher.wait(concluded, 120, what='snapshot-save')
            finally:
                qga.execute('guest-fsfreeze-thaw')
                thawed = time.perf_counter()
            downtime = stopped_ms(watcher.seen)
        errors = [j.get('error') for j in qmp.execute('query-jobs') if j.get('id') == job and j.get('error')]
        qmp.execute('job-dismiss', {'id': job})
    if errors:
        raise RuntimeError(f'floor snapshot-save failed: {errors[0]}')
    return (thawed - frozen) * 1000.0, downtime


def _freeze_status(vm):
    return vm.qga('guest-fsfreeze-status')


def frozen_window(vm, runs, workdir):
    """Figure 1: the backup role's frozen_ms vs the floor script and the naive three-task play."""
    tap_dir = tempfile.mkdtemp(prefix='qvm-tap-')
    tap = AgentTap(vm.qga_path, os.path.join(tap_dir, 'qga.sock')).start()
    samples = {'role_frozen_ms': [], 'role_downtime_ms': [], 'role_tap_ms': [], 'role_wall_s': [], 'floor_ms': [],
               'floor_downtime_ms': [], 'floor_tap_ms': [], 'naive_tap_ms': [], 'naive_wall_s': []}

    def floor(index):
        tap.reset()
        window, downtime = floor_freeze(vm, tap.path, f'bench-floor-{index}')
        samples['floor_ms'].append(window)
        samples['floor_downtime_ms'].append(downtime)
        samples['floor_tap_ms'].append(tap.window_ms())

    def role(index):
        tap.reset()
        started = time.perf_counter()
        proc = run_playbook(os.path.join(REPO, 'playbooks', 'backup.yml'), {
            'backup_qmp': vm.qmp_path, 'backup_qga': tap.path, 'backup_name': 'bench',
            'backup_quiesce': 'required', 'backup_prefix': f'bench-role-{index}-'})
        samples['role_wall_s'].append(time.perf_counter() - started)
        found = FROZEN_MS.findall(proc.stdout)
        downtime = DOWNTIME_MS.findall(proc.stdout)
        if proc.returncode != 0 or len(found) != 1 or len(downtime) != 1:
            raise RuntimeError(f'playbooks/backup.yml failed (rc={proc.returncode}):\n{proc.stdout[-4000:]}')
        samples['role_frozen_ms'].append(int(found[0]))
        samples['role_downtime_ms'].append(int(downtime[0]))
        samples['role_tap_ms'].append(tap.window_ms())

    def naive(index):
        tap.reset()
        started = time.perf_counter()
        proc = run_playbook(os.path.join(REPO, 'bench', 'naive-freeze.yml'), {
            'bench_qmp': vm.qmp_path, 'bench_qga': tap.path, 'bench_tag': f'bench-naive-{index}'})
        samples['naive_wall_s'].append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise RuntimeError(f'bench/naive-freeze.yml failed (rc={proc.returncode}):\n{proc.stdout[-4000:]}')
        samples['naive_tap_ms'].append(tap.window_ms())

    try:
        # Warm-up (not counted): the first save into a fresh overlay allocates its snapshot area.
        floor_freeze(vm, vm.qga_path, 'bench-warmup')
        delete_snapshots(vm)
        for index in range(runs):
            for method in _rotate([floor, role, naive], index):
                method(index)
                delete_snapshots(vm)
                if _freeze_status(vm) != 'thawed':
                    raise RuntimeError(f'the guest was left frozen by the {method.__name__} run')
            log('fig 1 round {0}/{1}: floor {2:.0f} ms, role frozen_ms {3} (tap {4:.0f} ms), naive {5:.0f} ms'.format(
                index + 1, runs, samples['floor_tap_ms'][-1], samples['role_frozen_ms'][-1],
                samples['role_tap_ms'][-1], samples['naive_tap_ms'][-1]))
    finally:
        tap.stop()
        shutil.rmtree(tap_dir, ignore_errors=True)
    return samples


# -- figure 2: throughput --------------------------------------------------------------------------------


def guest_scratch(vm, size_mib):
    """A tmpfs of `size_mib` MiB at GUEST_DIR in the guest (the guest's / is a RAM disk with no room limit set)."""
    code, _out, err = vm.guest_exec(['sh', '-c', f'mkdir -p {GUEST_DIR} && (mountpoint -q {GUEST_DIR} || mount -t tmpfs -o size={size_mib}m '
                                                 f'tmpfs {GUEST_DIR})'])
    if code != 0:
        raise RuntimeError(f'cannot mount a tmpfs at {GUEST_DIR} in the guest: {err}')


def guest_rm(vm, *paths):
    vm.guest_exec(['rm', '-f', '--'] + list(paths))


def floor_put(qga, path, data, chunk):
    """Bare guest-file-write loop: open, chunks of `chunk` bytes, close. MB/s (10**6 B/s)."""
    view = memoryview(data)
    started = time.perf_counter()
    handle = qga.execute('guest-file-open', {'path': path, 'mode': 'wb'})
    for offset in range(0, len(data), chunk):
        text = binascii.b2a_base64(view[offset:offset + chunk], newline=False).decode('ascii')
        qga.execute('guest-file-write', {'handle': handle, 'buf-b64': text})
    qga.execute('guest-file-close', {'handle': handle})
    return len(data) / 1e6 / (time.perf_counter() - started)


def floor_get(qga, path, chunk, expected):
    """Bare guest-file-read loop until EOF, each reply decoded. MB/s (10**6 B/s)."""
    size = 0
    started = time.perf_counter()
    handle = qga.execute('guest-file-open', {'path': path, 'mode': 'rb'})
    while True:
        reply = qga.execute('guest-file-read', {'handle': handle, 'count': chunk})
        size += len(base64.b64decode(reply['buf-b64']))
        if reply.get('eof') or not reply.get('count'):
            break
    qga.execute('guest-file-close', {'handle': handle})
    elapsed = time.perf_counter() - started
    if size != expected:
        raise RuntimeError(f'floor read {size} bytes of {path}, expected {expected}')
    return size / 1e6 / elapsed


# -- figure 3: peak RSS ---------------------------------------------------------------------------------------


def peak_rss(workdir, size=1024 * MIB, vm=None):
    """Figure 3: peak RSS of the module process putting and fetching a `size` file.

    The peer is qemu-ga running natively on this host (HostAgent) unless `vm` is given:
    the TCG guest's agent takes ~12 minutes to parse a 1 GiB put (see results.md).
    """
    src = random_file(os.path.join(workdir, 'random-1g.bin'), size)
    src_sum = _sha256(src)
    dest = os.path.join(workdir, 'fetched-1g.bin')
    agent = None
    agent_dir = None
    if vm is None:
        agent_dir = tempfile.mkdtemp(prefix='qvm-ga-')
        agent = HostAgent(agent_dir).start()
        qga, path, peer = agent.socket, os.path.join(agent.files, 'big'), 'qemu-ga on the host'
    else:
        guest_scratch(vm, 1200)
        qga, path, peer = vm.qga_path, GUEST_DIR + '/big', 'qemu-ga in the TCG guest'
    samples = {'size': size, 'peer': peer}
    try:
        result, wall, rss = run_module_process('qemu_guest_file', {
            'qga': qga, 'path': path, 'src': src, 'remote_src': True})
        if result.get('checksum') != src_sum:
            raise RuntimeError(f'the 1 GiB put wrote something else: {result}')
        samples.update(put_rss_kib=rss, put_wall_s=wall, put_mbps=result['mb_per_s'])
        log('fig 3 put {0} MiB: peak RSS {1:.1f} MiB, {2:.1f} MB/s'.format(size // MIB, rss / 1024.0, result['mb_per_s']))
        result, wall, rss = run_module_process('qemu_guest_file', {
            'qga': qga, 'path': path, 'state': 'fetched', 'dest': dest})
        if result.get('checksum') != src_sum or _sha256(dest) != src_sum:
            raise RuntimeError(f'the 1 GiB get fetched something else: {result}')
        samples.update(get_rss_kib=rss, get_wall_s=wall, get_mbps=result['mb_per_s'])
        log('fig 3 get {0} MiB: peak RSS {1:.1f} MiB, {2:.1f} MB/s'.format(size // MIB, rss / 1024.0, result['mb_per_s']))
    finally:
        if os.path.exists(dest):
            os.unlink(dest)
        if agent is not None:
            agent.stop()
            shutil.rmtree(agent_dir, ignore_errors=True)
        elif vm is not None:
            guest_rm(vm, path)
    return samples


# -- figure 4: per-task overhead ----------------------------------------------------------------------------------


def _adhoc(module, args):
    argv = [os.path.join(BIN, 'ansible'), 'localhost', '-i', 'localhost,', '-c', 'local', '-m', module]
    if args:
        argv += ['-a', args]
    started = time.perf_counter()
    proc = subprocess.run(argv, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not ('SUCCESS' in proc.stdout or 'CHANGED' in proc.stdout):
        raise RuntimeError(f'ansible -m {module} failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}')
    return wall
