# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figure 2: guest file throughput.

First a chunk sweep (bare guest-file-write/-read loops of 64 KiB ... 48 MiB on a 48 MiB file); the
fastest chunk of each direction is the floor. Then qemu_guest_file put/get of a 64 MiB file
interleaved with the floor loop, the same transfers through the qemu.vm.qga connection
(`copy`/`fetch` in a play; the plugin's own put/fetch time from its -vvvv line), and 4 KiB chunks.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import figures  # pylint: disable=import-error
from figures import GUEST_DIR, MAX_WRITE  # pylint: disable=import-error
from harness.ansible import BIN, ansible_env  # pylint: disable=import-error
from registry import Figure, register  # pylint: disable=import-error
from report import paired, row, samples  # pylint: disable=import-error
from tools import MIB, median, random_file, run_module_process  # pylint: disable=import-error

from ansible_collections.qemu.vm.plugins.module_utils._guest_file.transfer import DEFAULT_CHUNK
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import MAX_FILE_CHUNK, QGASession

CHUNKS = [64 << 10, 256 << 10, MIB, 4 * MIB, 16 * MIB, 48 * MIB]
SWEEP_SIZE = 48 * MIB
TIMED = re.compile(r'(PUT|FETCH) ([0-9]+) bytes in ([0-9.]+) s')
PLAY = """- name: bench qemu.vm.qga copy and fetch
  hosts: guest
  gather_facts: false
  tasks:
    - name: Copy in
      ansible.builtin.copy:
        src: {src}
        dest: /root/conn-put.bin
        mode: '0644'
    - name: Fetch back
      ansible.builtin.fetch:
        src: {get_src}
        dest: {dest}
        flat: true
    - name: Clean up
      ansible.builtin.file:
        path: /root/conn-put.bin
        state: absent
"""


def _label(chunk):
    return f'{chunk // MIB} MiB' if chunk >= MIB else f'{chunk >> 10} KiB'


def _sweep(ctx, vm, fig, data, get_src):
    rounds = max(1, ctx.runs // 2)
    fig['sweep_rounds'] = rounds
    sweep = fig['sweep'] = {str(c): {'put_mbps': [], 'get_mbps': []} for c in CHUNKS}
    path = GUEST_DIR + '/sweep'
    view = data[:SWEEP_SIZE]
    with QGASession(vm.qga_path, timeout=300) as qga:
        for index in range(rounds):
            for chunk in figures._rotate(CHUNKS, index):  # pylint: disable=protected-access
                sweep[str(chunk)]['put_mbps'].append(figures.floor_put(qga, path, view, min(chunk, MAX_WRITE)))
                sweep[str(chunk)]['get_mbps'].append(
                    figures.floor_get(qga, get_src, min(chunk, MAX_FILE_CHUNK), fig['size']))
            ctx.log('fig 2 sweep round {0}/{1}: put {2}; get {3}'.format(index + 1, rounds, ', '.join(
                '{0} {1:.2f}'.format(_label(c), sweep[str(c)]['put_mbps'][-1]) for c in CHUNKS), ', '.join(
                '{0} {1:.2f}'.format(_label(c), sweep[str(c)]['get_mbps'][-1]) for c in CHUNKS)))
    figures.guest_rm(vm, path)
    for way in ('put', 'get'):
        fig[f'best_{way}_chunk'] = max(CHUNKS, key=lambda c, w=way: median(sweep[str(c)][w + '_mbps']))


def _module_rounds(ctx, vm, fig, src, src_sum, data, get_src, get_sum):
    dest = os.path.join(ctx.output, 'fetched-64m.bin')
    put_chunk = min(fig['best_put_chunk'], MAX_WRITE)
    get_chunk = min(fig['best_get_chunk'], MAX_FILE_CHUNK)

    def module_put(index):
        path = f'{GUEST_DIR}/module-put-{index}'
        result, wall, rss = run_module_process('qemu_guest_file', {
            'qga': vm.qga_path, 'path': path, 'src': src, 'remote_src': True})
        if result.get('checksum') != src_sum or not result.get('changed'):
            raise RuntimeError(f'qemu_guest_file put wrote something else: {result}')
        fig['module_put_mbps'].append(result['mb_per_s'])
        fig['module_put_wall_s'].append(wall)
        fig['module_put_rss_kib'].append(rss)
        figures.guest_rm(vm, path)

    def bare_put(index):
        path = f'{GUEST_DIR}/floor-put-{index}'
        with QGASession(vm.qga_path, timeout=300) as qga:
            fig['floor_put_mbps'].append(figures.floor_put(qga, path, data, put_chunk))
        figures.guest_rm(vm, path)

    def module_get(index):
        del index
        result, wall, rss = run_module_process('qemu_guest_file', {
            'qga': vm.qga_path, 'path': get_src, 'state': 'fetched', 'dest': dest})
        if result.get('checksum') != get_sum or figures._sha256(dest) != get_sum:  # pylint: disable=protected-access
            raise RuntimeError(f'qemu_guest_file get fetched something else: {result}')
        fig['module_get_mbps'].append(result['mb_per_s'])
        fig['module_get_wall_s'].append(wall)
        fig['module_get_rss_kib'].append(rss)
        os.unlink(dest)

    def bare_get(index):
        del index
        with QGASession(vm.qga_path, timeout=300) as qga:
            fig['floor_get_mbps'].append(figures.floor_get(qga, get_src, get_chunk, fig['size']))

    for index in range(ctx.rounds):
        for method in figures._rotate([module_get, bare_get], index):  # pylint: disable=protected-access
            method(index)
        ctx.log('fig 2 get round {0}/{1}: module {2:.2f} MB/s, floor {3:.2f} MB/s'.format(
            index + 1, ctx.rounds, fig['module_get_mbps'][-1], fig['floor_get_mbps'][-1]))
    for index in range(ctx.rounds):
        for method in figures._rotate([module_put, bare_put], index):  # pylint: disable=protected-access
            method(index)
        ctx.log('fig 2 put round {0}/{1}: module {2:.2f} MB/s, floor {3:.2f} MB/s'.format(
            index + 1, ctx.rounds, fig['module_put_mbps'][-1], fig['floor_put_mbps'][-1]))


def _connection_rounds(ctx, vm, fig, src, src_sum, get_src, get_sum):
    inventory = os.path.join(ctx.output, 'fig2-inventory.ini')
    with open(inventory, 'w') as handle:
        handle.write(f'guest ansible_connection=qemu.vm.qga ansible_qemu_qga={vm.qga_path} '
                     'ansible_python_interpreter=/usr/bin/python3\n')
    dest = os.path.join(ctx.output, 'conn-fetched.bin')
    play = os.path.join(ctx.output, 'fig2-play.yml')
    with open(play, 'w') as handle:
        handle.write(PLAY.format(src=src, get_src=get_src, dest=dest))
    rounds = max(1, ctx.runs // 2)
    fig['conn_rounds'] = rounds
    for index in range(rounds):
        started = time.perf_counter()
        proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-vvvv', '-i', inventory, play],
                              env=ansible_env({'ANSIBLE_PIPELINING': 'True'}), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)
        wall = time.perf_counter() - started
        timed = {}
        for way, size, seconds in TIMED.findall(proc.stdout):
            if int(size) == fig['size']:
                timed[way] = int(size) / 1e6 / float(seconds)
        if proc.returncode != 0 or set(timed) != {'PUT', 'FETCH'}:
            raise RuntimeError(f'the qga copy/fetch play failed (rc={proc.returncode}):\n{proc.stdout[-4000:]}')
        if figures._sha256(dest) != get_sum:  # pylint: disable=protected-access
            raise RuntimeError('the qga fetch brought back something else')
        os.unlink(dest)
        fig['conn_put_mbps'].append(timed['PUT'])
        fig['conn_get_mbps'].append(timed['FETCH'])
        fig['conn_play_wall_s'].append(wall)
        ctx.log('fig 2 qga connection round {0}/{1}: put {2:.2f} MB/s, fetch {3:.2f} MB/s, play {4:.1f} s'.format(
            index + 1, rounds, timed['PUT'], timed['FETCH'], wall))
    del src_sum  # the copy module compares the checksum of what arrived itself


def measure(ctx, size=64 * MIB, small=MIB, small_chunk=4096):
    vm = ctx.vm('files')
    figures.guest_scratch(vm, 1200)
    src = random_file(os.path.join(ctx.output, 'random-64m.bin'), size)
    src_sum = figures._sha256(src)  # pylint: disable=protected-access
    with open(src, 'rb') as handle:
        data = handle.read()
    fig = {'size': size, 'module_chunk': DEFAULT_CHUNK, 'small_size': small, 'small_chunk': small_chunk,
           'chunks': CHUNKS, 'sweep_size': SWEEP_SIZE}
    for key in ('module_put_mbps', 'module_put_wall_s', 'module_put_rss_kib', 'floor_put_mbps', 'module_get_mbps',
                'module_get_wall_s', 'module_get_rss_kib', 'floor_get_mbps', 'chunk4k_put_mbps', 'chunk4k_get_mbps',
                'conn_put_mbps', 'conn_get_mbps', 'conn_play_wall_s'):
        fig[key] = []
    get_src = GUEST_DIR + '/get-source'
    code, out, err = vm.guest_exec(['sh', '-c', f'head -c {size} /dev/urandom > {get_src} && sha256sum {get_src}'],
                                   timeout=300)
    if code != 0:
        raise RuntimeError(f'cannot make {get_src} in the guest: {err}')
    get_sum = out.decode('ascii', 'replace').split()[0]
    _sweep(ctx, vm, fig, data, get_src)
    _module_rounds(ctx, vm, fig, src, src_sum, data, get_src, get_sum)
    _connection_rounds(ctx, vm, fig, src, src_sum, get_src, get_sum)
    small_path = GUEST_DIR + '/small'
    with QGASession(vm.qga_path, timeout=120) as qga:
        for index in range(ctx.rounds):
            fig['chunk4k_put_mbps'].append(figures.floor_put(qga, small_path, data[:small], small_chunk))
            fig['chunk4k_get_mbps'].append(figures.floor_get(qga, small_path, small_chunk, small))
    figures.guest_rm(vm, get_src, small_path)
    return fig


def rows(fig):
    size = '{0} MiB'.format(fig['size'] // MIB)
    small = '{0} KiB chunks ({1} MiB file)'.format(fig['small_chunk'] // 1024, fig['small_size'] // MIB)
    out = []
    for way, verb in (('put', 'write'), ('get', 'read')):
        best = fig.get(f'best_{way}_chunk')
        floor = median(fig[f'floor_{way}_mbps'])
        floor_name = (f'floor: bare guest-file-{verb} loop, fastest chunk of the sweep ({_label(best)})'
                      if best else f'floor: bare 48 MiB guest-file-{verb} loop')
        value = median(fig[f'module_{way}_mbps'])
        out.append(row('2' + way, f'qemu_guest_file {way} {size}', value, 'MB/s', floor_name, floor, 0.8,
                       higher_is_better=True))
        if fig.get(f'conn_{way}_mbps'):
            out.append(row('2c' + way, 'qemu.vm.qga connection {0} {1}'.format(
                'put_file' if way == 'put' else 'fetch_file', size), median(fig[f'conn_{way}_mbps']), 'MB/s',
                floor_name, floor, 0.8, higher_is_better=True))
        if fig.get('sweep'):
            largest = median(fig['sweep'][str(fig['chunks'][-1])][way + '_mbps'])
            out.append(row('2s' + way, f'Sweep: guest-file-{verb} at the fastest chunk ({_label(best)})',
                           median(fig['sweep'][str(best)][way + '_mbps']), 'MB/s',
                           'the same loop in {0} chunks'.format(_label(fig['chunks'][-1])), largest,
                           higher_is_better=True))
        out.append(row('2' + way + '4k', f'qemu_guest_file {way} {size}', value, 'MB/s',
                       f'guest-file-{verb} in {small}', median(fig[f'chunk4k_{way}_mbps']),
                       higher_is_better=True))
    return out


def details(fig):
    out = ['Samples (MB/s = 10^6 bytes/s, in run order); the modules\' chunk: {0}.'.format(
        _label(fig['module_chunk'])) if fig.get('module_chunk') else 'Samples (MB/s = 10^6 bytes/s, in run order).', '']
    if fig.get('sweep'):
        out.append('- chunk sweep (writes of a {0} MiB file, reads of the {1} MiB one; {2} rounds; medians, then the '
                   'samples):'.format(fig['sweep_size'] // MIB, fig['size'] // MIB, fig['sweep_rounds']))
        for chunk in fig['chunks']:
            put = fig['sweep'][str(chunk)]['put_mbps']
            get = fig['sweep'][str(chunk)]['get_mbps']
            out.append('  - {0}: write {1:.2f} ({2}), read {3:.2f} ({4})'.format(
                _label(chunk), median(put), samples(put, '{0:.2f}'), median(get), samples(get, '{0:.2f}')))
    for way in ('put', 'get'):
        ratios = paired(fig[f'module_{way}_mbps'], fig[f'floor_{way}_mbps'])
        out += [
            '- module {0} (its own `mb_per_s`): {1}; process wall time {2} s'.format(
                way, samples(fig[f'module_{way}_mbps'], '{0:.2f}'),
                samples(fig[f'module_{way}_wall_s'], '{0:.1f}')),
            '- floor {0}: {1}; module/floor per round: {2}'.format(
                way, samples(fig[f'floor_{way}_mbps'], '{0:.2f}'), samples(ratios, '{0:.2f}')),
        ]
    if fig.get('conn_put_mbps'):
        out.append('- qemu.vm.qga put_file (the plugin\'s own time): {0}; fetch_file: {1}; whole copy+fetch play '
                   '{2} s'.format(samples(fig['conn_put_mbps'], '{0:.2f}'), samples(fig['conn_get_mbps'], '{0:.2f}'),
                                  samples(fig['conn_play_wall_s'], '{0:.1f}')))
    out += [
        '- 4 KiB chunks put: {0}; get: {1}'.format(
            samples(fig['chunk4k_put_mbps'], '{0:.2f}'), samples(fig['chunk4k_get_mbps'], '{0:.2f}')),
        '- peak RSS of the module process for these 64 MiB transfers: put {0} MiB, get {1} MiB'.format(
            samples([k / 1024.0 for k in fig['module_put_rss_kib']], '{0:.0f}'),
            samples([k / 1024.0 for k in fig['module_get_rss_kib']], '{0:.0f}')),
    ]
    return out


register(Figure(2, 'guest file throughput', measure, rows, details, vms={'files': None}))
