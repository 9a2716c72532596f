#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_guest_power
short_description: Power off, halt, reboot, suspend or wake a guest through its agent and QMP
version_added: 0.2.0
description:
  - Asks the guest, through its agent, to power off, halt, reboot or suspend (C(guest-shutdown),
    C(guest-suspend-ram), C(guest-suspend-disk), C(guest-suspend-hybrid)), and wakes a suspended guest
    with QMP C(system_wakeup).
  - These agent commands send no reply when they work. With O(qmp), the outcome is confirmed through
    QEMU (C(SHUTDOWN), C(SUSPEND), C(RESET), C(WAKEUP) events and C(query-status)). Without O(qmp), it is
    confirmed by the agent going silent (and, for a reboot, answering again).
  - A guest that refuses (for example one that cannot suspend to disk without swap) fails the task with
    the agent's own error.
  - "Idempotent where QEMU shows the state with O(qmp): a guest already shut down is unchanged for
    O(state=poweroff), O(state=halt) and O(state=suspended_disk), an already suspended guest for
    O(state=suspended_ram) and O(state=suspended_hybrid), a running guest for O(state=running).
    O(state=reboot) always reboots."
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  state:
    description:
      - V(poweroff) shuts the guest down and powers it off.
      - V(halt) shuts the guest down and stops its CPUs without powering off. QEMU cannot see a halted guest,
        it still reports C(running); the module confirms the halt by the agent going silent. A second run
        therefore finds no agent and fails, unless the guest powered off (QEMU run state C(shutdown)).
      - V(reboot) restarts the guest and, with O(wait), waits until its agent answers again.
      - V(suspended_ram) suspends to RAM (S3). Needs O(qmp); QEMU must report that it can wake the guest
        (C(query-current-machine) C(wakeup-suspend-support)) and offer C(system_wakeup), as the agent's
        schema demands; otherwise the task is refused before the guest is touched.
      - V(suspended_disk) hibernates (S4); the guest writes its memory to its swap and powers off.
      - V(suspended_hybrid) writes the memory to disk and suspends to RAM. Needs O(qmp) as V(suspended_ram).
      - V(running) wakes a suspended guest with QMP C(system_wakeup) and, with O(qga) and O(wait), waits until
        the agent answers again. It does not start a shut-down guest nor resume a paused VM.
    type: str
    required: true
    choices: [poweroff, halt, reboot, suspended_ram, suspended_disk, suspended_hybrid, running]
  wait:
    description:
      - Wait until the transition is confirmed (see the description), each wait bounded by O(timeout).
      - When false, the module only checks that the agent did not refuse within a second, and returns.
    type: bool
    default: true
  force:
    description:
      - B(Destructive.) With O(state=poweroff) or O(state=halt), when the guest does not comply within O(timeout)
        (the agent does not answer, refuses, or the guest does not go down), press the virtual ACPI power button
        (QMP C(system_powerdown)); when the guest ignores that too for O(timeout), end QEMU with QMP C(quit),
        which is like pulling the plug; guest data not yet on disk is lost, and the QEMU process exits.
      - Needs O(qmp). Each escalation step is reported as a warning and in RV(method).
    type: bool
    default: false
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
attributes:
  idempotent:
    support: partial
    details:
      - With O(qmp), a guest already in the requested state is unchanged; O(state=reboot) always reboots and reports
        changed.
  check_mode:
    support: full
    details:
      - Reads the state and checks the preconditions, and reports what would be done.
  diff_mode:
    support: full
    details:
      - Shows the state before and after.
notes:
  - Sockets - requires O(qga) (except O(state=running), which needs only O(qmp)); O(qmp) confirms the outcome through
    QEMU and is needed for O(state=running), suspending to RAM and O(force).
  - O(timeout) bounds each wait separately the agent handshake, the transition, the agent coming back
    after a reboot or wake-up, and each O(force) step.
  - Without O(qmp), a guest whose agent stops answering for 3 seconds is taken as gone; give O(qmp)
    whenever you can.
  - After a reboot or wake-up the agent may take a while to come back; M(qemu.vm.qemu_guest_agent_wait)
    waits for it separately.
seealso:
  - module: qemu.vm.qemu_guest_agent_wait
  - module: qemu.vm.qemu_vm_info
'''

EXAMPLES = r'''
- name: Shut the guest down cleanly
  qemu.vm.qemu_guest_power:
    qmp: /run/qemu/web1/qmp.sock
    qga: /run/qemu/web1/qga.sock
    state: poweroff

- name: Reboot and wait until the agent answers again
  qemu.vm.qemu_guest_power:
    qmp: /run/qemu/web1/qmp.sock
    qga: /run/qemu/web1/qga.sock
    state: reboot
    timeout: 120

- name: Suspend to RAM, then wake up
  qemu.vm.qemu_guest_power:
    qmp: /run/qemu/web1/qmp.sock
    qga: /run/qemu/web1/qga.sock
    state: "{{ item }}"
  loop:
    - suspended_ram
    - running

- name: Power off, pulling the plug if the guest does not comply within a minute (destructive)
  qemu.vm.qemu_guest_power:
    qmp: /run/qemu/web1/qmp.sock
    qga: /run/qemu/web1/qga.sock
    state: poweroff
    force: true
    timeout: 60
'''

RETURN = r'''
state_before:
  description:
    - With O(qmp), QEMU's run state before the task (C(query-status)), for example V(running), V(suspended),
      V(shutdown), V(paused).
    - Without O(qmp), V(running) when the agent answered.
  returned: always
  type: str
  sample: running
state_after:
  description:
    - The state reached (in check mode, the one predicted). With O(qmp), QEMU's run state, or V(halted) (QEMU
      reports running but the agent went silent after a halt), or V(exited) (QEMU quit).
    - Without O(qmp), V(agent_gone) (the agent went silent) or V(running) (it answers).
    - With O(wait=false), QEMU's run state right after the request, or V(unknown) without O(qmp).
  returned: always
  type: str
  sample: shutdown
method:
  description: V(agent), V(system_wakeup), V(acpi) (O(force) pressed the power button), V(quit) (O(force)
    ended QEMU), or V(none) when nothing was done.
  returned: always
  type: str
  sample: agent
confirmed_by:
  description: What showed the transition happened, for example V(SHUTDOWN event), V(query-status suspended),
    V(agent went silent); V(null) when nothing was done or O(wait=false).
  returned: always
  type: str
  sample: SHUTDOWN event
duration_ms:
  description: Milliseconds from the request to its confirmation (including the agent coming back after a
    reboot or wake-up); V(0) when nothing was done.
  returned: always
  type: int
  sample: 5120
events:
  description: Names of the QMP events seen during the transition, in order.
  returned: always
  type: list
  elements: str
  sample: [SHUTDOWN, STOP]
'''

from ansible_collections.qemu.vm.plugins.module_utils._common import build_module, qga_session, qmp_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._guest.power import GuestPower
from ansible_collections.qemu.vm.plugins.module_utils._guest.power_plan import POWER_STATES, decide, parse_request
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import wait_for_agent

ARGUMENT_SPEC = dict(
    state=dict(type='str', required=True, choices=list(POWER_STATES)),
    wait=dict(type='bool', default=True),
    force=dict(type='bool', default=False),
)
#: One handshake attempt while waiting for the agent to come back.
ATTEMPT_SECONDS = 3.0


def _wait_for_agent(address, timeout):
    return wait_for_agent(address, timeout, attempt_timeout=ATTEMPT_SECONDS)


def run(module):
    # parse
    request = parse_request(module.params)
    qmp = qmp_session(module) if request.qmp else None
    if qmp is not None:
        qmp.open()
    try:
        power = GuestPower(
            qmp, lambda: qga_session(module), request.qga, module.params['timeout'],
            force=request.force, wait=request.wait, check_mode=module.check_mode,
            wait_for_agent=_wait_for_agent)
        # ask
        run_state = power.run_state()
        # decide
        plan = decide(request.state, run_state, request.qga is not None)
        # act
        outcome = power.carry_out(plan)
    finally:
        if qmp is not None:
            qmp.close()
    # report
    for warning in outcome.warnings:
        module.warn(warning)
    result = outcome.as_dict()
    if outcome.changed:
        result['diff'] = {'before': {'state': outcome.state_before}, 'after': {'state': outcome.state_after}}
    return result


def main():
    module = build_module(ARGUMENT_SPEC, supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
