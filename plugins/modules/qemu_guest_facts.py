#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_guest_facts
short_description: Gather facts about a guest through the QEMU guest agent
version_added: 0.2.0
description:
  - Asks the guest agent about the guest and returns the answers as the C(qemu_guest) fact
    (RV(ansible_facts.qemu_guest)) agent version and commands, OS, host name, network interfaces,
    filesystems, disks, logged-in users, time zone, clock, vCPUs and the filesystem freeze status.
  - A command the agent does not offer, has disabled, or refuses because the guest filesystems are frozen
    is skipped and listed in RV(ansible_facts.qemu_guest.skipped), not a failure; facts can be gathered
    from a frozen guest.
  - Talks to the agent only; the guest is not changed.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  gather_subset:
    description:
      - Which facts to gather, as for M(ansible.builtin.setup).
      - V(all), V(min) (V(agent), V(os), V(hostname), V(fsfreeze)), or any of V(agent), V(os), V(hostname),
        V(network), V(filesystems), V(disks), V(users), V(timezone), V(time), V(vcpus), V(fsfreeze).
      - Prefix a name with C(!) to leave it out, for example V(!network). A list of only exclusions starts
        from V(all); V(!all) leaves V(min).
      - V(agent) is always gathered, it tells which commands can be asked.
    type: list
    elements: str
    default: [all]
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
  - qemu.vm._attributes.INFO_MODULE
notes:
  - Sockets - requires O(qga); O(qmp) is optional, used only to tell a silent agent from a VM that is not running.
  - Only the O(qga) socket is used; O(qmp) is accepted and ignored.
  - Key names follow the guest agent schema, with dashes turned into underscores
    (C(hardware-address) becomes C(hardware_address)).
seealso:
  - module: qemu.vm.qemu_vm_info
  - module: qemu.vm.qemu_guest_agent_wait
'''

EXAMPLES = r'''
- name: Gather guest facts
  qemu.vm.qemu_guest_facts:
    qga: /run/qemu/web1/qga.sock

- name: Show the guest's IPv4 addresses
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts.qemu_guest.network_interfaces
         | map(attribute='ip_addresses', default=[]) | flatten
         | selectattr('ip_address_type', 'equalto', 'ipv4')
         | map(attribute='ip_address') | list }}

- name: Only the cheap facts, and the network
  qemu.vm.qemu_guest_facts:
    qga: /run/qemu/web1/qga.sock
    gather_subset:
      - min
      - network
'''

RETURN = r'''
ansible_facts:
  description: Facts to add to the host's facts.
  returned: always
  type: dict
  contains:
    qemu_guest:
      description: What the guest agent reported. Subsets not gathered, or skipped, are absent.
      returned: always
      type: dict
      contains:
        agent:
          description: The agent.
          type: dict
          returned: always
          contains:
            version:
              description: The agent version.
              type: str
              sample: 7.2.19
            enabled_commands:
              description: Commands the agent offers and runs now.
              type: list
              elements: str
            disabled_commands:
              description: Commands the agent knows but refuses, blocked by its configuration, or all but a few
                while the guest is frozen.
              type: list
              elements: str
        gather_subset:
          description: The subsets that were asked for, after resolving V(all), V(min) and exclusions.
          type: list
          elements: str
          returned: always
          sample: [agent, os, hostname, fsfreeze]
        skipped:
          description: Subsets that could not be gathered.
          type: list
          elements: dict
          returned: always
          contains:
            subset:
              description: The subset name.
              type: str
            command:
              description: The agent command.
              type: str
              sample: guest-get-users
            reason:
              description: V(missing) (the agent does not offer it), V(disabled) (blocked in the agent
                configuration), V(frozen) (refused while the guest filesystems are frozen), V(failed)
                (the command failed in the guest).
              type: str
              sample: frozen
            msg:
              description: The error in words.
              type: str
        os:
          description: C(guest-get-osinfo) name, id, version, pretty_name, kernel_release, kernel_version, machine...
          type: dict
          returned: when gathered
          sample: {id: debian, kernel_release: 6.1.0-26-amd64, machine: x86_64, pretty_name: Debian GNU/Linux 12}
        hostname:
          description: The guest's host name.
          type: str
          returned: when gathered
          sample: web1
        network_interfaces:
          description: C(guest-network-get-interfaces).
          type: list
          elements: dict
          returned: when gathered
          contains:
            name:
              description: Interface name.
              type: str
              sample: eth0
            hardware_address:
              description: MAC address.
              type: str
              sample: 52:54:00:12:34:56
            ip_addresses:
              description: Addresses, each with C(ip_address), C(ip_address_type) (V(ipv4) or V(ipv6)) and C(prefix).
              type: list
              elements: dict
            statistics:
              description: Byte, packet, error and drop counters, when the agent reports them.
              type: dict
        filesystems:
          description: C(guest-get-fsinfo) name, mountpoint, type, used_bytes, total_bytes and the disks under each.
          type: list
          elements: dict
          returned: when gathered
        disks:
          description: C(guest-get-disks) name, partition, dependencies, address.
          type: list
          elements: dict
          returned: when gathered
        users:
          description: C(guest-get-users) logged-in users with user, domain and login_time.
          type: list
          elements: dict
          returned: when gathered
        timezone:
          description: C(guest-get-timezone) zone and offset (seconds east of UTC).
          type: dict
          returned: when gathered
          sample: {zone: UTC, offset: 0}
        time:
          description: The guest clock.
          type: dict
          returned: when gathered
          contains:
            epoch_ns:
              description: Nanoseconds since the epoch, by the guest clock.
              type: int
            iso8601:
              description: The same, as UTC text.
              type: str
              sample: '2024-05-01T12:00:00Z'
            offset_from_host_ms:
              description: Guest clock minus the clock of the host that ran the module, in milliseconds
                (includes the agent round trip).
              type: int
        vcpus:
          description: C(guest-get-vcpus) logical_id, online, can_offline.
          type: list
          elements: dict
          returned: when gathered
        fsfreeze_status:
          description: V(thawed), V(frozen), or V(error) (an earlier thaw failed).
          type: str
          returned: when gathered
          sample: thawed
'''

from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._common import build_module, qga_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._guest.facts import gather_facts, resolve_gather_subset

ARGUMENT_SPEC = dict(
    gather_subset=dict(type='list', elements='str', default=['all']),
)


class FactsRequest(NamedTuple):
    subsets: list


def parse_request(params):
    return FactsRequest(resolve_gather_subset(params['gather_subset']))


def run(module):
    # parse
    request = parse_request(module.params)
    # ask
    with qga_session(module) as qga:
        facts = gather_facts(qga, request.subsets)
    # report
    return {'changed': False, 'ansible_facts': {'qemu_guest': facts}}


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qga',), supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
