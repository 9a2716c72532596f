#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_snapshot_info
short_description: List the internal snapshots of a QEMU VM as one view across its disks
version_added: 0.2.0
description:
  - Reads the internal snapshots of every writable disk of a VM through its QMP monitor and groups them by name,
    so that a snapshot present on all disks (loadable) is told apart from one present on only some (partial).
  - Snapshots are sorted by date, oldest first, with their size, date and guest clock.
  - Works in any run state and changes nothing.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  name:
    description:
      - Only report the snapshot with exactly this name.
    type: str
  prefix:
    description:
      - Only report snapshots whose names start with this string.
    type: str
  devices:
    description:
      - The disks to look at, by device id or format node name, as O(qemu.vm.qemu_snapshot#module:devices). The result
        names them by their format node names.
      - Default is every writable node at the top of a device's
        chain that can hold internal snapshots (qcow2), the same set O(qemu.vm.qemu_snapshot#module:state=present)
        snapshots by default.
    type: list
    elements: str
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
  - qemu.vm._attributes.INFO_MODULE
notes:
  - Sockets - requires O(qmp); O(qga) is not used.
seealso:
  - module: qemu.vm.qemu_snapshot
'''

EXAMPLES = r'''
- name: List the VM's snapshots
  qemu.vm.qemu_snapshot_info:
    qmp: /run/qemu/web1/qmp.sock
  register: snaps

- name: Names of the snapshots that can be loaded
  ansible.builtin.debug:
    msg: "{{ snaps.snapshots | selectattr('complete') | map(attribute='name') | list }}"

- name: Fail on partial snapshots (present on only some disks)
  ansible.builtin.assert:
    that: snaps.partial | length == 0
    fail_msg: "partial snapshots: {{ snaps.partial }}"

- name: Only the backup snapshots
  qemu.vm.qemu_snapshot_info:
    qmp: /run/qemu/web1/qmp.sock
    prefix: backup-
  register: backups
'''

RETURN = r'''
snapshots:
  description: The snapshots on RV(devices), oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The snapshot name (tag).
      type: str
      sample: before-upgrade
    id:
      description: QEMU's snapshot id in the image holding the RAM state (else the first device's).
      type: str
      sample: '1'
    vm_state_size:
      description: Bytes of RAM state stored, 0 for a disk-only snapshot.
      type: int
      sample: 105261596
    ram:
      description: Whether the snapshot carries RAM state (RV(snapshots[].vm_state_size) > 0). A snapshot without
        (disk-only, taken with O(qemu.vm.qemu_snapshot#module:ram=false)) cannot be loaded into a running VM, only
        reverted offline (O(qemu.vm.qemu_snapshot#module:images)).
      type: bool
      sample: true
    date:
      description: When it was taken, ISO 8601 in UTC.
      type: str
      sample: '2024-05-01T10:20:30Z'
    date_epoch:
      description: When it was taken, seconds since the epoch.
      type: int
      sample: 1714558830
    vm_clock:
      description: The guest clock (seconds the VM had run) at the snapshot.
      type: float
      sample: 7.608
    vmstate:
      description: The node holding the RAM state, or V(null) for a disk-only snapshot.
      type: str
      sample: disk0
    devices:
      description: The nodes that have this snapshot.
      type: list
      elements: str
      sample: [disk0, disk1]
    missing_devices:
      description: The nodes of RV(devices) that do not have it.
      type: list
      elements: str
      sample: []
    complete:
      description: Whether every node of RV(devices) has it (a snapshot that can be loaded as a whole).
      type: bool
devices:
  description: The nodes looked at.
  returned: always
  type: list
  elements: str
  sample: [disk0, disk1]
names:
  description: Names of RV(snapshots), oldest first.
  returned: always
  type: list
  elements: str
  sample: [before-upgrade]
partial:
  description: Names of the snapshots that exist on only some of RV(devices).
  returned: always
  type: list
  elements: str
  sample: []
status:
  description: The VM run state.
  returned: always
  type: str
  sample: running
'''

from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._common import build_module, qmp_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._snapshot.plan import choose_devices
from ansible_collections.qemu.vm.plugins.module_utils._util.params import check_devices
from ansible_collections.qemu.vm.plugins.module_utils._snapshot.view import read_view

ARGUMENT_SPEC = dict(
    name=dict(type='str'),
    prefix=dict(type='str'),
    devices=dict(type='list', elements='str'),
)


class InfoRequest(NamedTuple):
    name: str | None
    prefix: str | None
    devices: list | None


def parse_request(params):
    return InfoRequest(params['name'], params['prefix'], check_devices(params['devices']))


def run(module):
    # parse
    request = parse_request(module.params)
    name, prefix = request.name, request.prefix
    with qmp_session(module) as qmp:
        # ask
        status = qmp.run_state()
        view = read_view(qmp)
        scope = choose_devices(view, request.devices, 'list')
    # report
    snapshots = [s for s in view.summaries(scope)
                 if (name is None or s['name'] == name) and (prefix is None or s['name'].startswith(prefix))]
    return dict(
        changed=False,
        snapshots=snapshots,
        devices=scope,
        names=[s['name'] for s in snapshots],
        partial=[s['name'] for s in snapshots if not s['complete']],
        status=status,
    )


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qmp',), supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
