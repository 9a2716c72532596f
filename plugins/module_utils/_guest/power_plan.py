# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Guest power decisions, without I/O: which states exist, how each is reached and
recognised, what a request needs (parse_request -> PowerRequest), and what to do from QEMU's
run state (plan_power, or decide -> PowerPlan).

power.py carries the plans out.
"""

from __future__ import annotations

from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, VMStateError

POWER_STATES = ('poweroff', 'halt', 'reboot', 'suspended_ram', 'suspended_disk', 'suspended_hybrid', 'running')
DOWN_STATES = ('poweroff', 'halt', 'suspended_disk')

BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id'
BOOT_ID_COMMANDS = ('guest-file-open', 'guest-file-read', 'guest-file-close')


class _Transition:
    def __init__(self, command, arguments, events, done_status, gone_ok=False, needs_wakeup=False):
        self.command = command
        self.arguments = arguments
        self.events = events
        self.done_status = done_status
        self.gone_ok = gone_ok
        self.needs_wakeup = needs_wakeup


#: How each requested state is reached through the agent and recognised through QMP.
TRANSITIONS = {
    'poweroff': _Transition('guest-shutdown', {'mode': 'powerdown'}, ('SHUTDOWN',), ('shutdown',)),
    # A halted guest stops its CPUs without telling QEMU: only the agent going silent shows it.
    'halt': _Transition('guest-shutdown', {'mode': 'halt'}, ('SHUTDOWN',), ('shutdown',), gone_ok=True),
    'reboot': _Transition('guest-shutdown', {'mode': 'reboot'}, ('RESET',), ()),
    'suspended_ram': _Transition('guest-suspend-ram', None, ('SUSPEND',), ('suspended',), needs_wakeup=True),
    'suspended_hybrid': _Transition('guest-suspend-hybrid', None, ('SUSPEND',), ('suspended',), needs_wakeup=True),
    # Suspend to disk writes the image, then powers the guest off.
    'suspended_disk': _Transition('guest-suspend-disk', None, ('SHUTDOWN',), ('shutdown',)),
}

#: QEMU run states in which each requested state already holds.
ALREADY = {
    'poweroff': ('shutdown',),
    'halt': ('shutdown',),
    'reboot': (),
    'suspended_ram': ('suspended',),
    'suspended_hybrid': ('suspended',),
    'suspended_disk': ('shutdown',),
    'running': ('running',),
}

#: The module's name for each requested state once reached.
REACHED = {
    'poweroff': 'shutdown',
    'halt': 'halted',
    'reboot': 'running',
    'suspended_ram': 'suspended',
    'suspended_hybrid': 'suspended',
    'suspended_disk': 'shutdown',
    'running': 'running',
}

#: Bound on one "is the agent still there" probe, when the agent's silence is the signal.
AGENT_PROBE_SECONDS = 3.0
#: Bound on one attempt to read the boot id while the guest reboots.
BOOT_PROBE_SECONDS = 5.0
#: How long wait=false listens for an immediate refusal from the agent.
NO_WAIT_LISTEN_SECONDS = 1.0
#: How long one wait for a QMP event lasts before the run state is read again.
SLICE_SECONDS = 0.25


def check_power_request(state, force, has_qmp, has_qga):
    """ParameterError naming the option when the request cannot be carried out as given."""
    if state not in POWER_STATES:
        raise ParameterError('state', 'state: {0!r} is not one of {1}'.format(state, ', '.join(POWER_STATES)))
    if force and state not in ('poweroff', 'halt'):
        raise ParameterError('force', f'force: only applies to state=poweroff and state=halt, not {state}')
    if force and not has_qmp:
        raise ParameterError('force', 'force: needs qmp, the escalation (system_powerdown, then quit) goes through QMP')
    if state in ('suspended_ram', 'suspended_hybrid') and not has_qmp:
        raise ParameterError('qmp', f'qmp is required for state={state}: QEMU must be asked whether it can wake the guest '
                                    'again before the guest suspends to RAM')
    if state != 'running' and not has_qga and not (force and has_qmp):
        raise ParameterError('qga', f'qga is required for state={state}: the guest is asked through its agent')
    if state == 'running' and not has_qmp and not has_qga:
        raise ParameterError('qmp', 'state=running needs qmp (to wake a suspended guest) or qga (to see that it runs)')


class PowerRequest(NamedTuple):
    """qemu_guest_power's options, checked without the VM."""

    state: str
    force: bool
    wait: bool
    qmp: str | None
    qga: str | None


class PowerPlan(NamedTuple):
    """`action` (see plan_power) to bring the guest from `run_state` to `state`."""

    state: str
    run_state: str | None
    action: str


def parse_request(params: dict) -> PowerRequest:
    """The module's options; ParameterError naming the option when they cannot be carried out."""
    request = PowerRequest(params['state'], params['force'], params['wait'], params.get('qmp'), params.get('qga'))
    check_power_request(request.state, request.force, request.qmp is not None, request.qga is not None)
    return request


def decide(state, run_state, has_qga) -> PowerPlan:
    """The PowerPlan for `state` from QEMU's `run_state` (None without QMP)."""
    return PowerPlan(state, run_state, plan_power(state, run_state, has_qga))


def plan_power(state, run_state, has_qga):
    """What to do: 'none', 'agent' (ask the guest), 'escalate' (ACPI, then quit), 'wakeup' or 'probe'.

    `run_state` is QEMU's run state, None without QMP. Raises VMStateError when the
    VM is in a state from which the request cannot be reached.
    """
    if state == 'running':
        if run_state is None:
            return 'probe'  # only the agent can be asked: it answering is the guest running
        if run_state == 'running':
            return 'none'
        if run_state != 'suspended':
            raise VMStateError(not_wakeable(run_state))
        return 'wakeup'
    if run_state is not None:
        if run_state in ALREADY[state]:
            return 'none'
        if run_state != 'running':
            raise VMStateError(cannot_act(state, run_state))
    return 'agent' if has_qga else 'escalate'


class PowerResult:
    def __init__(self):
        self.changed = False
        self.state_before = None
        self.state_after = None
        self.method = 'none'
        self.confirmed_by = None
        self.duration_ms = 0
        self.warnings = []
        self.events = []

    def as_dict(self):
        return {
            'changed': self.changed,
            'state_before': self.state_before,
            'state_after': self.state_after,
            'method': self.method,
            'confirmed_by': self.confirmed_by,
            'duration_ms': self.duration_ms,
            'events': self.events,
        }


def cannot_act(state, status):
    if status == 'suspended':
        return (f'state={state} refused: the guest is suspended (QEMU run state suspended) and its agent cannot '
                'answer; wake it first with state=running')
    if status == 'shutdown':
        return (f'state={state} refused: the guest is shut down (QEMU run state shutdown); this module does not '
                'start guests')
    return (f'state={state} refused: QEMU run state is {status!r}, the guest CPUs must be running for the agent to act '
            '(resume a paused VM with QMP cont)')


def not_wakeable(status):
    if status == 'shutdown':
        return ('state=running refused: the guest is shut down (QEMU run state shutdown); waking only works '
                'for a suspended guest, and this module does not start guests')
    return (f'state=running refused: QEMU run state is {status!r}; state=running only wakes a suspended guest '
            '(resume a paused VM with QMP cont)')
