# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""make bench: measure what a user feels, each figure beside its baselines (issues 8 and 18).

    .venv/bin/python bench/run.py [--runs 5] [--only 2,5] [--big-peer host|guest] [--report]

The figures are the files bench/fig<N>_*.py (see bench/registry.py). Each selected figure is
measured and its entry (samples, medians, rows, machine, commit, time, rounds) replaces that
figure's entry in bench/results.json, the entry it replaces kept as its "previous"; then
bench/results.md is rewritten from all entries. With fewer than 5 runs the merged result goes
to bench/output/results.{json,md} instead (a trial, not a figure). Scratch files, VM disks and
logs go to bench/output/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
for entry in (os.path.join(REPO_DIR, 'tests'), os.path.join(REPO_DIR, 'build', 'collections'), BENCH_DIR):
    if entry not in sys.path:
        sys.path.insert(0, entry)

# pylint: disable=wrong-import-position,import-error
import registry  # noqa: E402
import report  # noqa: E402
from figures import log  # noqa: E402
from harness.guest import QEMU_BINARY, VM, ensure_guest  # noqa: E402
from tools import load_average, machine  # noqa: E402

OUTPUT = os.path.join(BENCH_DIR, 'output')
RESULTS = os.path.join(BENCH_DIR, 'results')
FULL_RUNS = 5


def load(base):
    """{number (str): entry} from base.json ({} when there is none)."""
    if not os.path.exists(base + '.json'):
        return {}
    with open(base + '.json') as handle:
        data = json.load(handle)
    return data.get('figures', {})


def save(base, entries, figures):
    with open(base + '.json', 'w') as handle:
        json.dump({'format': 2, 'figures': entries}, handle, indent=2, sort_keys=True)
        handle.write('\n')
    with open(base + '.md', 'w') as handle:
        handle.write(report.markdown(entries, figures))


def _previous(entry):
    if not entry:
        return None
    return dict((k, entry[k]) for k in ('commit', 'measured_utc', 'rounds', 'seconds', 'rows', 'medians')
                if k in entry)


def measure(numbers, args, entries, base):
    figures = registry.FIGURES
    os.makedirs(OUTPUT, exist_ok=True)
    ctx = registry.Context(OUTPUT, args.runs, ensure_guest(), VM, log)
    ctx.big_peer = args.big_peer
    order = registry.schedule(numbers)
    log(f'figures in this order: {order}')
    try:
        for position, number in enumerate(order):
            figure = figures[number]
            host = machine(QEMU_BINARY)
            log(f'figure {number} ({figure.title}); machine {json.dumps(host)}')
            ctx.rounds = figure.rounds(args.runs)
            started = time.perf_counter()
            fig_samples = figure.measure(ctx)
            seconds = round(time.perf_counter() - started, 1)
            vms = dict((name, dict(registry.VM_SPECS.get(name, {}), **(spec or {})))
                       for name, spec in figure.vms.items())
            vms.update(fig_samples.pop('_vms', {}))
            entry = {
                'title': figure.title, 'samples': fig_samples, 'medians': report.medians(fig_samples),
                'rows': figure.rows(fig_samples), 'machine': host, 'commit': host['commit'],
                'measured_utc': host['date_utc'], 'rounds': ctx.rounds, 'runs': args.runs, 'seconds': seconds,
                'load_average': {'start': host['load_average_at_start'], 'end': load_average()}, 'vms': vms,
                'guest_agent': next((ctx.agent_versions[n] for n in figure.vms if n in ctx.agent_versions), None),
                'previous': _previous(entries.get(str(number))),
            }
            entries[str(number)] = entry
            save(base, entries, figures)  # a later figure that fails does not lose this one
            print(report.table({str(number): entry}), flush=True)
            later = set()
            for other in order[position + 1:]:
                later |= set(figures[other].vms)
            ctx.release(keep=later)
    finally:
        ctx.release()
    for name in ('random-64m.bin', 'random-1g.bin'):
        path = os.path.join(OUTPUT, name)
        if os.path.exists(path):
            os.unlink(path)
    return entries


def main(argv=None):
    figures = registry.discover()
    known = sorted(figures)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=int, default=int(os.environ.get('BENCH_RUNS', str(FULL_RUNS))),
                        help='base number of rounds (each figure scales it: see its rounds() in bench/fig*.py; '
                             'default 5; fewer writes a trial to bench/output/)')
    parser.add_argument('--only', default=','.join(str(n) for n in known),
                        help=f'comma-separated figures to measure (default: all, {known})')
    parser.add_argument('--big-peer', choices=['host', 'guest'], default='host',
                        help='figure 3 peer: qemu-ga on this host (default) or in the TCG guest (~15 min more)')
    parser.add_argument('--report', action='store_true',
                        help='measure nothing: rewrite bench/results.md from bench/results.json (after editing '
                             'bench/methods.md or a figure\'s rows/details)')
    args = parser.parse_args(argv)
    entries = load(RESULTS)
    if args.report:
        for number, entry in entries.items():
            if int(number) in figures:
                entry['rows'] = figures[int(number)].rows(entry['samples'])
        save(RESULTS, entries, figures)
        print(report.table(entries))
        return 0
    numbers = sorted(set(int(x) for x in args.only.split(',') if x.strip()))
    if not set(numbers) <= set(known) or args.runs < 1:
        parser.error(f'--only takes figures {known} and --runs a positive number')
    started = time.perf_counter()
    base = RESULTS if args.runs >= FULL_RUNS else os.path.join(OUTPUT, 'results')
    entries = measure(numbers, args, entries, base)
    print()
    print(report.table(entries))
    print('\nwrote {0}.md and {0}.json (measuring took {1:.0f} s)'.format(
        os.path.relpath(base, REPO_DIR), time.perf_counter() - started))
    return 0


if __name__ == '__main__':
    sys.exit(main())
