# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figure 7: external backups, qemu.vm.qemu_backup against qemu-img convert and virtnbdbackup (issue 18).

One data disk (DISK_MIB virtual, FILLED_MIB of random data) is copied twice: it is vdb of a harness
VM (backed up by our modules, ad hoc, as a user runs them) and vdb of the libvirt domain of the same
guest (backed up by virtnbdbackup through libvirtd). Every round, on both sides: a full backup, then
for each of WRITES the same megabytes written into vdb inside the guest and an incremental backup,
then a restore of the latest point. Our side adds the floor (qemu-img convert of the same disk) and
the frozen windows of a quiesced disk-only snapshot and a RAM snapshot of the same VM.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from datetime import datetime

from fig6_connection import install_anchors
from harness.ansible import BIN, ansible_env  # pylint: disable=import-error
from libvirt_guest import LibvirtGuest, virsh
from tools import MIB, median

DISK_MIB = 256
FILLED_MIB = 128
WRITES = (1, 4, 16)
DEVICE = 'vdb'
QEMU_IMG = shutil.which('qemu-img') or '/usr/bin/qemu-img'


def adhoc(module, args):
    """`ansible localhost -m module -a <json> -o`: (result dict, wall seconds of the whole process)."""
    argv = [os.path.join(BIN, 'ansible'), 'localhost', '-i', 'localhost,', '-c', 'local', '-o', '-m', module,
            '-a', json.dumps(args)]
    started = time.perf_counter()
    proc = subprocess.run(argv, env=ansible_env({'ANSIBLE_DEPRECATION_WARNINGS': 'False'}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    wall = time.perf_counter() - started
    result = {'failed': True, 'msg': proc.stdout[-2000:]}
    for line in proc.stdout.splitlines():
        if line.startswith('localhost | ') and ' => ' in line:
            try:
                result = json.loads(line.split(' => ', 1)[1])
            except ValueError:
                pass
    if proc.returncode != 0 or result.get('failed'):
        raise RuntimeError('{0} failed (rc={1}): {2}'.format(module, proc.returncode, result.get('msg')))
    return result, wall


def timed(argv, **kwargs):
    started = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError('{0} failed (rc={1}): {2}'.format(' '.join(argv), proc.returncode, proc.stdout[-2000:]))
    return time.perf_counter() - started


def make_disk(path):
    """A qcow2 of DISK_MIB with FILLED_MIB of random data at its start (reused when present)."""
    if os.path.exists(path):
        return path
    raw = path + '.raw'
    with open(raw, 'wb') as handle:
        for _piece in range(FILLED_MIB // 8):
            handle.write(os.urandom(8 * MIB))
        handle.truncate(DISK_MIB * MIB)
    subprocess.run([QEMU_IMG, 'convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, path], check=True)
    os.unlink(raw)
    return path


def dir_bytes(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def write_command(mib, step):
    # Fresh random data at a different place each step, flushed to the disk before the backup.
    return f'dd if=/dev/urandom of=/dev/{DEVICE} bs=1M count={mib} seek={FILLED_MIB + 4 + 20 * step} 2>/dev/null && sync'


def libvirt_exec(domain, command, timeout=120):
    """Run `sh -c command` in the libvirt domain through its agent (virsh qemu-agent-command)."""
    request = {'execute': 'guest-exec', 'arguments': {'path': '/bin/sh', 'arg': ['-c', command],
                                                      'capture-output': True}}
    pid = json.loads(virsh('qemu-agent-command', domain, json.dumps(request)))['return']['pid']
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = json.loads(virsh('qemu-agent-command', domain, json.dumps(
            {'execute': 'guest-exec-status', 'arguments': {'pid': pid}})))['return']
        if status.get('exited'):
            if status.get('exitcode'):
                raise RuntimeError('{0!r} failed in {1}: {2}'.format(command, domain, base64.b64decode(
                    status.get('err-data', '')).decode('utf-8', 'replace')))
            return
        time.sleep(0.05)
    raise RuntimeError(f'{command!r} did not finish in {timeout} s in {domain}')


class AgentLog:
    """libvirtd's agent debug log (virt-admin, no restart): freeze reply to thaw reply, as libvirtd saw them."""

    STAMP = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})')

    def __init__(self, path):
        self.path = path

    def start(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        subprocess.run(['virt-admin', 'daemon-log-filters', '1:qemu.qemu_agent'], check=True, stdout=subprocess.PIPE)
        subprocess.run(['virt-admin', 'daemon-log-outputs', '1:file:' + self.path], check=True, stdout=subprocess.PIPE)

    @staticmethod
    def stop():
        subprocess.run(['virt-admin', 'daemon-log-filters', ''], check=False, stdout=subprocess.PIPE)
        subprocess.run(['virt-admin', 'daemon-log-outputs', '3:stderr'], check=False, stdout=subprocess.PIPE)

    def windows_ms(self):
        """Every freeze → thaw window in the log so far: the first reply line after each command sent."""
        out, frozen_at, waiting = [], None, None
        if not os.path.exists(self.path):
            return out
        with open(self.path, errors='replace') as handle:
            for line in handle:
                match = self.STAMP.match(line)
                if not match:
                    continue
                if 'Send command' in line and 'guest-fsfreeze-freeze' in line:
                    waiting = 'freeze'
                elif 'Send command' in line and 'guest-fsfreeze-thaw' in line:
                    waiting = 'thaw'
                elif waiting and 'Line [' in line and '"return"' in line:
                    stamp = datetime.strptime(match.group(1), '%Y-%m-%d %H:%M:%S.%f').timestamp()
                    if waiting == 'freeze':
                        frozen_at = stamp
                    elif frozen_at is not None:
                        out.append((stamp - frozen_at) * 1000.0)
                        frozen_at = None
                    waiting = None
        return out


def _add(fig, key, value):
    fig.setdefault(key, []).append(value)


def ours_round(fig, vm, disk, workdir, index):
    dest = os.path.join(workdir, 'ours', str(index))
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    common = {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'dest': dest, 'devices': [DEVICE], 'quiesce': 'required'}
    floor = os.path.join(workdir, 'floor.qcow2')
    if os.path.exists(floor):
        os.unlink(floor)
    seconds = timed([QEMU_IMG, 'convert', '-U', '-O', 'qcow2', disk, floor])
    _add(fig, 'floor_mbps', os.path.getsize(floor) / 1e6 / seconds)
    steps = [('full', 'full', None)] + [(f'inc{mib}', 'incremental', mib) for mib in WRITES]
    for step, (key, mode, mib) in enumerate(steps):
        if mib:
            code, _out, err = vm.guest_exec(['/bin/sh', '-c', write_command(mib, step - 1)], timeout=120)
            if code != 0:
                raise RuntimeError(f'writing {mib} MiB in the guest failed: {err}')
        result, wall = adhoc('qemu.vm.qemu_backup', dict(common, mode=mode))
        for name in ('duration_ms', 'bytes_written', 'frozen_ms', 'mb_per_s'):
            _add(fig, f'ours_{key}_{name}', result[name])
        _add(fig, f'ours_{key}_wall_s', wall)
    target = os.path.join(workdir, 'restored-ours.qcow2')
    restore = {'dest': dest, 'device': DEVICE, 'target': target, 'force': True}
    result, wall = adhoc('qemu.vm.qemu_backup_restore', restore)
    _add(fig, 'ours_restore_duration_ms', result['duration_ms'])
    _add(fig, 'ours_restore_wall_s', wall)
    for ram in (False, True):
        name = 'bench7-{0}'.format('ram' if ram else 'disk')
        snap = {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'name': name, 'quiesce': 'required', 'ram': ram,
                'devices': ['disk0']}
        result, _wall = adhoc('qemu.vm.qemu_snapshot', snap)
        _add(fig, 'snapshot_{0}_frozen_ms'.format('ram' if ram else 'disk'), result['frozen_ms'])
        adhoc('qemu.vm.qemu_snapshot', {'qmp': vm.qmp_path, 'name': name, 'state': 'absent', 'devices': ['disk0']})


def theirs_round(fig, domain, workdir, index, agent_log):
    out = os.path.join(workdir, 'theirs', str(index))
    shutil.rmtree(out, ignore_errors=True)
    seen = len(agent_log.windows_ms())
    base = ['virtnbdbackup', '-d', domain.name, '-o', out, '-i', DEVICE, '-n']
    steps = [('full', 'full', None)] + [(f'inc{mib}', 'inc', mib) for mib in WRITES]
    for step, (key, level, mib) in enumerate(steps):
        if mib:
            libvirt_exec(domain.name, write_command(mib, step - 1))
        before = dir_bytes(out) if os.path.isdir(out) else 0
        data_before = _data_bytes(out)
        _add(fig, f'vnb_{key}_wall_s', timed(base + ['-l', level]))
        _add(fig, f'vnb_{key}_bytes', dir_bytes(out) - before)
        _add(fig, f'vnb_{key}_data_bytes', _data_bytes(out) - data_before)
    restored = os.path.join(workdir, 'restored-theirs')
    shutil.rmtree(restored, ignore_errors=True)
    _add(fig, 'vnb_restore_wall_s', timed(['virtnbdrestore', '-i', out, '-o', restored, '-d', DEVICE, '-n']))
    windows = agent_log.windows_ms()[seen:]
    fig.setdefault('vnb_frozen_ms', []).extend(windows)


def _theirs(fig, domain, workdir, index, agent_log):
    """virtnbdbackup's round; a failure is recorded (the figure says why) and ends that side."""
    if fig.get('vnb_failure'):
        return
    try:
        theirs_round(fig, domain, workdir, index, agent_log)
    except (RuntimeError, OSError, ValueError) as exc:
        fig['vnb_failure'] = str(exc)[-1500:]
        for key in [k for k in fig if k.startswith('vnb_') and k != 'vnb_failure']:
            del fig[key]


def _data_bytes(path):
    if not os.path.isdir(path):
        return 0
    return sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path) if '.data' in name)


def measure(ctx):
    try:
        install_anchors(ctx.log)
    except (RuntimeError, OSError) as exc:
        return {'anchor_failure': str(exc)[-1500:]}
    from harness.guest import VM  # pylint: disable=import-error,import-outside-toplevel

    workdir = os.path.join(ctx.output, 'fig7')
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    source = make_disk(os.path.join(ctx.output, 'fig7-source.qcow2'))
    vm = VM(os.path.join(workdir, 'harness'), name='bench-backup', memory=256, disks=[{'size': '256M'}],
            images=ctx.images)
    shutil.copyfile(source, vm.disks[1]['path'])
    theirs_disk = os.path.join(workdir, 'libvirt-vdb.qcow2')
    shutil.copyfile(source, theirs_disk)
    domain = LibvirtGuest('qemu-vm-bench7', os.path.join(workdir, 'libvirt'), ctx.images, memory=256, python=False,
                          disks=[(theirs_disk, 'qcow2', False)])
    agent_log = AgentLog(os.path.join(workdir, 'libvirtd-agent.log'))
    fig = {'disk_mib': DISK_MIB, 'filled_mib': FILLED_MIB}
    try:
        domain.start(wait=False)
        vm.start(timeout=300)
        domain.wait_agent(300)
        agent_log.start()
        for index in range(ctx.rounds):
            sides = [lambda: ours_round(fig, vm, vm.disks[1]['path'], workdir, index),
                     lambda: _theirs(fig, domain, workdir, index, agent_log)]
            for side in sides if index % 2 == 0 else sides[::-1]:
                side()
            ctx.log('fig 7 round {0}/{1}: full ours {2} ms (wall {3:.1f} s) vs virtnbdbackup {4} s; floor '
                    '{5:.0f} MB/s, ours {6:.0f} MB/s'.format(
                        index + 1, ctx.rounds, fig['ours_full_duration_ms'][-1], fig['ours_full_wall_s'][-1],
                        (fig.get('vnb_full_wall_s') or [None])[-1], fig['floor_mbps'][-1],
                        fig['ours_full_mb_per_s'][-1]))
    finally:
        agent_log.stop()
        vm.stop()
        domain.destroy()
    fig['virtnbdbackup'] = subprocess.run(['virtnbdbackup', '-V'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True, check=False).stdout.strip()
    return fig


def _inc_total(fig, prefix, metric):
    """Per round, the sum over the incremental steps."""
    series = [fig[f'{prefix}_inc{mib}_{metric}'] for mib in WRITES]
    return [sum(values) for values in zip(*series)]


def rows(fig):
    from report import row  # pylint: disable=import-error,import-outside-toplevel
    if fig.get('anchor_failure'):
        return [row('7', 'External backup (not measured: the anchor could not run)', None, 's',
                    fig['anchor_failure'].strip().splitlines()[-1][:200], None)]
    out = [row('7full', 'qemu_backup full, {0} MiB allocated (its `mb_per_s`)'.format(fig['filled_mib']),
               median(fig['ours_full_mb_per_s']), 'MB/s', 'floor: qemu-img convert of the same disk',
               median(fig['floor_mbps']), 0.8, higher_is_better=True)]
    for mib in WRITES:
        out.append(row(f'7inc{mib}', f'qemu_backup incremental after {mib} MiB written: bytes written',
                       median(fig[f'ours_inc{mib}_bytes_written']) / MIB, 'MiB', 'bytes changed in the guest',
                       float(mib), 1.5))
    ram = median(fig['snapshot_ram_frozen_ms'])
    out.append(row('7frz', 'Frozen window, quiesced qemu_backup (`frozen_ms`)', median(fig['ours_full_frozen_ms']), 'ms',
                   'qemu_snapshot with RAM state, same VM', ram, 0.2))
    out.append(row('7frzdisk', 'Frozen window, quiesced disk-only qemu_snapshot (`ram: false`)',
                   median(fig['snapshot_disk_frozen_ms']), 'ms', 'qemu_snapshot with RAM state, same VM', ram, 0.2))
    vnb = 'virtnbdbackup, same disk under libvirt'
    if fig.get('vnb_failure'):
        out.append(row('7v', 'Against virtnbdbackup (not measured: it failed here)', None, 's',
                       fig['vnb_failure'].strip().splitlines()[-1][:200], None))
        return out
    for key, label in (('full', 'full'), ('inc', 'three incrementals'), ('restore', 'restore')):
        if key == 'inc':
            ours_ms, ours_wall, theirs = (_inc_total(fig, 'ours', 'duration_ms'), _inc_total(fig, 'ours', 'wall_s'),
                                          _inc_total(fig, 'vnb', 'wall_s'))
        else:
            ours_ms, ours_wall = fig[f'ours_{key}_duration_ms'], fig[f'ours_{key}_wall_s']
            theirs = fig[f'vnb_{key}_wall_s']
        out.append(row('7v' + key, 'qemu_backup{0} {1}: module `duration_ms`'.format(
            '_restore' if key == 'restore' else '', label), median(ours_ms) / 1000.0, 's', vnb + ' (wall)',
            median(theirs), 0.7))
        out.append(row(f'7v{key}w', 'qemu_backup{0} {1}: whole ad-hoc `ansible` process'.format(
            '_restore' if key == 'restore' else '', label), median(ours_wall), 's', vnb + ' (wall)', median(theirs), 1.5))
    if fig.get('vnb_frozen_ms'):
        steps = ['full'] + [f'inc{m}' for m in WRITES]
        ours_all = [v for key in steps for v in fig[f'ours_{key}_frozen_ms']]
        out.append(row('7vfrz', 'Frozen window, quiesced qemu_backup, every step (`frozen_ms`)', median(ours_all), 'ms',
                       vnb + ' (libvirtd agent log, every step)', median(fig['vnb_frozen_ms']), 0.5))
        theirs_full = fig['vnb_frozen_ms'][0::len(steps)]
        if len(fig['vnb_frozen_ms']) == len(steps) * len(fig['ours_full_frozen_ms']):
            out.append(row('7vfrzfull', 'Frozen window, quiesced qemu_backup, full points only',
                           median(fig['ours_full_frozen_ms']), 'ms', vnb + ' (full points only)',
                           median(theirs_full), 0.5))
    out.append(row('7vbytes', 'Bytes written, full backup', median(fig['ours_full_bytes_written']) / MIB, 'MiB',
                   vnb + ' (all files of the step)', median(fig['vnb_full_bytes']) / MIB, 1.0))
    out.append(row('7vbytesinc', 'Bytes written, three incrementals', median(_inc_total(fig, 'ours', 'bytes_written'))
                   / MIB, 'MiB', vnb + ' (all files of the steps)', median(_inc_total(fig, 'vnb', 'bytes')) / MIB, 1.0))
    return out


def details(fig):
    from report import samples  # pylint: disable=import-error,import-outside-toplevel
    if fig.get('anchor_failure'):
        return ['The anchor could not run here; bench/anchors.sh or the libvirt domain failed with:', '',
                '```', fig['anchor_failure'].strip(), '```']

    def mib(values):
        return samples([v / MIB for v in values], '{0:.2f}')

    out = ['Disk: {0} MiB qcow2, {1} MiB of random data; {2}. Samples in run order:'.format(
        fig['disk_mib'], fig['filled_mib'], fig.get('virtnbdbackup')), '',
        '- floor (qemu-img convert -U) MB/s: {0}; qemu_backup full `mb_per_s`: {1}'.format(
            samples(fig['floor_mbps']), samples(fig['ours_full_mb_per_s']))]
    if fig.get('vnb_failure'):
        out += ['- virtnbdbackup failed here:', '', '```', fig['vnb_failure'].strip(), '```', '']
    for key in ['full'] + [f'inc{m}' for m in WRITES]:
        if fig.get('vnb_failure'):
            out.append('- {0}: qemu_backup `duration_ms` {1}, ad-hoc wall {2} s, MiB written {3}, `frozen_ms` {4}'.format(
                key, samples(fig[f'ours_{key}_duration_ms']), samples(fig[f'ours_{key}_wall_s'], '{0:.1f}'),
                mib(fig[f'ours_{key}_bytes_written']), samples(fig[f'ours_{key}_frozen_ms'])))
            continue
        out.append('- {0}: qemu_backup `duration_ms` {1}, ad-hoc wall {2} s, MiB written {3}, `frozen_ms` {4}; '
                   'virtnbdbackup wall {5} s, MiB written {6} (data files {7})'.format(
                       key, samples(fig[f'ours_{key}_duration_ms']),
                       samples(fig[f'ours_{key}_wall_s'], '{0:.1f}'),
                       mib(fig[f'ours_{key}_bytes_written']), samples(fig[f'ours_{key}_frozen_ms']),
                       samples(fig[f'vnb_{key}_wall_s'], '{0:.1f}'), mib(fig[f'vnb_{key}_bytes']),
                       mib(fig[f'vnb_{key}_data_bytes'])))
    out += ['- restore: qemu_backup_restore `duration_ms` {0}, ad-hoc wall {1} s; virtnbdrestore wall {2} s'.format(
        samples(fig['ours_restore_duration_ms']), samples(fig['ours_restore_wall_s'], '{0:.1f}'),
        samples(fig.get('vnb_restore_wall_s', []), '{0:.1f}')),
        '- quiesced qemu_snapshot `frozen_ms`: disk-only {0}; with RAM state {1}'.format(
            samples(fig['snapshot_disk_frozen_ms']), samples(fig['snapshot_ram_frozen_ms'])),
        '- virtnbdbackup frozen windows (libvirtd agent log, freeze reply to thaw reply, ms): {0}'.format(
            samples(fig.get('vnb_frozen_ms', [])))]
    return out


try:
    from registry import Figure, register  # pylint: disable=import-error
except ImportError:
    Figure = register = None
if register is not None:
    register(Figure(7, 'external backup: qemu_backup, qemu-img convert and virtnbdbackup', measure, rows, details,
                    rounds=lambda runs: max(2, (runs + 1) // 2)))
