# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figure 10: bringing a VM up and down with qemu.vm.qemu_vm (issue 24) against QEMU by hand and libvirt.

One guest (the tiny test guest, direct kernel boot, 256 MiB, TCG, one overlay disk), three ways, every
round in the same order:
* ours: `qemu_vm state=running wait=agent` as an ad-hoc `ansible` process (its whole wall time), then
  `state=stopped` (the ACPI button; the guest powers off);
* by hand: the very argv qemu_vm ran (`-daemonize -pidfile`, same sockets and disk), then a loop that
  pings the agent every 0.1 s; down: `system_powerdown` over QMP and a wait for QEMU to exit;
* libvirt: `virsh start` of a defined domain of the same guest, then the same ping loop through
  `virsh qemu-agent-command`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from fig6_connection import install_anchors
from fig7_backup import adhoc
from harness.guest import qga_command, qmp_command  # pylint: disable=import-error
from libvirt_guest import LibvirtGuest
from registry import Figure, register  # pylint: disable=import-error
from report import paired, row, samples  # pylint: disable=import-error
from tools import median  # pylint: disable=import-error

APPEND = 'console=ttyS0 quiet panic=-1 qemu_vm.acpid=1'  # the guest powers off on the ACPI button
POLL = 0.1
BOOT_TIMEOUT = 300.0


class SameGuestDomain(LibvirtGuest):
    def cmdline(self):
        return APPEND


def wait_agent(path, deadline):
    while True:
        try:
            qga_command(path, 'guest-ping', timeout=5)
            return
        except (OSError, RuntimeError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL)


def wait_exit(pid, deadline):
    while os.path.exists(f'/proc/{pid}') and time.monotonic() < deadline:
        time.sleep(0.02)
    if os.path.exists(f'/proc/{pid}'):
        raise RuntimeError(f'QEMU {pid} did not exit')


def by_hand(argv, run_dir):
    """(seconds to the agent's first answer, seconds from system_powerdown to QEMU's exit)."""
    os.makedirs(run_dir, mode=0o700)
    qmp, qga = os.path.join(run_dir, 'qmp.sock'), os.path.join(run_dir, 'qga.sock')
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_agent(qga, time.monotonic() + BOOT_TIMEOUT)
    up = time.perf_counter() - started
    with open(os.path.join(run_dir, 'qemu.pid'), encoding='ascii') as handle:
        pid = int(handle.read())
    started = time.perf_counter()
    qmp_command(qmp, 'system_powerdown')
    wait_exit(pid, time.monotonic() + 120)
    down = time.perf_counter() - started
    shutil.rmtree(run_dir)
    return up, down


def libvirt_up(domain):
    started = time.perf_counter()
    subprocess.run(['virsh', '-q', '-c', 'qemu:///system', 'start', domain.name], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    domain.wait_agent(BOOT_TIMEOUT)
    up = time.perf_counter() - started
    subprocess.run(['virsh', '-q', '-c', 'qemu:///system', 'destroy', domain.name], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return up


def measure(ctx):
    try:
        install_anchors(ctx.log)
    except (RuntimeError, OSError) as exc:
        return {'anchor_failure': str(exc)[-1500:]}
    workdir = os.path.join(ctx.output, 'fig10')
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    images = ctx.images
    args = {'name': 'bench-fig10', 'run_dir': os.path.join(workdir, 'run'), 'accel': 'tcg', 'machine': 'pc',
            'memory': 256, 'kernel': images.kernel, 'initrd': images.initrd, 'append': APPEND,
            'disks': [{'path': os.path.join(workdir, 'disk0.qcow2'), 'backing': images.data_disk}],
            'wait': 'agent', 'wait_timeout': int(BOOT_TIMEOUT)}
    domain = SameGuestDomain('qemu-vm-bench10', os.path.join(workdir, 'libvirt'), images, memory=256, python=False)
    fig = {'ours_up_s': [], 'ours_down_s': [], 'stopped_by': [], 'hand_up_s': [], 'hand_down_s': [], 'libvirt_up_s': []}
    try:
        domain.start(wait=False)
        domain.wait_agent(BOOT_TIMEOUT)
        subprocess.run(['virsh', '-q', '-c', 'qemu:///system', 'destroy', domain.name], check=True,
                       stdout=subprocess.DEVNULL)
        for index in range(ctx.rounds):
            result, up = adhoc('qemu.vm.qemu_vm', args)
            stopped, down = adhoc('qemu.vm.qemu_vm', dict(args, state='stopped'))
            adhoc('qemu.vm.qemu_vm', dict(args, state='absent'))
            hand_up, hand_down = by_hand(result['argv'], args['run_dir'])
            libvirt = libvirt_up(domain)
            for key, value in (('ours_up_s', up), ('ours_down_s', down), ('stopped_by', stopped['stopped_by']),
                               ('hand_up_s', hand_up), ('hand_down_s', hand_down), ('libvirt_up_s', libvirt)):
                fig[key].append(value)
            ctx.log(f'fig 10 round {index + 1}/{ctx.rounds}: up ours {up:.1f} s, by hand {hand_up:.1f} s, '
                    f'libvirt {libvirt:.1f} s; down ours {down:.1f} s ({stopped["stopped_by"]}), by hand {hand_down:.1f} s')
    finally:
        domain.destroy()
        subprocess.run(['pkill', '-KILL', '-f', os.path.join(args['run_dir'], 'qemu.pid')], check=False)
    return fig


def rows(fig):
    if 'anchor_failure' in fig:
        return [row('10', 'Lifecycle (anchors could not be installed)', None, 's', fig['anchor_failure'][:200], None)]
    excess = [a - b for a, b in zip(fig['ours_down_s'], fig['hand_down_s'])]
    return [
        row('10up', 'qemu_vm state=running wait=agent, whole ad-hoc `ansible` process', median(fig['ours_up_s']), 's',
            'the same argv by hand (-daemonize) plus an agent ping loop', median(fig['hand_up_s']), 1.2),
        row('10uplv', 'qemu_vm state=running wait=agent, whole ad-hoc `ansible` process', median(fig['ours_up_s']), 's',
            'virsh start plus an agent ping loop, same guest under libvirt', median(fig['libvirt_up_s']), 1.0),
        row('10down', 'qemu_vm state=stopped: time beyond the guest\'s own power-off', median(excess), 's',
            '-', None, 1.0, ratio=False),
        row('10downabs', 'qemu_vm state=stopped, whole ad-hoc `ansible` process', median(fig['ours_down_s']), 's',
            'system_powerdown by hand until QEMU exits', median(fig['hand_down_s'])),
    ]


def details(fig):
    if 'anchor_failure' in fig:
        return ['The anchors failed: ' + fig['anchor_failure']]
    return [
        'Samples (s, in run order):',
        '',
        '- up, ours: {0}; by hand: {1}; libvirt: {2}'.format(*(samples(fig[k], '{0:.2f}') for k in
                                                             ('ours_up_s', 'hand_up_s', 'libvirt_up_s'))),
        '- up, ours/by hand per round: {0}'.format(samples(paired(fig['ours_up_s'], fig['hand_up_s']), '{0:.2f}')),
        '- down, ours: {0} (stopped_by: {1}); by hand: {2}'.format(
            samples(fig['ours_down_s'], '{0:.2f}'), ', '.join(fig['stopped_by']), samples(fig['hand_down_s'], '{0:.2f}')),
    ]


register(Figure(10, 'bringing a VM up and down', measure, rows, details))
