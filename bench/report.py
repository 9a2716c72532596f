# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn bench/results.json (one entry per figure) into the table and bench/results.md."""

from __future__ import annotations

import os

from tools import median  # pylint: disable=import-error

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1 << 20


def row(key, figure, value, unit, baseline, base_value, target=None, higher_is_better=False, ratio=True):
    """One line of the table; `target` is the bound on value/base_value (or on value when ratio=False)."""
    out = {'key': key, 'figure': figure, 'value': value, 'unit': unit, 'baseline': baseline,
           'baseline_value': base_value, 'ratio': None, 'target': target, 'higher_is_better': higher_is_better,
           'met': None}
    if ratio and value is not None and base_value:
        out['ratio'] = value / base_value
    measured = out['ratio'] if ratio else value
    if target is not None and measured is not None:
        out['met'] = measured >= target if higher_is_better else measured <= target
    return out


def samples(values, fmt='{0:.0f}'):
    """Values in run order, comma-separated."""
    return ', '.join(fmt.format(v) for v in values)


def paired(numerators, denominators):
    """Per-round ratios of two interleaved series (same round)."""
    return [a / b for a, b in zip(numerators, denominators) if b]


def num(value, unit):
    if value is None:
        return '-'
    if unit == 'ms':
        return f'{value:.0f} ms'
    if unit == 's':
        return f'{value:.2f} s'
    if unit == 'MB/s':
        return f'{value:.2f} MB/s'
    return f'{value:.1f} {unit}'


def _target(item):
    if item['target'] is None:
        return '(context)'
    sign = '≥' if item['higher_is_better'] else '≤'
    if item['ratio'] is None and item['baseline_value'] is None:
        return '{0} {1:g} {2}'.format(sign, item['target'], item['unit'])
    return '{0} {1:g}×'.format(sign, item['target'])


def _before(item, previous):
    """The same row in the figure's previous measurement: value (ratio)."""
    for old in (previous or {}).get('rows', []):
        if old['key'] == item['key']:
            text = num(old['value'], old['unit'])
            if old.get('ratio') is not None:
                text += ' ({0:.2f}×)'.format(old['ratio'])
            return text
    return ''


def _ratio(item):
    if item['ratio'] is None:
        return '-'
    text = '{0:.2f}'.format(item['ratio'])
    if item['target'] is not None and float(text) == item['target'] and item['met'] is False:
        text = '{0:.3f}'.format(item['ratio'])  # 0.104 shows as 0.10, which would read as met
    return text + '×'


def table(entries):
    """The figure table over `entries` ({number: entry}), figures in number order."""
    header = ['#', 'Figure', 'Value', 'Baseline', 'Baseline value', 'Ratio', 'Target', 'Result', 'Before']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for column in header) + '|']
    for number in sorted(entries, key=int):
        entry = entries[number]
        for item in entry['rows']:
            ratio = _ratio(item)
            result = {True: 'met', False: 'MISSED', None: ''}[item['met']]
            cells = [item['key'], item['figure'], num(item['value'], item['unit']), item['baseline'],
                     num(item['baseline_value'], item['unit']), ratio, _target(item), result,
                     _before(item, entry.get('previous'))]
            lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def medians(sample_dict):
    """{name: median} for every list of numbers in a figure's samples."""
    out = {}
    for name, values in sorted(sample_dict.items()):
        if isinstance(values, list) and values and all(isinstance(v, (int, float)) for v in values):
            out[name] = median(values)
    return out


def _machine(entries):
    latest = max(entries.values(), key=lambda e: e['measured_utc'])
    m = latest['machine']
    return '\n'.join([
        '- CPU: {0}, {1} cores; RAM {2} GiB; {3}, kernel {4}'.format(
            m['cpu'], m['cores'], m['ram_gib'], m['os'], m['kernel']),
        '- {0}; accelerator: {1}'.format(m['qemu'], m['accelerator']),
        '- Guest: tests/guest tiny guest (busybox initramfs, 1 vCPU, machine pc); each figure names its VMs below',
        '- Python {0}, ansible-core {1}, qemu.qmp {2}, host {3}'.format(m['python'], m['ansible_core'], m['qemu_qmp'],
                                                                        m['qemu_ga']),
        '- Each figure is measured on its own (`bench/run.py --only N` merges it into bench/results.json); '
        'its section says at which commit, when, with how many rounds and how busy the (shared) machine was.',
    ])


def _vm_text(vms):
    parts = []
    for name, spec in sorted((vms or {}).items()):
        spec = spec or {}
        text = '{0}: {1} MiB RAM'.format(name, spec.get('memory', 256))
        if spec.get('python'):
            text += ', python disk'
        if spec.get('count'):
            text = '{0} × {1}'.format(spec['count'], text)
        parts.append(text)
    return '; '.join(parts) or 'no VM'


def section_header(number, entry):
    lines = ['### Figure {0}: {1}'.format(number, entry['title']), '']
    lines.append('- Measured {0} at commit {1}; rounds {2}; took {3:.0f} s; load average {4} at start, {5} at the '
                 'end; VMs: {6}; guest agent {7}'.format(
                     entry['measured_utc'], entry['commit'], entry['rounds'], entry['seconds'],
                     entry['load_average']['start'], entry['load_average']['end'], _vm_text(entry.get('vms')),
                     entry.get('guest_agent') or '-'))
    previous = entry.get('previous')
    if previous:
        lines.append('- Previous measurement (column "Before"): {0} at commit {1}, rounds {2}'.format(
            previous['measured_utc'], previous['commit'], previous['rounds']))
    lines.append('')
    return lines


def markdown(entries, figures):
    """bench/results.md: machine, table, each figure's section, then bench/methods.md."""
    with open(os.path.join(HERE, 'methods.md')) as handle:
        methods = handle.read().strip()
    out = [
        '# qemu.vm benchmarks',
        '',
        'Generated by `make bench` (bench/run.py) from bench/results.json; do not edit by hand: the method and '
        'the analysis of the targets are in bench/methods.md, which is copied below.',
        '',
        '## Machine',
        '',
        _machine(entries),
        '',
        '## Results',
        '',
        table(entries),
        '',
    ]
    for number in sorted(entries, key=int):
        entry = entries[number]
        out += section_header(number, entry)
        figure = figures.get(int(number))
        if figure is not None:
            out += list(figure.details(entry['samples']))
        out.append('')
    out += [methods, '']
    return '\n'.join(out)
