#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_backup_info
short_description: List the external backup chains in a directory, and whether a VM can continue them
version_added: 0.2.0
description:
  - Reads the chains that M(qemu.vm.qemu_backup) wrote under O(dest) (one directory per chain with a
    C(manifest.json)), with their points, files and sizes, oldest first. Other files and directories are ignored.
  - With O(qmp), also says for each chain of that VM whether M(qemu.vm.qemu_backup) would add an incremental point
    to it (RV(chains[].valid)) and if not, why (RV(chains[].problem)), with the same decision as
    M(qemu.vm.qemu_backup). Only the newest chain of a VM is ever continued.
  - Changes nothing.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  dest:
    description:
      - Absolute path of the directory holding the chains.
    type: path
    required: true
  devices:
    description:
      - With O(qmp), the disks the backups cover, as O(qemu.vm.qemu_backup#module:devices) (default every writable
        qcow2 disk).
    type: list
    elements: str
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
  - qemu.vm._attributes.INFO_MODULE
notes:
  - Sockets - none required (it reads O(dest)); with O(qmp) it also says whether the VM can continue each chain.
  - Without O(qmp), RV(chains[].valid), RV(chains[].problem) and RV(chains[].current) are V(null).
seealso:
  - module: qemu.vm.qemu_backup
  - module: qemu.vm.qemu_backup_restore
'''

EXAMPLES = r'''
- name: List the backups of web1 and whether the next backup can be incremental
  qemu.vm.qemu_backup_info:
    qmp: /run/qemu/web1/qmp.sock
    dest: /srv/backup/web1
  register: backups

- name: Show the points of the newest chain
  ansible.builtin.debug:
    msg: "{{ backups.chains[-1].points | map(attribute='point') | list }}"
  when: backups.chains | length > 0
'''

RETURN = r'''
chains:
  description: The chains under O(dest), oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    chain:
      description: The chain id (its directory name, the id of its full point).
      type: str
      sample: 20261201T004512Z
    path:
      description: Absolute path of the chain directory.
      type: str
    bitmap:
      description: The name of the chain's dirty bitmap on the VM's disks.
      type: str
      sample: qemu-vm-20261201T004512Z
    created:
      description: When the chain's full point was taken (UTC).
      type: str
      sample: '2026-12-01T00:45:12Z'
    vm:
      description: The VM the chain was taken from, C(uuid) and C(name) (either may be V(null)).
      type: dict
    disks:
      description: The disks of the chain, C(device), C(node), C(virtual_size).
      type: list
      elements: dict
    bytes:
      description: Total size of the chain's files.
      type: int
    points:
      description: The points, oldest first, each with C(point), C(mode), C(parent), C(time), C(quiesced),
        C(bytes) and C(files) (C(device), absolute C(path), C(bytes), C(sha256), C(virtual_size)).
      type: list
      elements: dict
    missing_files:
      description: Files listed in the manifest that are not on disk.
      type: list
      elements: str
    vm_match:
      description: Whether the chain belongs to the VM behind O(qmp); V(null) without O(qmp).
      type: bool
    current:
      description: Whether this is the VM's newest chain, the one M(qemu.vm.qemu_backup) continues; V(null)
        without O(qmp).
      type: bool
    valid:
      description: Whether M(qemu.vm.qemu_backup) O(qemu.vm.qemu_backup#module:mode=auto) would add an incremental
        point to this chain; V(null) without O(qmp).
      type: bool
    problem:
      description: Why not, for example a bitmap missing or inconsistent, a disk added or resized; V(null) when
        valid or without O(qmp).
      type: str
total_bytes:
  description: Total size of the files of every chain.
  returned: always
  type: int
  sample: 123456789
'''

from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._backup.chain import (
    check_dest, list_chains, missing_files, same_vm, summary, vm_identity)
from ansible_collections.qemu.vm.plugins.module_utils._backup.job import read_disks
from ansible_collections.qemu.vm.plugins.module_utils._backup.leftovers import unrecorded_files
from ansible_collections.qemu.vm.plugins.module_utils._backup.plan import judge_chain, select_devices
from ansible_collections.qemu.vm.plugins.module_utils._common import build_module, qmp_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._util.params import check_devices

ARGUMENT_SPEC = dict(
    dest=dict(type='path', required=True),
    devices=dict(type='list', elements='str'),
)


class InfoRequest(NamedTuple):
    dest: str
    devices: list | None  # checked only with qmp: without the VM they are not used
    with_vm: bool  # qmp given: judge the chains against the VM


def parse_request(params):
    dest = check_dest(params['dest'])
    with_vm = bool(params['qmp'])
    return InfoRequest(dest, check_devices(params['devices']) if with_vm else None, with_vm)


def judge(module, request, entries):
    """{chain: (vm_match, current, problem)} against the VM behind qmp."""
    with qmp_session(module) as qmp:
        vm = vm_identity(qmp.execute('query-name').get('name'), qmp.execute('query-uuid').get('UUID'))
        disks, _warnings = select_devices(read_disks(qmp), request.devices)
    ours = [e for e in entries if same_vm(e['manifest'].get('vm'), vm)]
    verdicts = {}
    for entry in entries:
        if entry not in ours:
            verdicts[entry['chain']] = (False, False, 'the chain belongs to another VM')
        elif entry is not ours[-1]:
            verdicts[entry['chain']] = (True, False, 'not the newest chain of this VM: only the newest is continued')
        else:
            missing = missing_files(entry['dir'], entry['manifest'])
            unrecorded = unrecorded_files(entry['dir'], entry['manifest'])
            verdicts[entry['chain']] = (True, True, judge_chain(entry, disks, missing, unrecorded))
    return verdicts


def run(module):
    # parse
    request = parse_request(module.params)
    # ask
    entries = list_chains(request.dest)
    # decide: each chain judged against the VM
    verdicts = judge(module, request, entries) if request.with_vm else {}
    # report
    chains = []
    for entry in entries:
        item = summary(entry)
        item['missing_files'] = missing_files(entry['dir'], entry['manifest'])
        match, current, problem = verdicts.get(entry['chain'], (None, None, None))
        item.update(vm_match=match, current=current, problem=problem,
                    valid=None if match is None else problem is None)
        chains.append(item)
    return dict(changed=False, chains=chains, total_bytes=sum(c['bytes'] for c in chains))


def main():
    module = build_module(ARGUMENT_SPEC, supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
