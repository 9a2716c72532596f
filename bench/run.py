# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""make bench: measure what a user feels, each figure beside its baselines (issue 8).

    .venv/bin/python bench/run.py [--runs 5] [--only 1,2,3,4] [--big-peer host|guest]

Boots the tiny test guest (tests/harness), runs the four figures, prints the table and
writes bench/results.md and bench/results.json (with --only: bench/output/results-partial.*).
Scratch files, VM disks and logs go to bench/output/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
for entry in (os.path.join(REPO_DIR, 'tests'), os.path.join(REPO_DIR, 'build', 'collections'), BENCH_DIR):
    if entry not in sys.path:
        sys.path.insert(0, entry)

# pylint: disable=wrong-import-position,import-error
import figures  # noqa: E402
import report  # noqa: E402
from harness.guest import QEMU_BINARY, VM, ensure_guest  # noqa: E402
from tools import machine  # noqa: E402

OUTPUT = os.path.join(BENCH_DIR, 'output')


def _vm(name, images, memory):
    workdir = os.path.join(OUTPUT, name)
    shutil.rmtree(workdir, ignore_errors=True)
    return VM(workdir, name='bench-' + name, memory=memory, images=images)


def run(args):
    os.makedirs(OUTPUT, exist_ok=True)
    chosen = set(args.only)
    # Figures 1 and 4 are cheap and the noisiest (a ~150 ms save on a shared machine; Ansible's
    # start-up): they get more rounds.
    rounds = {'fig1': args.runs * 3, 'fig2': args.runs, 'fig4': args.runs * 2}
    results = {'runs': args.runs, 'rounds': rounds, 'machine': machine(QEMU_BINARY), 'seconds': {}}
    figures.log('machine: {0}'.format(json.dumps(results['machine'])))
    images = ensure_guest()
    started = time.perf_counter()

    if chosen & {1, 4}:
        vm = _vm('vm-small', images, 256)
        vm.start(timeout=120)
        results['guest_agent'] = vm.qga('guest-info')['version']
        try:
            if 4 in chosen:
                mark = time.perf_counter()
                results['fig4'] = figures.task_overhead(vm, rounds['fig4'])
                results['seconds']['fig4'] = round(time.perf_counter() - mark, 1)
            if 1 in chosen:
                mark = time.perf_counter()
                results['fig1'] = figures.frozen_window(vm, rounds['fig1'], OUTPUT)
                results['seconds']['fig1'] = round(time.perf_counter() - mark, 1)
        finally:
            vm.stop()

    big_in_guest = 3 in chosen and args.big_peer == 'guest'
    if 2 in chosen or big_in_guest:
        vm = _vm('vm-files', images, 1536)
        vm.start(timeout=120)
        try:
            if 2 in chosen:
                mark = time.perf_counter()
                results['fig2'] = figures.file_throughput(vm, rounds['fig2'], OUTPUT)
                results['seconds']['fig2'] = round(time.perf_counter() - mark, 1)
            if big_in_guest:
                mark = time.perf_counter()
                results['fig3'] = figures.peak_rss(OUTPUT, vm=vm)
                results['seconds']['fig3'] = round(time.perf_counter() - mark, 1)
        finally:
            vm.stop()

    if 3 in chosen and not big_in_guest:
        mark = time.perf_counter()
        results['fig3'] = figures.peak_rss(OUTPUT)
        results['seconds']['fig3'] = round(time.perf_counter() - mark, 1)

    results['seconds']['total'] = round(time.perf_counter() - started, 1)
    results['load_average_at_end'] = [round(x, 2) for x in os.getloadavg()]
    for name in ('random-64m.bin', 'random-1g.bin'):
        path = os.path.join(OUTPUT, name)
        if os.path.exists(path):
            os.unlink(path)
    return results


def rewrite_report(base):
    with open(base + '.json') as handle:
        results = json.load(handle)
    rows = report.rows(results)
    table = report.table(rows)
    with open(base + '.md', 'w') as handle:
        handle.write(report.markdown(results, table))
    print(table)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', type=int, default=int(os.environ.get('BENCH_RUNS', '5')),
                        help='rounds (medians over them): figure 2 this many, figure 1 three times, figure 4 twice as many '
                             '(default 5; fewer writes a partial result)')
    parser.add_argument('--only', default='1,2,3,4',
                        help='comma-separated figures to run; a partial run writes bench/output/results-partial.*')
    parser.add_argument('--big-peer', choices=['host', 'guest'], default='host',
                        help='figure 3 peer: qemu-ga on this host (default) or in the TCG guest (~15 min more)')
    parser.add_argument('--report', action='store_true',
                        help='measure nothing: rewrite bench/results.md from bench/results.json (after editing '
                             'bench/methods.md)')
    args = parser.parse_args(argv)
    if args.report:
        return rewrite_report(os.path.join(BENCH_DIR, 'results'))
    args.only = sorted(set(int(x) for x in args.only.split(',') if x.strip()))
    if not set(args.only) <= {1, 2, 3, 4} or args.runs < 1:
        parser.error('--only takes figures 1-4 and --runs a positive number')
    results = run(args)
    complete = args.only == [1, 2, 3, 4] and args.runs >= 5
    base = os.path.join(BENCH_DIR, 'results') if complete else os.path.join(OUTPUT, 'results-partial')
    rows = report.rows(results)
    results['rows'] = rows
    table = report.table(rows)
    print()
    print(table)
    with open(base + '.json', 'w') as handle:
        json.dump(results, handle, indent=2, sort_keys=True)
        handle.write('\n')
    with open(base + '.md', 'w') as handle:
        handle.write(report.markdown(results, table))
    print('\nwrote {0}.md and {0}.json (measuring took {1:.0f} s)'.format(
        os.path.relpath(base, REPO_DIR), results['seconds']['total']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
