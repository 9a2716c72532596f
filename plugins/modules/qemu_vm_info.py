#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_vm_info
short_description: Read a QEMU VM's version, run state, block nodes and guest agent status
version_added: 0.2.0
description:
  - "Connects to the VM's QMP monitor socket and reports what a task needs to know before touching the VM:
    the QEMU version, the run state, the VM name and UUID, and its block nodes with the device ids and node
    names that backups and snapshots address disks by."
  - When O(qga) is given, also reports whether the guest agent answers, its version and which commands it enables.
    An agent that does not answer is reported (RV(agent.available=false)), not a failure.
author:
  - qemu.vm maintainers (@qemu-vm)
options: {}
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
  - qemu.vm._attributes.INFO_MODULE
notes:
  - Sockets - requires O(qmp); O(qga) is optional (the agent's status).
seealso:
  - module: qemu.vm.qemu_snapshot
'''

EXAMPLES = r'''
- name: Read the VM's state and block nodes
  qemu.vm.qemu_vm_info:
    qmp: /run/qemu/web1/qmp.sock
    qga: /run/qemu/web1/qga.sock
  register: web1

- name: Show the node names snapshots can use
  ansible.builtin.debug:
    msg: "{{ web1.block_nodes | selectattr('can_snapshot') | map(attribute='node_name') | list }}"
'''

RETURN = r'''
qemu_version:
  description: QEMU's version, from the QMP greeting.
  returned: always
  type: str
  sample: 7.2.19
qemu_package:
  description: The distribution's package version string QEMU reports, empty when none.
  returned: always
  type: str
  sample: Debian 1:7.2+dfsg-7+deb12u18
status:
  description: The run state from C(query-status), for example V(running), V(paused), V(shutdown), V(suspended), V(inmigrate).
  returned: always
  type: str
  sample: running
running:
  description: Whether the guest CPUs are running.
  returned: always
  type: bool
name:
  description: The VM name given with C(-name), or V(null).
  returned: always
  type: str
uuid:
  description: The VM UUID given with C(-uuid), or V(null) when none was set.
  returned: always
  type: str
block_nodes:
  description: The named block nodes; nodes attached to a device come first, in device order.
  returned: always
  type: list
  elements: dict
  contains:
    node_name:
      description: The node name to use in O(qemu.vm.qemu_snapshot#module:devices) and O(qemu.vm.qemu_snapshot#module:vmstate).
      type: str
      sample: disk0
    driver:
      description: The block driver, V(qcow2), V(raw), V(file)...
      type: str
    file:
      description: The image file name.
      type: str
    read_only:
      description: Whether the node is read-only.
      type: bool
    device:
      description: The id of the device this node is attached to (top of its chain), or V(null).
      type: str
      sample: vda
    top:
      description: Whether the node is the top of a device's chain.
      type: bool
    backing_file:
      description: The backing file, or V(null).
      type: str
    virtual_size:
      description: The disk size seen by the guest, in bytes.
      type: int
    can_snapshot:
      description: Whether this node can hold internal snapshots (a writable qcow2 node).
      type: bool
    snapshots:
      description: Names of the internal snapshots in this node's image.
      type: list
      elements: str
agent:
  description: The guest agent, when O(qga) was given.
  returned: when O(qga) is set
  type: dict
  contains:
    available:
      description: Whether the agent answered the guest-sync-delimited handshake within the handshake timeout.
      type: bool
    error:
      description: Why the agent is not available.
      type: str
      returned: when RV(agent.available=false)
    version:
      description: The agent's version.
      type: str
      returned: when RV(agent.available=true)
    enabled_commands:
      description: Commands the agent offers and has enabled.
      type: list
      elements: str
      returned: when RV(agent.available=true)
    disabled_commands:
      description: Commands the agent knows but has disabled or blocked.
      type: list
      elements: str
      returned: when RV(agent.available=true)
'''

from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._qemu.block import block_nodes
from ansible_collections.qemu.vm.plugins.module_utils._common import build_module, qga_session, qmp_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._errors import AgentNotRespondingError

ARGUMENT_SPEC = dict()


class InfoRequest(NamedTuple):
    with_agent: bool  # qga given: report the agent too


def parse_request(params):
    return InfoRequest(bool(params['qga']))


def vm_facts(qmp):
    name = qmp.execute('query-name').get('name')
    uuid = qmp.execute('query-uuid').get('UUID')
    status = qmp.execute('query-status')
    return {
        'qemu_version': qmp.version_string,
        'qemu_package': qmp.version['package'],
        'status': status['status'],
        'running': bool(status.get('running')),
        'name': name,
        'uuid': None if not uuid or uuid.strip('0-') == '' else uuid,
        'block_nodes': block_nodes(qmp),
    }


def agent_facts(module):
    try:
        with qga_session(module) as qga:
            info = qga.info()
    except AgentNotRespondingError as exc:
        return {'available': False, 'error': str(exc)}
    commands = info.get('supported_commands', [])
    return {
        'available': True,
        'version': info.get('version'),
        'enabled_commands': sorted(c['name'] for c in commands if c.get('enabled', True)),
        'disabled_commands': sorted(c['name'] for c in commands if not c.get('enabled', True)),
    }


def run(module):
    # parse
    request = parse_request(module.params)
    # ask
    with qmp_session(module) as qmp:
        result = vm_facts(qmp)
    if request.with_agent:
        result['agent'] = agent_facts(module)
    # report
    result['changed'] = False
    return result


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qmp',), supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
