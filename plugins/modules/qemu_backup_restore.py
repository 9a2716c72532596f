#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_backup_restore
short_description: Restore one disk of an external backup to a standalone qcow2 image
version_added: 0.2.0
description:
  - Builds a standalone qcow2 image of one disk (O(device)) as it was at one backup point (O(point)) of a chain
    written by M(qemu.vm.qemu_backup) under O(dest), into O(target), with C(qemu-img convert).
  - Checks that every file from the chain's full point up to O(point) exists and matches the size (before
    converting) and SHA-256 (while C(qemu-img) converts, so the files are read once on the clock; in check mode,
    before anything) recorded in the chain's C(manifest.json); a missing or damaged file fails the task and
    O(target) is not touched.
  - The files are stacked in the order the manifest records (full point at the bottom), whatever backing file
    names their headers hold, and are only read.
  - The image is written to a temporary file beside O(target) and renamed to O(target) once complete and checked,
    so O(target) is never half-written. The image is private (mode 0600, owned by the user running the module) from
    its first byte, whatever the umask; change its owner and mode afterwards for the user QEMU runs as, if needed.
  - Never touches a running VM's disk - an existing O(target) that a running QEMU holds open is refused (qemu-img
    cannot take its lock), even with O(force). Boot the VM on the restored image, or copy it over the disk of a
    VM that is shut down.
  - Needs no VM; O(qmp) and O(qga) are not used.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  dest:
    description:
      - Absolute path of the directory holding the chains, as given to M(qemu.vm.qemu_backup).
    type: path
    required: true
  chain:
    description:
      - The chain to restore from (its directory name, the id of its full point).
      - Default is the chain that holds O(point), else the newest chain in O(dest).
    type: str
  point:
    description:
      - The backup point to restore (its id, for example V(20261201T004512Z)). Default is the newest point of the
        chain.
    type: str
  device:
    description:
      - The disk to restore, by the device id the chain records (RV(qemu.vm.qemu_backup#module:files[].device)).
      - Required when the chain holds more than one disk.
    type: str
  target:
    description:
      - Absolute path of the qcow2 image to create. Its directory must exist, and must not be a chain directory.
      - An existing O(target) is refused unless O(force=true).
    type: path
    required: true
  force:
    description:
      - Replace an existing O(target) (not when a running QEMU holds it open). The task then always reports changed.
    type: bool
    default: false
  convert_timeout:
    description:
      - The longest the conversion (C(qemu-img convert)) may take, in seconds; it is stopped then, the temporary file
        removed and O(target) left as it was. O(timeout) bounds the other C(qemu-img) calls.
    type: float
    default: 3600
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
attributes:
  idempotent:
    support: partial
    details:
      - An existing O(target) is refused (nothing changes) unless O(force=true); every restore that runs writes
        O(target) and reports changed.
  check_mode:
    support: full
    details:
      - Selects the chain, point and files and verifies the files' checksums and the free space, but writes nothing.
  diff_mode:
    support: full
    details:
      - The target before (absent, or the existing file replaced) and after (the restored point).
notes:
  - Without O(force), a second run with the same O(target) fails (the target exists) rather than reporting
    unchanged - a restore is never skipped silently.
  - The free space needed is estimated as the data of the chain's files up to O(point), at most the disk's size,
    plus 16 MiB.
seealso:
  - module: qemu.vm.qemu_backup
  - module: qemu.vm.qemu_backup_info
'''

EXAMPLES = r'''
- name: Restore the newest backup of disk vda to a new image
  qemu.vm.qemu_backup_restore:
    dest: /srv/backup/web1
    device: vda
    target: /var/lib/qemu/web1/vda-restored.qcow2

- name: Restore disk vdb as it was at one point, replacing an earlier restore
  qemu.vm.qemu_backup_restore:
    dest: /srv/backup/web1
    point: 20261201T004512Z
    device: vdb
    target: /var/lib/qemu/web1/vdb-restored.qcow2
    force: true
  register: restored

- name: Show which files it was built from
  ansible.builtin.debug:
    msg: "{{ restored.point }} ({{ restored.mode }}) from {{ restored.files }}"
'''

RETURN = r'''
target:
  description: The image written (in check mode, that would be written).
  returned: always
  type: str
  sample: /var/lib/qemu/web1/vda-restored.qcow2
chain:
  description: The chain restored from.
  returned: always
  type: str
  sample: 20261201T004512Z
point:
  description: The point restored.
  returned: always
  type: str
  sample: 20261201T005001Z
mode:
  description: Whether that point is V(full) or V(incremental).
  returned: always
  type: str
  sample: incremental
device:
  description: The disk restored.
  returned: always
  type: str
  sample: vda
time:
  description: When the point was taken (ISO 8601, UTC), as the manifest records it.
  returned: always
  type: str
  sample: '2026-12-01T00:50:01Z'
files:
  description: The chain's files the image was built from, full point first, all verified against their sha256.
  returned: always
  type: list
  elements: str
  sample: [/srv/backup/web1/20261201T004512Z/20261201T004512Z.vda.qcow2]
virtual_size:
  description: The disk's size in bytes.
  returned: always
  type: int
  sample: 17179869184
bytes:
  description: Bytes of the image written on disk; V(0) in check mode.
  returned: always
  type: int
  sample: 1966080
replaced:
  description: Whether an existing O(target) was (or would be) replaced, with O(force=true).
  returned: always
  type: bool
  sample: false
duration_ms:
  description: Milliseconds spent verifying and converting.
  returned: always
  type: int
  sample: 812
'''

import os
from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._backup.chain import check_dest, list_chains
from ansible_collections.qemu.vm.plugins.module_utils._backup.restore import (
    check_files,
    check_not_in_chain,
    check_space,
    check_target,
    check_target_not_in_use,
    convert,
    select,
    space_needed,
    verify_files,
)
from ansible_collections.qemu.vm.plugins.module_utils._common import Stopwatch, build_module, run_module

ARGUMENT_SPEC = dict(
    dest=dict(type='path', required=True),
    chain=dict(type='str'),
    point=dict(type='str'),
    device=dict(type='str'),
    target=dict(type='path', required=True),
    force=dict(type='bool', default=False),
    convert_timeout=dict(type='float', default=3600.0),
)


class RestoreRequest(NamedTuple):
    dest: str
    target: str
    chain: str | None
    point: str | None
    device: str | None


def parse_request(params):
    dest = check_dest(params['dest'])
    return RestoreRequest(dest, check_target(params['target'], params['force']), params['chain'], params['point'],
                          params['device'])


def run(module):
    params = module.params
    watch = Stopwatch()
    # parse
    request = parse_request(params)
    target = request.target
    # ask: everything is checked before anything is written
    chains = list_chains(request.dest)
    # decide
    selection = select(chains, request.chain, request.point, request.device)
    check_not_in_chain(target, chains)
    replaced = os.path.isfile(target)
    check_target_not_in_use(target, params['timeout'])
    check_space(target, space_needed(selection), os.path.getsize(target) if replaced else 0)
    # the sha256 of the files: before anything in check mode; during the conversion otherwise
    files = verify_files(selection) if module.check_mode else check_files(selection)
    # act
    result = dict(changed=True, target=target, replaced=replaced, bytes=0, **selection.describe())
    result['files'] = files
    if not module.check_mode:
        result.update(convert(selection, target, params['convert_timeout']))
    # report
    result['duration_ms'] = watch.ms
    if module._diff:
        result['diff'] = {
            'before': {'target': target if replaced else None},
            'after': {'target': target, 'chain': selection.chain, 'point': selection.point['point'],
                      'device': selection.device},
        }
    return result


def main():
    module = build_module(ARGUMENT_SPEC, durations=('convert_timeout',), supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
