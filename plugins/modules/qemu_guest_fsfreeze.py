#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_guest_fsfreeze
short_description: Freeze or thaw a guest's filesystems through the QEMU guest agent
version_added: 0.2.0
description:
  - Freezes the guest's filesystems (C(guest-fsfreeze-freeze), or C(guest-fsfreeze-freeze-list) for O(mountpoints)),
    so that a disk snapshot taken meanwhile is consistent, or thaws them again (C(guest-fsfreeze-thaw)).
  - "Idempotent through C(guest-fsfreeze-status): an already frozen guest stays unchanged for O(state=frozen),
    an already thawed one for O(state=thawed)."
  - While the guest is frozen its agent refuses almost every other command (file transfer, exec, facts, shutdown);
    the tasks that hit that fail with a message saying the guest is frozen and how to thaw it.
  - O(state=thawed) always works, also on a guest someone else left frozen. It is the recovery step
    after anything went wrong between a freeze and its thaw.
  - When freezing fails, the agent thaws every filesystem it had frozen itself; the module checks that
    (and thaws if needed) before it reports the agent's reason.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  state:
    description:
      - V(frozen) freezes the guest filesystems, V(thawed) thaws them.
    type: str
    required: true
    choices: [frozen, thawed]
  mountpoints:
    description:
      - With O(state=frozen), freeze only these guest mountpoints (absolute paths, as mounted in the guest),
        instead of every freezable filesystem.
      - When the agent can list the guest filesystems (C(guest-get-fsinfo)), a mountpoint that is not mounted
        fails the task before anything is frozen.
      - The agent does not report which mountpoints are frozen, so an already frozen guest is unchanged
        whatever O(mountpoints) says.
      - Ignored with O(state=thawed), which always thaws everything.
    type: list
    elements: str
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
attributes:
  idempotent:
    support: full
    details:
      - A guest already in the requested state is unchanged.
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Shows the freeze status before and after.
notes:
  - Sockets - requires O(qga); O(qmp) is optional, used only to tell a silent agent from a VM that is not running.
  - Only the O(qga) socket is used; O(qmp) is accepted and ignored.
  - Never leave a guest frozen longer than needed; its applications block on every write meanwhile.
    Put the thaw in an C(always) section of a C(block).
  - Freezing may take longer than O(timeout), up to 300 seconds, because the guest writes its dirty data first.
seealso:
  - module: qemu.vm.qemu_guest_facts
  - module: qemu.vm.qemu_guest_agent_wait
'''

EXAMPLES = r'''
- name: Take a consistent disk snapshot of a running guest
  block:
    - name: Freeze the guest filesystems
      qemu.vm.qemu_guest_fsfreeze:
        qga: /run/qemu/web1/qga.sock
        state: frozen

    - name: Snapshot here
      ansible.builtin.debug:
        msg: the disks are consistent now
  always:
    - name: Thaw the guest filesystems, whatever happened
      qemu.vm.qemu_guest_fsfreeze:
        qga: /run/qemu/web1/qga.sock
        state: thawed

- name: Freeze only the data filesystem
  qemu.vm.qemu_guest_fsfreeze:
    qga: /run/qemu/web1/qga.sock
    state: frozen
    mountpoints:
      - /srv/data

- name: Recover a guest left frozen by an interrupted job
  qemu.vm.qemu_guest_fsfreeze:
    qga: /run/qemu/web1/qga.sock
    state: thawed
'''

RETURN = r'''
status:
  description: The freeze status after the task, from C(guest-fsfreeze-status) (in check mode, the predicted one).
  returned: always
  type: str
  choices: [thawed, frozen, error]
  sample: frozen
status_before:
  description: The freeze status before the task. V(error) means an earlier thaw failed.
  returned: always
  type: str
  sample: thawed
count:
  description:
    - The number of filesystems the agent froze (O(state=frozen)) or thawed (O(state=thawed)).
    - V(0) when nothing was done; V(null) in check mode when something would be done.
  returned: always
  type: int
  sample: 1
mountpoints:
  description: The mountpoints that were asked to be frozen, normalized; empty for all.
  returned: always
  type: list
  elements: str
  sample: [/srv/data]
duration_ms:
  description: How long the freeze or thaw command took in the guest, in milliseconds.
  returned: always
  type: int
  sample: 36
'''

from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._common import Stopwatch, build_module, qga_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._errors import VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest.freeze import (
    check_mountpoints,
    freeze,
    normalize_mountpoints,
    require_freeze_support,
    thaw,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import fsfreeze_status, require_command

ARGUMENT_SPEC = dict(
    state=dict(type='str', required=True, choices=['frozen', 'thawed']),
    mountpoints=dict(type='list', elements='str'),
)


class FreezeRequest(NamedTuple):
    state: str  # frozen or thawed
    mountpoints: list | None


def parse_request(params):
    return FreezeRequest(params['state'], normalize_mountpoints(params['mountpoints']))


def decide(request, before):
    """Whether to act (True) from the agent's status `before`; VMStateError when freezing cannot work."""
    if before == request.state:
        return False
    if request.state == 'frozen' and before == 'error':
        raise VMStateError(
            'guest-fsfreeze-status reports error: an earlier thaw failed in the guest; run '
            'qemu.vm.qemu_guest_fsfreeze state=thawed and check the guest before freezing again')
    return True


def run(module):
    # parse
    request = parse_request(module.params)
    state, mountpoints = request.state, request.mountpoints
    result = {'changed': False, 'mountpoints': mountpoints, 'count': 0, 'duration_ms': 0}
    with qga_session(module) as qga:
        # ask
        require_command(qga, 'guest-fsfreeze-status')
        before = fsfreeze_status(qga)
        result['status_before'] = result['status'] = before
        # decide
        if not decide(request, before):
            return result
        if state == 'frozen':
            require_freeze_support(qga, mountpoints)
            if mountpoints:
                check_mountpoints(qga, mountpoints)
        else:
            require_command(qga, 'guest-fsfreeze-thaw')
        result['changed'] = True
        result['diff'] = {'before': {'status': before}, 'after': {'status': state}}
        if module.check_mode:
            result['status'] = state
            result['count'] = None
            return result
        # act
        watch = Stopwatch()
        result['count'] = freeze(qga, mountpoints) if state == 'frozen' else thaw(qga)
        result['duration_ms'] = watch.ms
        after = fsfreeze_status(qga)
    # report
    result['status'] = after
    result['diff']['after'] = {'status': after}
    if state == 'frozen' and result['count'] == 0 and after == 'thawed':
        raise VMStateError('the guest agent found no filesystem it can freeze (guest-fsfreeze-freeze '
                           'froze 0); the guest was not frozen')
    if after != state:
        raise VMStateError('{0} returned {1}, but guest-fsfreeze-status now reports {2!r}'.format(
            'guest-fsfreeze-freeze' if state == 'frozen' else 'guest-fsfreeze-thaw', result['count'], after))
    return result


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qga',), supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
