# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The figures of make bench: a registry that bench/run.py fills from bench/fig<N>_*.py.

A figure is one file, bench/fig<N>_<topic>.py, that calls `register(Figure(...))` at import:

    register(Figure(5, 'Fleet', vms={'fleet': None}, measure=measure, rows=rows, details=details))

* `measure(ctx)` runs the figure and returns a JSON-serializable dict of raw samples;
* `rows(samples)` turns those samples into table rows (`report.row(...)`);
* `details(samples)` returns markdown lines (the samples in run order, per-round ratios).

`vms` names the harness VMs the figure uses (`ctx.vm(name)`), so that figures sharing a VM run
one after the other and each VM is stopped after the last figure that needs it. A VM is
described once in VM_SPECS (or by the figure: `vms={'name': {'memory': 512}}`).
"""

from __future__ import annotations

import glob
import importlib
import os
import shutil
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))

#: name -> harness VM keyword arguments (tests/harness/guest.py VM).
VM_SPECS = {
    'small': {'memory': 256},
    'files': {'memory': 1536, 'python': True},
    'python': {'memory': 256, 'python': True},
}

FIGURES = {}


class Figure:
    """One figure: its number, a title, the VMs it uses and its three functions."""

    def __init__(self, number, title, measure, rows, details, vms=None, rounds=None):
        self.number = int(number)
        self.title = title
        self.measure = measure
        self.rows = rows
        self.details = details
        # vms: {name: None (use VM_SPECS[name]) or a dict of VM keyword arguments}
        self.vms = dict(vms or {})
        #: rounds(runs) -> the rounds this figure makes for `--runs runs` (recorded in its entry).
        self.rounds = rounds or (lambda runs: runs)


def register(figure):
    if figure.number in FIGURES and FIGURES[figure.number] is not figure:
        raise RuntimeError(f'figure {figure.number} is registered twice')
    FIGURES[figure.number] = figure
    return figure


def discover():
    """Import every bench/fig<N>_*.py (each registers itself); return FIGURES."""
    for path in sorted(glob.glob(os.path.join(BENCH_DIR, 'fig[0-9]*_*.py'))):
        importlib.import_module(os.path.splitext(os.path.basename(path))[0])
    return FIGURES


def schedule(numbers):
    """Run order: figures sharing a VM back to back (first-come VM order), then by number."""
    order = []
    left = sorted(numbers)
    while left:
        first = left.pop(0)
        order.append(first)
        shared = set(FIGURES[first].vms)
        for number in list(left):
            if shared & set(FIGURES[number].vms):
                order.append(number)
                left.remove(number)
                shared |= set(FIGURES[number].vms)
    return order


class Context:
    """What a figure's measure() gets: rounds, the output directory, VMs started on demand."""

    def __init__(self, output, runs, images, vm_class, log):
        self.output = output
        self.runs = runs
        self.images = images
        self.rounds = runs
        self.log = log
        self._vm_class = vm_class
        self._vms = {}
        self.agent_versions = {}

    def vm(self, name, spec=None):
        """The started harness VM `name` (booted on first use, kept until release())."""
        if name not in self._vms:
            kwargs = dict(VM_SPECS.get(name, {}))
            kwargs.update(spec or {})
            workdir = os.path.join(self.output, 'vm-' + name)
            shutil.rmtree(workdir, ignore_errors=True)
            machine = self._vm_class(workdir, name='bench-' + name, images=self.images, **kwargs)
            started = time.perf_counter()
            machine.start(timeout=120)
            self.log(f'VM {name} ({kwargs}) up in {time.perf_counter() - started:.1f} s')
            self.agent_versions[name] = machine.qga('guest-info')['version']
            self._vms[name] = machine
        return self._vms[name]

    def new_vm(self, workdir, name, **kwargs):
        """A VM the figure owns and stops itself (fleets)."""
        return self._vm_class(workdir, name=name, images=self.images, **kwargs)

    def release(self, keep=()):
        for name in list(self._vms):
            if name not in keep:
                self._vms.pop(name).stop()
