#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_guest_agent_wait
short_description: Wait until a guest's QEMU guest agent answers
version_added: 0.2.0
description:
  - Waits until the guest agent on O(qga) answers the C(guest-sync-delimited) handshake and a C(guest-ping),
    for example after the VM was started, rebooted or woken up, and fails when it did not within O(timeout).
  - Each attempt reconnects, so a socket QEMU has not created yet, or an agent that restarts, is found too.
  - Also answers on a guest whose filesystems are frozen (the agent still answers pings then).
author:
  - qemu.vm maintainers (@qemu-vm)
options: {}
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
  - qemu.vm._attributes.INFO_MODULE
notes:
  - O(timeout) bounds the whole wait here (default 30 seconds); a cold boot under emulation
    (no KVM) can take longer.
  - Only the O(qga) socket is used; O(qmp) is accepted and ignored.
seealso:
  - module: qemu.vm.qemu_guest_power
  - module: qemu.vm.qemu_guest_facts
'''

EXAMPLES = r'''
- name: Wait for the agent of a freshly started VM
  qemu.vm.qemu_guest_agent_wait:
    qga: /run/qemu/web1/qga.sock
    timeout: 120
  register: agent

- name: Show how long it took
  ansible.builtin.debug:
    msg: "qemu-ga {{ agent.version }} answered after {{ agent.elapsed_ms }} ms"
'''

RETURN = r'''
elapsed_ms:
  description: How long the module waited until the agent answered, in milliseconds.
  returned: success
  type: int
  sample: 2480
version:
  description: The agent's version, from C(guest-info).
  returned: success
  type: str
  sample: 7.2.19
'''

from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._common import Stopwatch, build_module, qga_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import agent_version
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import wait_for_agent

ARGUMENT_SPEC = dict()
#: One handshake attempt; a sync sent while the guest boots may be lost, so retry often.
ATTEMPT_SECONDS = 3.0


class WaitRequest(NamedTuple):
    qga: str
    timeout: float


def parse_request(params):
    return WaitRequest(params['qga'], params['timeout'])


def run(module):
    # parse
    request = parse_request(module.params)
    # ask
    watch = Stopwatch()
    wait_for_agent(request.qga, request.timeout, attempt_timeout=ATTEMPT_SECONDS)
    elapsed = watch.ms
    with qga_session(module) as qga:
        version = agent_version(qga)
    # report
    return {'changed': False, 'elapsed_ms': elapsed, 'version': version}


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qga',), supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
