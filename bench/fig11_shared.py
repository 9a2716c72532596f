# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figure 11: the VM's monitor shared during a long backup (issue 26).

A data disk (vdb) whose reads QEMU throttles to 1 MiB/s holds FILLED_MIB of random data, so a full
qemu_backup of it copies for about a minute. Every round backs it up twice into new directories, in
alternating order: once alone, and once while a second QMP client (a fresh connection each second to
the same qmp.sock the module uses: greeting, qmp_capabilities, query-status) measures how long its
answer takes. Before issue 26 the module kept the socket for the whole copy: the second client got no
greeting until the backup ended.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time

from harness.ansible import BIN, ansible_env  # pylint: disable=import-error
from harness.guest import qmp_command  # pylint: disable=import-error
from registry import Figure, register  # pylint: disable=import-error
from report import paired, row, samples  # pylint: disable=import-error
from tools import MIB, median  # pylint: disable=import-error

FILLED_MIB = 60
SAMPLE_EVERY = 1.0
ASK_TIMEOUT = 120.0
VM_SPEC = {'memory': 256, 'disks': [{'format': 'qcow2', 'size': f'{FILLED_MIB + 4}M', 'read_bps': MIB}]}


def p95(values):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else None


def start_backup(vm, dest):
    args = {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'dest': dest, 'devices': ['vdb'], 'quiesce': 'required'}
    argv = [os.path.join(BIN, 'ansible'), 'localhost', '-i', 'localhost,', '-c', 'local', '-o', '-m',
            'qemu.vm.qemu_backup', '-a', json.dumps(args)]
    return subprocess.Popen(argv, env=ansible_env({'ANSIBLE_DEPRECATION_WARNINGS': 'False'}),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(run, started):
    out = run.communicate()[0]
    wall = time.perf_counter() - started
    for line in out.splitlines():
        if line.startswith('localhost | ') and ' => ' in line:
            result = json.loads(line.split(' => ', 1)[1])
            if run.returncode == 0 and not result.get('failed') and result.get('changed'):
                return result, wall
    raise RuntimeError(f'qemu_backup failed (rc={run.returncode}): {out[-2000:]}')


def backup(vm, dest, ask):
    """One full backup into `dest`; with `ask`, query-status latencies (ms) sampled meanwhile."""
    os.makedirs(dest, mode=0o700)
    latencies = []
    started = time.perf_counter()
    run = start_backup(vm, dest)
    try:
        tick = started
        while ask and run.poll() is None:
            asked = time.perf_counter()
            status = qmp_command(vm.qmp_path, 'query-status', timeout=ASK_TIMEOUT)
            if run.poll() is None:  # an answer after the backup ended says nothing about sharing
                latencies.append((time.perf_counter() - asked) * 1000.0)
            assert status['status'] in ('running', 'paused'), status
            tick += SAMPLE_EVERY
            time.sleep(max(0.0, tick - time.perf_counter()))
        result, wall = finish(run, started)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    shutil.rmtree(dest)
    return {'duration_ms': result['duration_ms'], 'wall_s': wall, 'frozen_ms': result.get('frozen_ms'),
            'latencies_ms': latencies}


def measure(ctx):
    vm = ctx.vm('shared', VM_SPEC)
    code, _out, err = vm.guest_exec(['sh', '-c', f'dd if=/dev/urandom of=/dev/vdb bs=1M count={FILLED_MIB} conv=fsync'],
                                    timeout=600)
    if code != 0:
        raise RuntimeError(f'filling vdb failed: {err}')
    fig = {'filled_mib': FILLED_MIB, 'read_bps': MIB, 'alone': [], 'shared': []}
    for index in range(ctx.rounds):
        order = ('alone', 'shared') if index % 2 == 0 else ('shared', 'alone')
        for kind in order:
            sample = backup(vm, os.path.join(ctx.output, f'fig11-{index}-{kind}'), ask=kind == 'shared')
            fig[kind].append(sample)
            ctx.log(f'fig 11 round {index + 1}/{ctx.rounds} {kind}: backup {sample["duration_ms"] / 1000:.1f} s'
                    + (f', {len(sample["latencies_ms"])} answers, p95 {p95(sample["latencies_ms"]):.0f} ms'
                       if kind == 'shared' else ''))
    return fig


def _all_latencies(fig):
    return [ms for sample in fig['shared'] for ms in sample['latencies_ms']]


def _durations(fig, kind):
    return [sample['duration_ms'] for sample in fig[kind]]


def rows(fig):
    latencies = _all_latencies(fig)
    return [
        row('11p95', f'Second QMP client during a {fig["filled_mib"]} s backup: query-status latency, p95',
            p95(latencies), 'ms', '-', None, 1000, ratio=False),
        row('11max', 'Second QMP client during the backup: query-status latency, max', max(latencies), 'ms',
            '-', None, ratio=False),
        row('11time', 'qemu_backup full of the throttled disk with the second client asking (`duration_ms`)',
            median(_durations(fig, 'shared')), 'ms', 'the same backup alone', median(_durations(fig, 'alone')), 1.1),
    ]


def details(fig):
    lines = [f'Disk: vdb, {fig["filled_mib"]} MiB of random data, reads throttled to 1 MiB/s; full backups, quiesced.',
             '', 'Samples, in run order:', '']
    for index, sample in enumerate(fig['shared']):
        lines.append(f'- round {index + 1}, latencies (ms): {samples(sample["latencies_ms"])}')
    lines += [
        '- backup `duration_ms` alone: {0}; with the second client: {1}'.format(
            samples(_durations(fig, 'alone')), samples(_durations(fig, 'shared'))),
        '- shared/alone per round: {0}'.format(samples(paired(_durations(fig, 'shared'), _durations(fig, 'alone')), '{0:.3f}')),
        '- frozen_ms alone: {0}; shared: {1}'.format(
            samples([s['frozen_ms'] or 0 for s in fig['alone']]), samples([s['frozen_ms'] or 0 for s in fig['shared']])),
    ]
    return lines


register(Figure(11, 'the monitor shared during a long backup', measure, rows, details,
                vms={'shared': VM_SPEC}, rounds=lambda runs: 2 if runs > 1 else 1))
