# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figure 5: a fleet of 8 VMs vs 1.

5facts: a play running qemu_guest_facts on 8 hosts (forks 8) vs the same play limited to 1 host;
5inv: `ansible-inventory --list` with the qemu.vm.qemu inventory plugin over a glob matching the
8 VMs' QMP sockets vs a pattern matching one. The VMs run with the least memory the tiny guest
boots with (FLEET_MEMORY; 64 MiB does not boot it: the kernel never writes to the console).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import figures  # pylint: disable=import-error
from harness.ansible import BIN, ansible_env  # pylint: disable=import-error
from registry import Figure, register  # pylint: disable=import-error
from report import paired, row, samples  # pylint: disable=import-error
from tools import median  # pylint: disable=import-error

FLEET = 8
FLEET_MEMORY = 96
PLAY = """- name: bench qemu_guest_facts over the fleet
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Guest facts
      qemu.vm.qemu_guest_facts:
        qga: "{{ bench_qga }}"
"""
#: The reference: the same play with the cheapest module there is, on the same hosts and forks.
PING = """- name: bench ansible.builtin.ping over the fleet
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""


def _run(argv, env, what):
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f'{what} failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}')
    return wall, proc.stdout


def _facts(ctx, inventory, play, count):
    argv = [os.path.join(BIN, 'ansible-playbook'), '-i', inventory, play, '--limit', f'fleet[0:{count - 1}]']
    wall, out = _run(argv, ansible_env({'ANSIBLE_FORKS': str(FLEET)}), f'the {count}-VM facts play')
    if out.count('ok: [') != count:
        raise RuntimeError('the {0}-VM facts play reached {1} hosts:\n{2}'.format(count, out.count('ok: ['), out[-3000:]))
    return wall


def _inventory(config, count):
    argv = [os.path.join(BIN, 'ansible-inventory'), '-i', config, '--list']
    wall, out = _run(argv, ansible_env(), f'ansible-inventory over {count} VM(s)')
    listed = json.loads(out[out.index('{'):])
    hostvars = listed.get('_meta', {}).get('hostvars', {})
    answered = [h for h, v in hostvars.items() if v.get('qemu_agent_available') and v.get('qemu_status')]
    if len(answered) != count:
        raise RuntimeError(f'ansible-inventory listed {len(answered)} answering VMs, expected {count}: {sorted(hostvars)}')
    return wall


def measure(ctx):
    base = os.path.join(ctx.output, 'fleet')
    shutil.rmtree(base, ignore_errors=True)
    vms = []
    fig = {'fleet': FLEET, 'memory_mib': FLEET_MEMORY, 'boot_s': []}
    try:
        for index in range(FLEET):
            vm = ctx.new_vm(os.path.join(base, f'vm-{index}'), f'bench-fleet-{index}',
                            memory=FLEET_MEMORY)
            started = time.perf_counter()
            vm.start(timeout=120)
            fig['boot_s'].append(time.perf_counter() - started)
            vms.append(vm)
        ctx.log('fig 5: {0} VMs of {1} MiB up (boots {2} s)'.format(FLEET, FLEET_MEMORY,
                                                                    samples(fig['boot_s'], '{0:.1f}')))
        sockets = set(os.path.dirname(vm.qmp_path) for vm in vms)
        if len(sockets) != FLEET or any(os.path.dirname(s) != base for s in sockets):
            raise RuntimeError(f'the fleet sockets are not in {base}/vm-*: {sorted(sockets)}')
        inventory = os.path.join(ctx.output, 'fig5-hosts.ini')
        with open(inventory, 'w') as handle:
            handle.write('[fleet]\n')
            for index, vm in enumerate(vms):
                handle.write(f'vm{index} bench_qga={vm.qga_path}\n')
            handle.write(f'[fleet:vars]\nansible_connection=local\nansible_python_interpreter={sys.executable}\n')
        play = os.path.join(ctx.output, 'fig5-facts.yml')
        with open(play, 'w') as handle:
            handle.write(PLAY)
        ping = os.path.join(ctx.output, 'fig5-ping.yml')
        with open(ping, 'w') as handle:
            handle.write(PING)
        configs = {}
        for count, pattern in ((FLEET, 'vm-*'), (1, 'vm-0')):
            path = os.path.join(ctx.output, f'fig5-{count}.qemu.yml')
            with open(path, 'w') as handle:
                json.dump({'plugin': 'qemu.vm.qemu', 'sockets': [
                    {'qmp': os.path.join(base, pattern, 'qmp.sock'), 'qga': '{dir}/qga.sock'}]}, handle)
            configs[count] = path
        methods = {
            'facts_8_s': lambda: _facts(ctx, inventory, play, FLEET),
            'facts_1_s': lambda: _facts(ctx, inventory, play, 1),
            'inventory_8_s': lambda: _inventory(configs[FLEET], FLEET),
            'inventory_1_s': lambda: _inventory(configs[1], 1),
            'ping_8_s': lambda: _facts(ctx, inventory, ping, FLEET),
            'ping_1_s': lambda: _facts(ctx, inventory, ping, 1),
        }
        for method in methods.values():
            method()  # warm-up, not counted
        order = sorted(methods)
        for index in range(ctx.rounds):
            for name in figures._rotate(order, index):  # pylint: disable=protected-access
                fig.setdefault(name, []).append(methods[name]())
            ctx.log('fig 5 round {0}/{1}: facts 8 VMs {2:.2f} s, 1 VM {3:.2f} s; inventory 8 VMs {4:.2f} s, '
                    '1 VM {5:.2f} s; ping 8 hosts {6:.2f} s, 1 host {7:.2f} s'.format(
                        index + 1, ctx.rounds, fig['facts_8_s'][-1], fig['facts_1_s'][-1], fig['inventory_8_s'][-1],
                        fig['inventory_1_s'][-1], fig['ping_8_s'][-1], fig['ping_1_s'][-1]))
    finally:
        for vm in vms:
            vm.stop()
    fig['_vms'] = {'fleet': {'memory': FLEET_MEMORY, 'count': FLEET}}
    return fig


def rows(fig):
    return [
        row('5facts', 'qemu_guest_facts play over {0} VMs (forks {0})'.format(fig['fleet']), median(fig['facts_8_s']),
            's', 'the same play over 1 VM', median(fig['facts_1_s']), 2.0),
        row('5inv', 'ansible-inventory --list, qemu.vm.qemu plugin, {0} VMs'.format(fig['fleet']),
            median(fig['inventory_8_s']), 's', 'the same over 1 VM', median(fig['inventory_1_s']), 2.0),
    ] + ([row('5ping', 'ansible.builtin.ping play over {0} hosts (forks {0}), the reference'.format(fig['fleet']),
              median(fig['ping_8_s']), 's', 'the same play over 1 host', median(fig['ping_1_s']))]
         if fig.get('ping_8_s') else [])


def details(fig):
    facts = paired(fig['facts_8_s'], fig['facts_1_s'])
    inventory = paired(fig['inventory_8_s'], fig['inventory_1_s'])
    return [
        'Samples (s, in run order); {0} VMs of {1} MiB RAM each.'.format(fig['fleet'], fig['memory_mib']),
        '',
        '- facts play, {0} VMs: {1}; 1 VM: {2}; ratio per round: {3}; median {4:.2f}'.format(
            fig['fleet'], samples(fig['facts_8_s'], '{0:.2f}'), samples(fig['facts_1_s'], '{0:.2f}'),
            samples(facts, '{0:.2f}'), median(facts)),
        '- ansible-inventory, {0} VMs: {1}; 1 VM: {2}; ratio per round: {3}; median {4:.2f}'.format(
            fig['fleet'], samples(fig['inventory_8_s'], '{0:.2f}'), samples(fig['inventory_1_s'], '{0:.2f}'),
            samples(inventory, '{0:.2f}'), median(inventory)),
        '- ansible.builtin.ping play, {0} hosts: {1}; 1 host: {2}; ratio per round: {3}'.format(
            fig['fleet'], samples(fig.get('ping_8_s', []), '{0:.2f}'), samples(fig.get('ping_1_s', []), '{0:.2f}'),
            samples(paired(fig.get('ping_8_s', []), fig.get('ping_1_s', [])), '{0:.2f}')),
        '- boot time of each VM (to the agent answering), one after the other: {0} s'.format(
            samples(fig['boot_s'], '{0:.1f}')),
    ]


register(Figure(5, 'fleet of 8 VMs', measure, rows, details, rounds=lambda runs: runs))
