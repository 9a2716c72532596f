# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figure 4: per-task overhead.

4 / 4exec: ad-hoc qemu_guest_facts and qemu_guest_exec vs ansible.builtin.ping (the controller's
floor for any task); 4qga*: a play of 10 `command` tasks vs 1 over the qemu.vm.qga connection,
pipelining off and on, the per-task time being (t10 - t1) / 9.
"""

from __future__ import annotations

import os
import subprocess
import time

import figures  # pylint: disable=import-error
from harness.ansible import BIN, ansible_env  # pylint: disable=import-error
from registry import Figure, register  # pylint: disable=import-error
from report import paired, row, samples  # pylint: disable=import-error
from tools import median  # pylint: disable=import-error

TASKS = 10
PLAY = """- name: bench {count} command tasks over qemu.vm.qga
  hosts: guest
  gather_facts: false
  tasks:
{tasks}
"""
TASK = """    - name: Command {0}
      ansible.builtin.command: /bin/true
      changed_when: false
"""


def _adhoc_rounds(ctx, fig):
    vm = ctx.vm('small')
    runs = {
        'ping_s': ('ansible.builtin.ping', None),
        'facts_s': ('qemu.vm.qemu_guest_facts', f'qga={vm.qga_path}'),
        'exec_s': ('qemu.vm.qemu_guest_exec', f'qga={vm.qga_path} cmd=/bin/true'),
    }
    for module, args in runs.values():
        figures._adhoc(module, args)  # pylint: disable=protected-access  # warm-up, not counted
    order = sorted(runs)
    for index in range(ctx.rounds):
        for name in figures._rotate(order, index):  # pylint: disable=protected-access
            fig.setdefault(name, []).append(figures._adhoc(*runs[name]))  # pylint: disable=protected-access
        ctx.log('fig 4 round {0}/{1}: ping {2:.2f} s, qemu_guest_facts {3:.2f} s, qemu_guest_exec {4:.2f} s'.format(
            index + 1, ctx.rounds, fig['ping_s'][-1], fig['facts_s'][-1], fig['exec_s'][-1]))


def _play(ctx, inventory, count, pipelining):
    path = os.path.join(ctx.output, f'fig4-play-{count}.yml')
    if not os.path.exists(path):
        with open(path, 'w') as handle:
            handle.write(PLAY.format(count=count, tasks=''.join(TASK.format(i + 1) for i in range(count))))
    env = ansible_env({'ANSIBLE_PIPELINING': str(pipelining)})
    started = time.perf_counter()
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', inventory, path], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0 or f'ok={count} ' not in proc.stdout:
        raise RuntimeError(f'the {count}-task qga play failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}')
    return wall


def _connection_rounds(ctx, fig):
    vm = ctx.vm('python')
    inventory = os.path.join(ctx.output, 'fig4-inventory.ini')
    with open(inventory, 'w') as handle:
        handle.write(f'guest ansible_connection=qemu.vm.qga ansible_qemu_qga={vm.qga_path} '
                     'ansible_python_interpreter=/usr/bin/python3\n')
    _play(ctx, inventory, 1, True)  # warm-up: the guest's page cache of python
    rounds = max(1, (ctx.runs + 1) // 2)
    fig['qga_rounds'] = rounds
    plays = [(TASKS, False), (1, False), (TASKS, True), (1, True)]
    for index in range(rounds):
        for count, pipelining in figures._rotate(plays, index):  # pylint: disable=protected-access
            key = 'qga_{0}_{1}_s'.format(count, 'pipe' if pipelining else 'nopipe')
            fig.setdefault(key, []).append(_play(ctx, inventory, count, pipelining))
        for mode in ('nopipe', 'pipe'):
            fig.setdefault(f'qga_per_task_{mode}_s', []).append(
                (fig[f'qga_{TASKS}_{mode}_s'][-1] - fig[f'qga_1_{mode}_s'][-1]) / (TASKS - 1))
        ctx.log('fig 4 qga round {0}/{1}: per task {2:.2f} s (pipelining off), {3:.2f} s (on)'.format(
            index + 1, rounds, fig['qga_per_task_nopipe_s'][-1], fig['qga_per_task_pipe_s'][-1]))


def measure(ctx):
    fig = {'tasks': TASKS}
    _adhoc_rounds(ctx, fig)
    ctx.release(keep=('python',))
    _connection_rounds(ctx, fig)
    return fig


def rows(fig):
    ping = median(fig['ping_s'])
    out = [row('4', 'Ad-hoc task wall time, qemu_guest_facts', median(fig['facts_s']), 's',
               'ansible.builtin.ping', ping, 1.3)]
    if fig.get('exec_s'):
        out.append(row('4exec', 'Ad-hoc task wall time, qemu_guest_exec cmd=/bin/true', median(fig['exec_s']), 's',
                       'ansible.builtin.ping', ping))
        out.append(row('4exec/f', 'Ad-hoc task wall time, qemu_guest_exec cmd=/bin/true', median(fig['exec_s']), 's',
                       'qemu_guest_facts', median(fig['facts_s'])))
    if fig.get('qga_per_task_pipe_s'):
        off = median(fig['qga_per_task_nopipe_s'])
        on = median(fig['qga_per_task_pipe_s'])
        out.append(row('4qga', 'qemu.vm.qga: time per `command` task, pipelining on', on, 's',
                       'the same, pipelining off', off))
        out.append(row('4qga1', 'qemu.vm.qga: 1-task play wall time, pipelining on', median(fig['qga_1_pipe_s']), 's',
                       'ad-hoc ansible.builtin.ping on localhost', ping))
    return out


def details(fig):
    out = [
        'Samples (s, in run order):',
        '',
        '- `ansible localhost -m qemu.vm.qemu_guest_facts -a qga=...`: {0}'.format(samples(fig['facts_s'], '{0:.2f}')),
        '- `ansible localhost -m ansible.builtin.ping`: {0}'.format(samples(fig['ping_s'], '{0:.2f}')),
    ]
    if fig.get('exec_s'):
        ratios = paired(fig['exec_s'], fig['ping_s'])
        out += [
            '- `ansible localhost -m qemu.vm.qemu_guest_exec -a "qga=... cmd=/bin/true"`: {0}'.format(
                samples(fig['exec_s'], '{0:.2f}')),
            '- qemu_guest_exec/ping per round: {0}; median {1:.2f}; qemu_guest_facts/ping per round: {2}; '
            'median {3:.2f}'.format(samples(ratios, '{0:.2f}'), median(ratios),
                                    samples(paired(fig['facts_s'], fig['ping_s']), '{0:.2f}'),
                                    median(paired(fig['facts_s'], fig['ping_s']))),
        ]
    if fig.get('qga_per_task_pipe_s'):
        for mode, label in (('nopipe', 'off'), ('pipe', 'on')):
            out.append('- qga play, pipelining {0}: {1} tasks {2} s; 1 task {3} s; per task {4} s'.format(
                label, fig['tasks'], samples(fig['qga_{0}_{1}_s'.format(fig['tasks'], mode)], '{0:.1f}'),
                samples(fig[f'qga_1_{mode}_s'], '{0:.1f}'),
                samples(fig[f'qga_per_task_{mode}_s'], '{0:.2f}')))
        ratios = paired(fig['qga_per_task_pipe_s'], fig['qga_per_task_nopipe_s'])
        out.append('- per-task time on/off per round: {0}; median {1:.2f}'.format(
            samples(ratios, '{0:.2f}'), median(ratios)))
    return out


register(Figure(4, 'per-task overhead', measure, rows, details, vms={'small': None, 'python': None},
                rounds=lambda runs: runs * 2))
