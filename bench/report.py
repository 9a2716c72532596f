# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn bench samples into the table of make bench and bench/results.md."""

from __future__ import annotations

import os

from tools import median  # pylint: disable=import-error

HERE = os.path.dirname(os.path.abspath(__file__))


def _row(key, figure, value, unit, baseline, base_value, target=None, higher_is_better=False, ratio=True):
    """One line of the table; `target` is the bound on value/base_value (or on value when ratio=False)."""
    row = {'key': key, 'figure': figure, 'value': value, 'unit': unit, 'baseline': baseline,
           'baseline_value': base_value, 'ratio': None, 'target': target, 'higher_is_better': higher_is_better,
           'met': None}
    if ratio and value is not None and base_value:
        row['ratio'] = value / base_value
    measured = row['ratio'] if ratio else value
    if target is not None and measured is not None:
        row['met'] = measured >= target if higher_is_better else measured <= target
    return row


def rows(results):
    out = []
    fig = results.get('fig1')
    if fig:
        role = median(fig['role_frozen_ms'])
        out.append(_row('1a', 'Frozen window, backup role (frozen_ms)', role, 'ms',
                        'floor: bare freeze/snapshot-save/thaw script', median(fig['floor_tap_ms']), 1.2))
        out.append(_row('1b', 'Frozen window, backup role (frozen_ms)', role, 'ms',
                        'naive play: freeze, snapshot, thaw tasks', median(fig['naive_tap_ms']), 0.1))
        out.append(_row('1c', 'Frozen window, floor script (the least any freeze/save/thaw can do)',
                        median(fig['floor_tap_ms']), 'ms', 'naive play: freeze, snapshot, thaw tasks',
                        median(fig['naive_tap_ms'])))
    fig = results.get('fig2')
    if fig:
        size = '{0} MiB'.format(fig['size'] // (1 << 20))
        small = '{0} KiB chunks ({1} MiB file)'.format(fig['small_chunk'] // 1024, fig['small_size'] // (1 << 20))
        for way, verb in (('put', 'write'), ('get', 'read')):
            value = median(fig['module_{0}_mbps'.format(way)])
            figure = 'qemu_guest_file {0} {1}'.format(way, size)
            out.append(_row('2' + way, figure, value, 'MB/s',
                            'floor: bare 48 MiB guest-file-{0} loop'.format(verb),
                            median(fig['floor_{0}_mbps'.format(way)]), 0.8, higher_is_better=True))
            out.append(_row('2' + way + '4k', figure, value, 'MB/s', 'guest-file-{0} in {1}'.format(verb, small),
                            median(fig['chunk4k_{0}_mbps'.format(way)]), None, higher_is_better=True))
    fig = results.get('fig3')
    if fig:
        size = '{0} GiB'.format(fig['size'] // (1 << 30)) if fig['size'] >= (1 << 30) else '{0} MiB'.format(
            fig['size'] // (1 << 20))
        for way in ('put', 'get'):
            out.append(_row('3' + way, 'Peak RSS of the module process, {0} {1}'.format(way, size),
                            fig['{0}_rss_kib'.format(way)] / 1024.0, 'MiB', '-', None, 256, ratio=False))
    fig = results.get('fig4')
    if fig:
        out.append(_row('4', 'Ad-hoc task wall time, qemu_guest_facts', median(fig['facts_s']), 's',
                        'ansible.builtin.ping', median(fig['ping_s']), 1.3))
    return out


def _num(value, unit):
    if value is None:
        return '-'
    if unit == 'ms':
        return '{0:.0f} ms'.format(value)
    if unit == 's':
        return '{0:.2f} s'.format(value)
    if unit == 'MB/s':
        return '{0:.2f} MB/s'.format(value)
    return '{0:.1f} {1}'.format(value, unit)


def _target(row):
    if row['target'] is None:
        return '(context)'
    sign = '≥' if row['higher_is_better'] else '≤'
    if row['ratio'] is None and row['baseline_value'] is None:
        return '{0} {1:g} {2}'.format(sign, row['target'], row['unit'])
    return '{0} {1:g}×'.format(sign, row['target'])


def table(all_rows):
    header = ['#', 'Figure', 'Value', 'Baseline', 'Baseline value', 'Ratio', 'Target', 'Result']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for column in header) + '|']
    for row in all_rows:
        ratio = '-' if row['ratio'] is None else '{0:.2f}×'.format(row['ratio'])
        result = {True: 'met', False: 'MISSED', None: ''}[row['met']]
        cells = [row['key'], row['figure'], _num(row['value'], row['unit']), row['baseline'],
                 _num(row['baseline_value'], row['unit']), ratio, _target(row), result]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _samples(values, fmt='{0:.0f}'):
    return ', '.join(fmt.format(v) for v in values)


def _machine(results):
    m = results['machine']
    runs = results['runs']
    rounds = results.get('rounds') or {'fig1': runs * 2, 'fig2': runs, 'fig4': runs * 2}
    spent = ', '.join('{0} {1:.0f} s'.format(k, v) for k, v in sorted(results['seconds'].items()))
    lines = [
        '- CPU: {0}, {1} cores; RAM {2} GiB; {3}, kernel {4}'.format(
            m['cpu'], m['cores'], m['ram_gib'], m['os'], m['kernel']),
        '- {0}; accelerator: {1}'.format(m['qemu'], m['accelerator']),
        '- Guest: tests/guest tiny guest (busybox initramfs, 1 vCPU, machine pc), agent {0}; figure 1 and 4 VM '
        '256 MiB RAM, figure 2 VM 1536 MiB RAM'.format(results.get('guest_agent', '?')),
        '- Python {0}, ansible-core {1}, qemu.qmp {2}, host {3}'.format(m['python'], m['ansible_core'], m['qemu_qmp'],
                                                                        m['qemu_ga']),
        '- Commit {0}, measured {1}; load average {2} at start, {3} at the end (the machine is shared)'.format(
            m['commit'], m['date_utc'], m['load_average_at_start'], results.get('load_average_at_end')),
        '- Rounds (medians over them): figure 1 {0}, figure 2 {1}, figure 4 {2}; figure 3 once each way; time '
        'spent: {3}'.format(rounds.get('fig1'), rounds.get('fig2'), rounds.get('fig4'), spent),
    ]
    return '\n'.join(lines)


def _details(results):
    out = []
    fig = results.get('fig1')
    if fig:
        role_rest = [w - d for w, d in zip(fig['role_frozen_ms'], fig['role_downtime_ms'])]
        floor_rest = [w - d for w, d in zip(fig['floor_tap_ms'], fig['floor_downtime_ms'])]
        paired = [r / f for r, f in zip(fig['role_frozen_ms'], fig['floor_tap_ms'])]
        out += [
            '### Figure 1 samples (ms, in run order)',
            '',
            '- backup role `frozen_ms`: {0}'.format(_samples(fig['role_frozen_ms'])),
            '- backup role, tap (freeze reply to thaw reply): {0}'.format(_samples(fig['role_tap_ms'])),
            '- backup role, QEMU downtime of the save (`downtime_ms`, STOP to RESUME): {0}'.format(
                _samples(fig['role_downtime_ms'])),
            '- floor, tap: {0}; floor, its own clock: {1}'.format(
                _samples(fig['floor_tap_ms']), _samples(fig['floor_ms'])),
            '- floor, QEMU downtime of the save: {0}'.format(_samples(fig['floor_downtime_ms'])),
            '- naive play, tap: {0}'.format(_samples(fig['naive_tap_ms'])),
            '- frozen but not stopped (window minus downtime), medians: role {0:.0f} ms, floor {1:.0f} ms'.format(
                median(role_rest), median(floor_rest)),
            '- role/floor ratio per round (same round): {0}; median {1:.2f}'.format(
                _samples(paired, '{0:.2f}'), median(paired)),
            '- whole playbook wall time, role: {0} s; naive: {1} s'.format(
                _samples(fig['role_wall_s'], '{0:.1f}'), _samples(fig['naive_wall_s'], '{0:.1f}')),
            '',
        ]
    fig = results.get('fig2')
    if fig:
        out += [
            '### Figure 2 samples (MB/s = 10^6 bytes/s, in run order)',
            '',
            '- module put (its own `mb_per_s`): {0}; process wall time {1} s'.format(
                _samples(fig['module_put_mbps'], '{0:.2f}'), _samples(fig['module_put_wall_s'], '{0:.1f}')),
            '- floor put: {0}'.format(_samples(fig['floor_put_mbps'], '{0:.2f}')),
            '- module get (its own `mb_per_s`): {0}; process wall time {1} s'.format(
                _samples(fig['module_get_mbps'], '{0:.2f}'), _samples(fig['module_get_wall_s'], '{0:.1f}')),
            '- floor get: {0}'.format(_samples(fig['floor_get_mbps'], '{0:.2f}')),
            '- 4 KiB chunks put: {0}; get: {1}'.format(
                _samples(fig['chunk4k_put_mbps'], '{0:.2f}'), _samples(fig['chunk4k_get_mbps'], '{0:.2f}')),
            '- peak RSS of the module process for these 64 MiB transfers: put {0} MiB, get {1} MiB'.format(
                _samples([k / 1024.0 for k in fig['module_put_rss_kib']], '{0:.0f}'),
                _samples([k / 1024.0 for k in fig['module_get_rss_kib']], '{0:.0f}')),
            '',
        ]
    fig = results.get('fig3')
    if fig:
        out += [
            '### Figure 3 ({0})'.format(fig['peer']),
            '',
            '- put: peak RSS {0:.1f} MiB, {1:.1f} MB/s, process wall time {2:.1f} s'.format(
                fig['put_rss_kib'] / 1024.0, fig['put_mbps'], fig['put_wall_s']),
            '- get: peak RSS {0:.1f} MiB, {1:.1f} MB/s, process wall time {2:.1f} s'.format(
                fig['get_rss_kib'] / 1024.0, fig['get_mbps'], fig['get_wall_s']),
            '',
        ]
    fig = results.get('fig4')
    if fig:
        out += [
            '### Figure 4 samples (s, in run order)',
            '',
            '- `ansible localhost -m qemu.vm.qemu_guest_facts -a qga=...`: {0}'.format(
                _samples(fig['facts_s'], '{0:.2f}')),
            '- `ansible localhost -m ansible.builtin.ping`: {0}'.format(_samples(fig['ping_s'], '{0:.2f}')),
            '',
        ]
    return '\n'.join(out)


def markdown(results, table_text):
    with open(os.path.join(HERE, 'methods.md')) as handle:
        methods = handle.read().strip()
    return '\n'.join([
        '# qemu.vm benchmarks',
        '',
        'Generated by `make bench` (bench/run.py); do not edit by hand: the method and the analysis of the '
        'targets are in bench/methods.md, which is copied below.',
        '',
        '## Machine',
        '',
        _machine(results),
        '',
        '## Results',
        '',
        table_text,
        '',
        _details(results),
        methods,
        '',
    ])
