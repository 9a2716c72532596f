# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""What qemu_vm does, decided from the request and what was found. Pure: no I/O.

`decide(request, observed)` -> Plan:

  state       found                                     action    notes
  running     alive, definition as recorded             none      unchanged
  running     alive, definition differs                 none      changed, restart_required (restart: false)
  running     alive, definition differs, restart: true  restart
  running     not alive                                 start     recovered when the record says it should run
  restarted   alive                                     restart
  restarted   not alive                                 start     recovered as above
  stopped     alive                                     stop
  stopped     not alive                                 none      the record is marked stopped quietly
  absent      alive                                     remove    stops it first
  absent      run directory, not alive                  remove
  absent      nothing                                   none

No Ansible imports here.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from ansible_collections.qemu.vm.plugins.module_utils._vm.definition import differences

ACTIONS = ('none', 'start', 'restart', 'stop', 'remove')


class Observed(NamedTuple):
    exists: bool  # the run directory is there
    pid: Optional[int]  # the live QEMU process, or None
    record: Optional[dict]  # vm.json: the definition applied at the last start, and more

    @property
    def alive(self):
        return self.pid is not None

    @property
    def state(self):
        if self.alive:
            return 'running'
        return 'stopped' if self.exists else 'absent'

    @property
    def definition(self):
        return (self.record or {}).get('definition')


class Plan(NamedTuple):
    action: str
    changed: bool
    state_after: str
    differences: tuple = ()
    restart_required: bool = False
    recovered: bool = False
    mark_stopped: bool = False

    @property
    def starts(self):
        return self.action in ('start', 'restart')


def decide(request, observed):
    wanted = request.definition
    if request.state in ('running', 'restarted'):
        if not observed.alive:
            should_run = (observed.record or {}).get('state') == 'running'
            return Plan('start', True, 'running', tuple(differences(observed.definition, wanted)), recovered=should_run)
        diff = tuple(differences(observed.definition, wanted))
        if request.state == 'restarted' or (diff and request.restart):
            return Plan('restart', True, 'running', diff)
        if diff:
            return Plan('none', True, 'running', diff, restart_required=True)
        return Plan('none', False, 'running')
    if request.state == 'stopped':
        if observed.alive:
            return Plan('stop', True, 'stopped')
        marked = observed.exists and (observed.record or {}).get('state') == 'running'
        return Plan('none', False, observed.state, mark_stopped=marked)
    if observed.exists:
        return Plan('remove', True, 'absent')
    return Plan('none', False, 'absent')


def diff_of(plan, observed, wanted):
    """--diff: the state, and the definition's values that change (all of them for a new VM)."""
    before = {'state': observed.state}
    after = {'state': plan.state_after}
    recorded = observed.definition or {}
    if plan.starts or plan.restart_required:
        for key in plan.differences:
            if observed.exists:
                before[key] = recorded.get(key)
            after[key] = wanted[key]
    return {'before': before, 'after': after}
