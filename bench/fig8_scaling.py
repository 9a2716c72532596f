# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figure 8: how the cost of a backup grows with the data (issue 29).

For each size in SIZES_MIB, vdb of a harness VM holds that much allocated data (a 64 MiB random block
repeated: qcow2 neither compresses nor deduplicates, so the copy costs what fresh data costs) in a
qcow2 64 MiB larger. Every round, per size, in this order, each copy starting from a cold page cache
(`sync` and `echo 3 > /proc/sys/vm/drop_caches` before it, so neither side reads what the other left
in memory):
* the floor: `qemu-img convert -U -O qcow2` of the same image file into a new file, then `sync -f` of it;
* qemu_backup full (the module run directly, its own peak RSS read by os.wait4) into a new directory;
* 16 MiB written in the guest, then qemu_backup incremental;
* qemu_backup_restore of that latest point into a new qcow2;
* sha256 of the full backup's file, as the module takes it after the copy (page cache as it left it),
  to give the manifest's share of the full backup's time.
virtnbdbackup at 1 GiB is not part of this figure yet (figure 7 compares it at 128 MiB).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time

from registry import Figure, register  # pylint: disable=import-error
from report import row, samples  # pylint: disable=import-error
from tools import MIB, median, run_module_process  # pylint: disable=import-error

SIZES_MIB = (128, 1024, 4096)
BLOCK_MIB = 64
INCREMENT_MIB = 16
QEMU_IMG = shutil.which('qemu-img') or '/usr/bin/qemu-img'


def cold_cache():
    subprocess.run(['sync'], check=True)
    with open('/proc/sys/vm/drop_caches', 'w', encoding='ascii') as handle:
        handle.write('3\n')


def make_source(path, mib):
    """A qcow2 of mib + 64 MiB whose first mib MiB hold data (reused when present)."""
    if os.path.exists(path):
        return path
    raw = path + '.raw'
    block = os.urandom(BLOCK_MIB * MIB)
    with open(raw, 'wb') as handle:
        for _piece in range(mib // BLOCK_MIB):
            handle.write(block)
        handle.truncate((mib + 64) * MIB)
    subprocess.run([QEMU_IMG, 'convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, path], check=True)
    os.unlink(raw)
    return path


def floor_copy(source, target):
    if os.path.exists(target):
        os.unlink(target)
    cold_cache()
    started = time.perf_counter()
    subprocess.run([QEMU_IMG, 'convert', '-U', '-O', 'qcow2', source, target], check=True)
    subprocess.run(['sync', '-f', target], check=True)
    seconds = time.perf_counter() - started
    os.unlink(target)
    return seconds


def sha256_seconds(path):
    started = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(4 * MIB), b''):
            digest.update(chunk)
    return time.perf_counter() - started


def one_size(ctx, mib, fig, index):
    from harness.guest import VM  # pylint: disable=import-error,import-outside-toplevel

    workdir = os.path.join(ctx.output, f'fig8-{mib}')
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    source = make_source(os.path.join(ctx.output, f'fig8-source-{mib}.qcow2'), mib)
    vm = VM(os.path.join(workdir, 'vm'), name=f'bench-scale{mib}', memory=256, disks=[{'size': f'{mib + 64}M'}],
            images=ctx.images)
    shutil.copyfile(source, vm.disks[1]['path'])
    key = str(mib)
    try:
        vm.start(timeout=300)
        fig['floor_s'][key].append(floor_copy(vm.disks[1]['path'], os.path.join(workdir, 'floor.qcow2')))
        dest = os.path.join(workdir, 'dest')
        os.makedirs(dest, mode=0o700)
        common = {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'dest': dest, 'devices': ['vdb']}
        cold_cache()
        full, wall, rss = run_module_process('qemu_backup', dict(common, mode='full'), workdir=workdir)
        fig['full_ms'][key].append(full['duration_ms'])
        fig['full_wall_s'][key].append(wall)
        fig['full_rss_kib'][key].append(rss)
        fig['sha256_s'][key].append(sha256_seconds(full['files'][0]['path']))
        code, _out, err = vm.guest_exec(['/bin/sh', '-c', f'dd if=/dev/urandom of=/dev/vdb bs=1M count={INCREMENT_MIB} '
                                         f'seek={mib // 2} conv=fsync 2>/dev/null'], timeout=300)
        if code != 0:
            raise RuntimeError(f'writing in the guest failed: {err}')
        cold_cache()
        inc, _wall, _rss = run_module_process('qemu_backup', dict(common, mode='incremental'), workdir=workdir)
        fig['inc_ms'][key].append(inc['duration_ms'])
        target = os.path.join(workdir, 'restored.qcow2')
        cold_cache()
        restored, _wall, restore_rss = run_module_process(
            'qemu_backup_restore', {'dest': dest, 'device': 'vdb', 'target': target, 'force': True}, workdir=workdir)
        fig['restore_ms'][key].append(restored['duration_ms'])
        fig['restore_rss_kib'][key].append(restore_rss)
    finally:
        vm.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    ctx.log(f'fig 8 round {index + 1}/{ctx.rounds}, {mib} MiB: floor {fig["floor_s"][key][-1]:.1f} s, full '
            f'{fig["full_ms"][key][-1] / 1000:.1f} s (sha256 {fig["sha256_s"][key][-1]:.1f} s, RSS '
            f'{fig["full_rss_kib"][key][-1] / 1024:.0f} MiB), incremental {fig["inc_ms"][key][-1] / 1000:.1f} s, '
            f'restore {fig["restore_ms"][key][-1] / 1000:.1f} s')


def measure(ctx):
    keys = ('floor_s', 'full_ms', 'full_wall_s', 'full_rss_kib', 'sha256_s', 'inc_ms', 'restore_ms', 'restore_rss_kib')
    fig = {'sizes_mib': list(SIZES_MIB), 'increment_mib': INCREMENT_MIB}
    fig.update((k, {str(mib): [] for mib in SIZES_MIB}) for k in keys)
    for index in range(ctx.rounds):
        for mib in SIZES_MIB:
            one_size(ctx, mib, fig, index)
    for mib in SIZES_MIB:
        path = os.path.join(ctx.output, f'fig8-source-{mib}.qcow2')
        if os.path.exists(path):
            os.unlink(path)
    return fig


def _mbps(mib, seconds):
    return mib * MIB / 1e6 / seconds


def rows(fig):
    out = []
    per_gib = {}
    for mib in fig['sizes_mib']:
        key = str(mib)
        size = f'{mib >> 10} GiB' if mib >= 1024 else f'{mib} MiB'
        full_s = median(fig['full_ms'][key]) / 1000.0
        floor_s = median(fig['floor_s'][key])
        per_gib[mib] = full_s / (mib / 1024.0)
        out += [
            row(f'8full{key}', f'qemu_backup full, {size} allocated (MB/s of allocated data)', _mbps(mib, full_s), 'MB/s',
                'floor: qemu-img convert -U of the same image, fsynced, cold cache', _mbps(mib, floor_s),
                0.8 if mib >= 1024 else None, higher_is_better=True),
            row(f'8sha{key}', f'sha256 of the full backup, {size}: share of the full backup\'s time',
                median(fig['sha256_s'][key]) / full_s, '×', '-', None, ratio=False),
            row(f'8rss{key}', f'Peak RSS of qemu_backup full, {size}', median(fig['full_rss_kib'][key]) / 1024.0, 'MiB',
                '-', None, ratio=False),
            row(f'8inc{key}', f'qemu_backup incremental after {fig["increment_mib"]} MiB written, {size} disk',
                median(fig['inc_ms'][key]), 'ms', '-', None, ratio=False),
            row(f'8restore{key}', f'qemu_backup_restore of that point, {size}', median(fig['restore_ms'][key]), 'ms',
                '-', None, ratio=False),
        ]
    if 1024 in per_gib and 4096 in per_gib:
        out.append(row('8lin', 'qemu_backup full: time per GiB at 4 GiB', per_gib[4096], 's',
                       'time per GiB at 1 GiB', per_gib[1024], 1.1))
    return out


def details(fig):
    lines = ['Samples, in run order (per size):', '']
    for mib in fig['sizes_mib']:
        key = str(mib)
        lines.append(f'- {mib} MiB: floor s {samples(fig["floor_s"][key], "{0:.2f}")}; full ms {samples(fig["full_ms"][key])}; '
                     f'sha256 s {samples(fig["sha256_s"][key], "{0:.2f}")}; full RSS MiB '
                     f'{samples([v / 1024 for v in fig["full_rss_kib"][key]], "{0:.1f}")}; incremental ms '
                     f'{samples(fig["inc_ms"][key])}; restore ms {samples(fig["restore_ms"][key])}; restore RSS MiB '
                     f'{samples([v / 1024 for v in fig["restore_rss_kib"][key]], "{0:.1f}")}')
    return lines


register(Figure(8, 'how the cost of a backup grows with the data', measure, rows, details,
                rounds=lambda runs: 3 if runs >= 3 else runs))
