# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Managing the VM's dbus-vmstate object: the decisions and actions of qemu_dbus_vmstate.

* `parse_request` -> ObjectRequest: the parameters, checked without the VM (ParameterError);
* `current_object`: which of the VM's dbus-vmstate objects (_dbus_vmstate.find_objects)
  the task is about, refusing what QEMU would not allow;
* `read_helpers`: the helpers on the bus, judged as _dbus_vmstate does before a snapshot;
* `decide` (pure) -> ObjectPlan: the QMP commands that turn the current object into the wanted one;
* `apply`: run them, putting the old object back when a re-creation fails half-way;
  `read_back` checks that QEMU now reports the wanted object.

No Ansible imports here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate.errors import DBusVMStateError
from ansible_collections.qemu.vm.plugins.module_utils._transport.dbus import JEEPNEY_IMPORT_ERROR
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import DBusBusError
from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate.vmstate import (
    OBJECT_TYPE,
    check_helpers,
    find_objects,
    format_id_list,
    id_list_entry_error,
    problems_message,
    shown_id,
)
from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandError,
    ParameterError,
    QemuTimeoutError,
    VMStateError,
)

if TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession

# QEMU's id_wellformed().
_QOM_ID = re.compile(r'^[A-Za-z][A-Za-z0-9_.-]*$')


class ObjectRequest(NamedTuple):
    """qemu_dbus_vmstate's options, checked without the VM."""

    state: str
    object_id: str
    addr: str | None
    id_list: list | None
    check_helpers: bool


class ObjectPlan(NamedTuple):
    """The QMP commands, as (name, arguments), and whether they re-create the object."""

    commands: list
    recreated: bool


def parse_request(params: dict) -> ObjectRequest:
    """The module's options as an ObjectRequest; ParameterError naming the bad one."""
    check_object_params(params)
    return ObjectRequest(params['state'], params['object_id'], params['addr'], params['id_list'],
                         params['check_helpers'])


def check_object_params(params: dict) -> None:
    """Refuse parameters QEMU would refuse or misread, before the VM is asked anything."""
    if not _QOM_ID.match(params['object_id']):
        raise ParameterError('object_id', 'object_id {0!r} is not a valid QEMU object id: a letter, then letters, '
                                          'digits, "-", "." or "_"'.format(params['object_id']))
    if params['state'] == 'absent':
        return
    if not params['addr']:
        raise ParameterError('addr', 'addr must be the D-Bus address of the helpers\' bus, for example '
                                     'unix:path=/run/qemu/vm1/bus')
    seen = set()
    for helper_id in params['id_list'] or ():
        reason = id_list_entry_error(helper_id)
        if reason:
            raise ParameterError('id_list', 'id_list entry {0} {1}: helper Ids are 1 to 255 bytes without '
                                            'commas'.format(shown_id(helper_id),
                                                            reason if reason.startswith('contains') else 'is ' + reason))
        if helper_id in seen:
            raise ParameterError('id_list', f'id_list names {shown_id(helper_id)} twice')
        seen.add(helper_id)


def current_object(qmp: QMPSession, types: list, object_id: str, present: bool,
                   warn: Callable[[str], None]) -> dict | None:
    """The VM's object `object_id` (None when it has none); VMStateError when `present` is impossible."""
    if present and not types:
        raise VMStateError(f'this QEMU ({qmp.version_string}) has no {OBJECT_TYPE} object type: it was built without D-Bus '
                           'support')
    objects = find_objects(qmp, types)
    current = next((o for o in objects if o['id'] == object_id), None)
    others = [o['id'] for o in objects if o['id'] != object_id]
    if present and others:
        raise VMStateError(
            'the VM already has a dbus-vmstate object {0!r} and QEMU allows only one: use object_id={0} to '
            'manage it, or remove it first with state=absent object_id={0}'.format(others[0]))
    if not present and current is None and others:
        warn(f'the VM has no dbus-vmstate object {object_id!r}, but has {others[0]!r}; nothing was removed')
    return current


def view(obj: dict | None) -> dict:
    """The object as diff and results show it."""
    if obj is None:
        return {'state': 'absent'}
    return {'state': 'present', 'object_id': obj['id'], 'addr': obj['addr'], 'id_list': list(obj['id_list'])}


def wanted_object(request: ObjectRequest, current: dict | None) -> dict:
    """The object state=present asks for; without id_list, the current id-list is kept."""
    ids = request.id_list
    if ids is None:
        ids = current['id_list'] if current is not None else []
    return {'id': request.object_id, 'type': OBJECT_TYPE, 'addr': request.addr, 'id_list': list(ids)}


def add_arguments(obj: dict) -> dict:
    """object-add's arguments for `obj`."""
    args = {'qom-type': obj.get('type', OBJECT_TYPE), 'id': obj['id'], 'addr': obj['addr']}
    if obj['id_list']:
        args['id-list'] = format_id_list(obj['id_list'])
    return args


def decide(current: dict | None, wanted: dict | None) -> ObjectPlan:
    """The ObjectPlan that turns `current` into `wanted`."""
    if wanted is None:
        return ObjectPlan([('object-del', {'id': current['id']})] if current is not None else [], False)
    if current is None:
        return ObjectPlan([('object-add', add_arguments(wanted))], False)
    same_ids = set(current['id_list']) == set(wanted['id_list'])
    if current['addr'] != wanted['addr'] or (current['id_list'] and not wanted['id_list']):
        return ObjectPlan([('object-del', {'id': current['id']}), ('object-add', add_arguments(wanted))], True)
    if not same_ids:
        return ObjectPlan([('qom-set', {'path': '/objects/{0}'.format(current['id']), 'property': 'id-list',
                                        'value': format_id_list(wanted['id_list'])})], False)
    return ObjectPlan([], False)


def apply(qmp: QMPSession, commands: list, current: dict | None) -> None:
    """Run the plan's commands; a failed re-creation puts the old object back and says so."""
    done = []
    for name, args in commands:
        try:
            qmp.execute(name, args)
        except CommandError as exc:
            if name == 'object-add' and 'object-del' in done and current is not None:
                raise VMStateError(rollback_message(qmp, exc, current)) from exc
            raise
        done.append(name)


def rollback_message(qmp: QMPSession, exc: CommandError, current: dict) -> str:
    """object-add failed after we deleted the old object: put the old one back and say what happened."""
    try:
        qmp.execute('object-add', add_arguments(current))
        outcome = 'the previous object (addr {0}) was added back'.format(current['addr'])
    except CommandError as again:
        outcome = (f'adding the previous object back failed too ({again.desc}): the VM has NO dbus-vmstate object '
                   'now')
    return 'object-add of the new dbus-vmstate object {0!r} failed: {1}; {2}'.format(current['id'], exc.desc, outcome)


def read_back(qmp: QMPSession, types: list, object_id: str, commands: list, wanted: dict | None) -> dict | None:
    """The object `object_id` after `commands` as QEMU reports it; VMStateError when it is not `wanted`."""
    after = next((o for o in find_objects(qmp, types) if o['id'] == object_id), None)
    if view(after) != view(wanted):
        raise VMStateError('after {0} QEMU reports the object as {1}, not {2}'.format(
            ', '.join(name for name, _args in commands), view(after), view(wanted)))
    return after


def read_helpers(wanted: dict, strict: bool, timeout: float, warn: Callable[[str], None]) -> list:
    """The helpers on `wanted`'s bus, marked `included`.

    `strict` (check_helpers=true): raise DBusVMStateError naming every problem that would make
    QEMU crash or fail at the next save or load, DBusBusError when the bus cannot be read.
    Otherwise a bus that cannot be read is only a warning.
    """
    if not strict:
        if JEEPNEY_IMPORT_ERROR is not None:
            warn('the helpers are not reported: the jeepney Python library is missing')
            return []
        try:
            return check_helpers(wanted['addr'], wanted['id_list'], timeout)['helpers']
        except (DBusBusError, QemuTimeoutError) as exc:
            warn(f'the helpers are not reported: {exc}')
            return []
    try:
        checked = check_helpers(wanted['addr'], wanted['id_list'], timeout)
    except DBusBusError as exc:
        raise DBusBusError(f'{exc} (set check_helpers: false to configure the object without reading the bus)',
                           object_id=wanted['id'], addr=wanted['addr']) from exc
    if checked['problems']:
        raise DBusVMStateError(
            problems_message(checked['problems'], wanted['id'], wanted['addr'], 'snapshots or migration'),
            object_id=wanted['id'], addr=wanted['addr'], problems=checked['problems'], helpers=checked['helpers'])
    for warning in checked['warnings']:
        warn(warning)
    return checked['helpers']
