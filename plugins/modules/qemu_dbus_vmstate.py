#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_dbus_vmstate
short_description: Manage a QEMU VM's dbus-vmstate object, which keeps D-Bus helpers' state in snapshots and migration
version_added: 0.2.0
description:
  - Adds, updates or removes the VM's C(dbus-vmstate) object through QMP (C(object-add), C(qom-set), C(object-del)).
    With it, QEMU saves the state of helper processes (network, TPM-like or device helpers) that implement the
    C(org.qemu.VMState1) D-Bus interface into internal snapshots and the migration stream, and gives it back to them
    when the snapshot is loaded or the migration arrives.
  - The module is idempotent. The object's C(addr) and C(id-list) are read back with C(qom-get). When only O(id_list) differs it is
    changed in place with C(qom-set). QEMU connects to the bus only when the object is created, so a different
    O(addr) (or removing the id-list altogether) deletes and re-creates the object; RV(recreated) says so.
  - Reports the helpers on the bus, the queued owners of the name C(org.qemu.VMState1) and each one's C(Id), read with
    the pure Python C(jeepney) library.
  - Before it asks QEMU anything it checks the helpers (O(check_helpers)) and fails with a message naming them when QEMU
    would crash or fail at the next snapshot or migration, see the notes. M(qemu.vm.qemu_snapshot) runs the same checks
    before it saves or loads a snapshot of a VM that has a C(dbus-vmstate) object.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  state:
    description:
      - V(present) makes sure the VM has the object with O(addr) (and O(id_list) when given).
      - V(absent) deletes the object O(object_id) if the VM has it.
    type: str
    choices: [present, absent]
    default: present
  object_id:
    description:
      - The QOM id of the object (C(-object dbus-vmstate,id=...)). QEMU allows one C(dbus-vmstate) object per VM;
        if the VM has one with another id, O(state=present) fails and names it.
      - A letter, then letters, digits, V(-), V(.) or V(_).
    type: str
    default: dbus-vmstate0
  addr:
    description:
      - The D-Bus address of the bus the helpers are on, as QEMU's C(addr) property takes it, for example the address
        C(dbus-daemon --print-address) printed (V(unix:path=/run/qemu/vm1/bus,guid=...)).
      - QEMU connects to it once, when the object is created, from QEMU's own process and user; a different value
        re-creates the object.
      - Reading the helpers (O(check_helpers)) needs a C(unix:path=) or C(unix:abstract=) address reachable from the
        host the module runs on.
      - Required when O(state=present).
    type: str
  id_list:
    description:
      - The helper Ids that must be present at every save and load (QEMU's C(id-list) property). With an id-list
        QEMU saves and loads only these helpers, and fails when one is missing; without one it takes every helper
        on the bus.
      - Each Id is 1 to 255 bytes and has no comma. Order does not matter.
      - When omitted, the id-list is not managed (a new object gets none). V([]) means "no id-list"; an existing
        id-list cannot be removed in place (QEMU would take an empty one as "save no helper"), so the object is
        re-created.
    type: list
    elements: str
  check_helpers:
    description:
      - Read the helpers on O(addr) and fail before QEMU is asked when the next save or load would crash QEMU or fail
        (see the notes).
      - Set to V(false) to configure the object before the helpers are started, or when the bus cannot be read from
        the module's host; the helpers are then reported only if the bus can be read.
      - Only used with O(state=present).
    type: bool
    default: true
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
attributes:
  idempotent:
    support: full
    details:
      - An object whose address and id-list already match is unchanged.
  check_mode:
    support: full
    details:
      - The helper checks run in check mode too; they only read.
  diff_mode:
    support: full
requirements:
  - The C(jeepney) Python library on the managed host, for O(state=present) (not needed with O(check_helpers=false)).
  - QEMU built with D-Bus support (the C(dbus-vmstate) object type).
notes:
  - Sockets - requires O(qmp); O(qga) is not used.
  - "How a helper must behave. It connects to the bus at O(addr) and requests the bus name C(org.qemu.VMState1)
    B(without) the C(DO_NOT_QUEUE) flag (flags 0 is right): QEMU asks the bus for the queue of owners of that
    name, so every helper but the first is only queued, and a helper that refused to queue is invisible to QEMU."
  - "At the object path C(/org/qemu/VMState1) it implements the interface C(org.qemu.VMState1): a read-only property
    C(Id) (type C(s)), answered through C(org.freedesktop.DBus.Properties.GetAll), which is how QEMU reads it;
    C(Save() -> ay), which returns the helper's current state and lets it carry on running; and C(Load(ay)), which
    gets back exactly the bytes its C(Save) returned when the snapshot was taken."
  - "Each C(Id) is unique on the bus and 1 to 255 bytes long (QEMU's own limit is 256 bytes with the terminating
    NUL); an Id used in O(id_list) has no comma. C(Save) answers quickly (a fraction of a second; QEMU waits at
    most 25 seconds, with the VM stopped during a snapshot) and returns at most 1 MiB (1048576 bytes)."
  - "What QEMU 7.2 does when this is not so, and what the checks of O(check_helpers) refuse: two helpers with the same
    Id and no id-list make QEMU abort, which kills the VM (with an id-list, only the first is saved and the other
    silently loses its state); an id-list Id with no helper, or an Id that is empty or longer than 255 bytes, make the
    save fail with only C(Operation not permitted). A helper that requested the name with C(DO_NOT_QUEUE) is named in
    the message as the likely culprit. The failure details are in C(problems) (each with C(problem), C(id),
    C(helpers), C(message)) and C(helpers) of the failed result."
  - "What the checks cannot see, and QEMU only logs on its stderr: a C(Save) that fails or returns more than 1 MiB.
    The snapshot then succeeds without that helper's state, and loading it later fails. A helper whose Id cannot be
    read is skipped by QEMU; the module warns about it."
  - "QEMU shows an unset id-list and an empty one the same way (C(qom-get) returns an empty string); the module takes
    both as no id-list. Do not create the object with an empty C(id-list) by other means: QEMU then saves no helper."
  - See U(https://www.qemu.org/docs/master/interop/dbus-vmstate.html) and the collection guide C(docs/docsite/rst/guide_dbus_vmstate.rst).
seealso:
  - module: qemu.vm.qemu_snapshot
  - name: QEMU D-Bus VMState
    description: QEMU's description of the dbus-vmstate object and the org.qemu.VMState1 interface.
    link: https://www.qemu.org/docs/master/interop/dbus-vmstate.html
'''

EXAMPLES = r'''
- name: Let QEMU keep the network helper's state in snapshots
  qemu.vm.qemu_dbus_vmstate:
    qmp: /run/qemu/web1/qmp.sock
    addr: unix:path=/run/qemu/web1/helpers.bus
    id_list:
      - net0
  register: vmstate

- name: Show who would be saved
  ansible.builtin.debug:
    msg: "{{ vmstate.helpers | selectattr('included') | map(attribute='id') | list }}"

- name: Configure the object before the helpers run (no helper checks yet)
  qemu.vm.qemu_dbus_vmstate:
    qmp: /run/qemu/web1/qmp.sock
    addr: unix:path=/run/qemu/web1/helpers.bus
    id_list: [net0, tpm0]
    check_helpers: false

- name: Remove the object
  qemu.vm.qemu_dbus_vmstate:
    qmp: /run/qemu/web1/qmp.sock
    state: absent
'''

RETURN = r'''
object_id:
  description: The QOM id of the object.
  returned: always
  type: str
  sample: dbus-vmstate0
state:
  description: Whether the VM has the object after the task (in check mode, would have).
  returned: always
  type: str
  sample: present
addr:
  description: The object's bus address after the task.
  returned: when RV(state=present)
  type: str
  sample: unix:path=/run/qemu/web1/helpers.bus
id_list:
  description: The object's id-list after the task, empty when it has none.
  returned: when RV(state=present)
  type: list
  elements: str
  sample: [net0]
commands:
  description: The QMP commands the task ran (in check mode, would run), in order.
  returned: always
  type: list
  elements: str
  sample: [object-del, object-add]
recreated:
  description: Whether the object was (would be) deleted and added again, because O(addr) changed or the id-list was removed.
  returned: always
  type: bool
helpers:
  description:
    - The queued owners of C(org.qemu.VMState1) on the bus, in queue order (the first is the primary owner).
    - Empty when the bus could not be read with O(check_helpers=false).
  returned: when O(state=present)
  type: list
  elements: dict
  contains:
    name:
      description: The helper's unique connection name on the bus.
      type: str
      sample: ":1.4"
    id:
      description: Its C(Id) property, or V(null) when it could not be read.
      type: str
      sample: net0
    included:
      description: Whether QEMU's next save or load calls this helper (with the id-list after the task).
      type: bool
    error:
      description: Why its C(Id) could not be read.
      type: str
      returned: when RV(helpers[].id) is null
'''

from ansible_collections.qemu.vm.plugins.module_utils._common import build_module, qmp_session, require_library, run_module
from ansible_collections.qemu.vm.plugins.module_utils._transport.dbus import JEEPNEY_IMPORT_ERROR
from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate.vmstate import DEFAULT_OBJECT_ID, object_types
from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate.object_plan import (
    apply,
    current_object,
    decide,
    parse_request,
    read_back,
    read_helpers,
    view,
    wanted_object,
)

ARGUMENT_SPEC = dict(
    state=dict(type='str', choices=['present', 'absent'], default='present'),
    object_id=dict(type='str', default=DEFAULT_OBJECT_ID),
    addr=dict(type='str'),
    id_list=dict(type='list', elements='str'),
    check_helpers=dict(type='bool', default=True),
)
REQUIRED_IF = [('state', 'present', ('addr',))]


def run(module):
    # parse
    request = parse_request(module.params)
    present = request.state == 'present'
    with qmp_session(module) as qmp:
        # ask
        types = object_types(qmp)
        current = current_object(qmp, types, request.object_id, present, module.warn)
        wanted = wanted_object(request, current) if present else None
        helpers = read_helpers(wanted, request.check_helpers, module.params['timeout'], module.warn) if present else None
        # decide
        plan = decide(current, wanted)
        # act
        if plan.commands and not module.check_mode:
            apply(qmp, plan.commands, current)
            after = read_back(qmp, types, request.object_id, plan.commands, wanted)
        else:
            after = wanted if plan.commands else current

    # report
    result = {
        'changed': bool(plan.commands),
        'object_id': request.object_id,
        'commands': [name for name, _args in plan.commands],
        'recreated': plan.recreated,
        'state': 'present' if after is not None else 'absent',
    }
    if after is not None:
        result['addr'] = after['addr']
        result['id_list'] = list(after['id_list'])
    if helpers is not None:
        result['helpers'] = helpers
    if module._diff:
        result['diff'] = {'before': view(current), 'after': view(after)}
    return result


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qmp',), supports_check_mode=True, required_if=REQUIRED_IF)
    if module.params['state'] == 'present' and module.params['check_helpers']:
        require_library(module, 'jeepney', JEEPNEY_IMPORT_ERROR, reason='to read the helpers (check_helpers=true)')
    run_module(module, run)


if __name__ == '__main__':
    main()
