# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""QEMU's dbus-vmstate object and the org.qemu.VMState1 helpers it saves and loads.

At every save (snapshot-save, migration) and load (snapshot-load, incoming migration)
QEMU lists the queued owners of the bus name org.qemu.VMState1, reads each one's `Id`
(Properties.GetAll at /org/qemu/VMState1) and calls Save() -> ay or Load(ay).
QEMU 7.2 fails badly on some helper set-ups (verified on this machine):

  * two helpers with the same Id and no id-list: QEMU aborts (the VM dies);
  * the same, with an id-list naming that Id: only the first queued helper is saved,
    the others silently lose their state;
  * an id-list Id with no helper: the save job fails with "Operation not permitted";
  * an Id that is empty or longer than 255 bytes (and considered): same vague failure;
  * a helper whose Id cannot be read: skipped with a warning on QEMU's stderr.

`preflight_dbus_vmstate(qmp)` finds the VM's dbus-vmstate object, asks the bus who is
there and raises DBusVMStateError before QEMU is asked to do anything that would fail.

The bus is read with _dbus.BusClient (jeepney's wire format, every wait bounded).
Managing the object itself (qemu_dbus_vmstate's plan, apply, rollback) is in
_dbus_vmstate_object. No Ansible imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate.errors import DBusVMStateError
from ansible_collections.qemu.vm.plugins.module_utils._transport.dbus import BusClient
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import DBusBusError, DBusCallError
from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, QemuTimeoutError
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline

if TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession

OBJECT_TYPE = 'dbus-vmstate'
DEFAULT_OBJECT_ID = 'dbus-vmstate0'
VMSTATE_NAME = 'org.qemu.VMState1'
VMSTATE_PATH = '/org/qemu/VMState1'
#: QEMU keeps Ids in 256-byte buffers with the terminating NUL.
MAX_ID_BYTES = 255
#: Save() data above this many bytes is dropped by QEMU at save time (the load then fails).
MAX_STATE_BYTES = 1024 * 1024

#: At most this many seconds for a queued helper to tell its Id.
_HELPER_CALL_SECONDS = 5.0
#: At most this many seconds for one call to a helper while looking for strays.
_STRAY_CALL_SECONDS = 2.0
_MAX_STRAY_CONNECTIONS = 64


# -- Ids and id-list ------------------------------------------------------------------------

def parse_id_list(text: str | None) -> list:
    """QEMU's comma-separated id-list as a list; '' (also what qom-get shows when unset) is []."""
    if not text:
        return []
    return text.split(',')


def format_id_list(ids: list) -> str:
    return ','.join(ids)


def shown_id(helper_id: str) -> str:
    """An Id as messages show it: quoted, long ones shortened."""
    if len(helper_id) > 40:
        return f"'{helper_id[:32]}...'"
    return f"'{helper_id}'"


def id_error(helper_id: str) -> str | None:
    """Why QEMU cannot use `helper_id` as a helper Id, or None when it can."""
    size = len(helper_id.encode('utf-8'))
    if size == 0:
        return 'empty'
    if size > MAX_ID_BYTES:
        return f'{size} bytes long (QEMU accepts 1 to {MAX_ID_BYTES} bytes)'
    return None


def id_list_entry_error(helper_id: str) -> str | None:
    """Why `helper_id` cannot be an id-list entry, or None."""
    if ',' in helper_id:
        return 'contains a comma (the id-list separator)'
    return id_error(helper_id)


# -- what QEMU will do with the helpers ---------------------------------------------------------

def mark_included(helpers: list, id_list: list | None) -> list:
    """Set helpers[i]['included']: whether QEMU's next save/load will call that helper.

    QEMU walks the queue in order, skips helpers without a readable Id and, when an
    id-list is set, Ids not in it; with an id-list only the first helper of each Id counts.
    """
    wanted = set(id_list) if id_list else None
    taken = set()
    for helper in helpers:
        hid = helper.get('id')
        if hid is None or (wanted is not None and (hid not in wanted or hid in taken)):
            helper['included'] = False
            continue
        taken.add(hid)
        helper['included'] = True
    return helpers


def find_problems(helpers: list, id_list: list | None, strays: dict | None = None) -> tuple:
    """(problems, warnings) for `helpers` (queue order) with the dbus-vmstate `id_list`.

    `id_list` is a list; empty or None means no id-list (QEMU then takes every helper).
    `strays` maps an Id to the connections that serve /org/qemu/VMState1 with that Id
    without being queued for org.qemu.VMState1 (see find_strays). Problems make QEMU
    crash or fail; warnings are things QEMU silently skips.
    """
    id_list = list(id_list or [])
    wanted = set(id_list) if id_list else None
    strays = strays or {}
    problems = []
    warnings = []

    by_id = {}
    for helper in helpers:
        hid = helper.get('id')
        if hid is None:
            warnings.append(
                'helper {0} is queued for {1} but its Id cannot be read ({2}): QEMU skips it, '
                'so its state is not saved or loaded'.format(helper['name'], VMSTATE_NAME, helper.get('error')))
            continue
        if wanted is not None and hid not in wanted:
            continue
        by_id.setdefault(hid, []).append(helper['name'])

    for hid, names in by_id.items():
        reason = id_error(hid) if wanted is None else None  # with an id-list, the entry check below says it
        if reason:
            problems.append({
                'problem': 'invalid_id', 'id': hid, 'helpers': names,
                'message': 'the Id of helper {0} is {1}: QEMU fails the save or load with only "Operation '
                           'not permitted"'.format(', '.join(names), reason),
            })
        if len(names) > 1:
            if wanted is None:
                consequence = ('QEMU aborts (the VM dies; seen with QEMU 7.2) when two helpers share an Id '
                               'and no id-list is set')
            else:
                consequence = (f'with id-list set QEMU saves and loads only the first one ({names[0]}) and silently '
                               'leaves out the others')
            problems.append({
                'problem': 'duplicate_id', 'id': hid, 'helpers': names,
                'message': 'Id {0} is offered by {1} helpers ({2}): {3}; stop the extra helpers or give '
                           'each helper a unique Id'.format(shown_id(hid), len(names), ', '.join(names), consequence),
            })

    seen = set()
    for hid in id_list:
        if hid in seen:
            continue
        seen.add(hid)
        reason = id_list_entry_error(hid)
        if reason:
            problems.append({
                'problem': 'invalid_id_list_entry', 'id': hid, 'helpers': by_id.get(hid, []),
                'message': 'id-list entry {0} {1}: QEMU fails the save or load with only "Operation not '
                           'permitted"; use Ids of 1 to {2} bytes without commas'.format(
                               shown_id(hid), reason if reason.startswith('contains') else 'is ' + reason,
                               MAX_ID_BYTES),
            })
            continue
        if hid in by_id:
            continue
        message = (f'Id {shown_id(hid)} is in id-list but no helper on the bus has it: QEMU fails the save or load with '
                   'only "Operation not permitted"; start that helper or remove the Id from the '
                   'id-list')
        if strays.get(hid):
            message += ('. Connection {0} serves {1} with this Id but is not queued for the name {2}: the '
                        'helper must request the name without the DO_NOT_QUEUE flag'.format(
                            ', '.join(strays[hid]), VMSTATE_PATH, VMSTATE_NAME))
        problems.append({'problem': 'missing_helper', 'id': hid, 'helpers': list(strays.get(hid, [])),
                         'message': message})
    return problems, warnings


# -- the bus ----------------------------------------------------------------------------------

def vmstate_id(bus: BusClient, destination: str, timeout: float | None = None) -> str:
    """The helper's Id as QEMU reads it (Properties.GetAll on org.qemu.VMState1)."""
    value = bus.properties(destination, VMSTATE_PATH, VMSTATE_NAME, timeout=timeout).get('Id')
    if value is None:
        raise DBusCallError(None, f'Properties.GetAll({VMSTATE_NAME}) has no Id property')
    signature, data = value
    if signature != 's':
        raise DBusCallError(None, f'the Id property has D-Bus type {signature!r}, not \'s\'')
    return data


def list_helpers(address: str, timeout: float) -> list:
    """The queued owners of org.qemu.VMState1 on the bus at `address`, in queue order.

    Each: {'name': unique name, 'id': its Id or None, 'error': why the Id could not be read}.
    """
    with BusClient(address, timeout) as bus:
        return _read_helpers(bus)


def _read_helpers(bus):
    helpers = []
    for name in bus.queued_owners(VMSTATE_NAME):
        helper = {'name': name, 'id': None}
        try:
            helper['id'] = vmstate_id(bus, name, timeout=_HELPER_CALL_SECONDS)
        except DBusCallError as exc:
            helper['error'] = str(exc)
        except QemuTimeoutError:
            if bus.deadline.expired:
                raise
            # QEMU would wait 25 s for it (with the VM stopped during a snapshot) and then skip it.
            helper['error'] = f'it did not answer Properties.GetAll within {_HELPER_CALL_SECONDS:g} s'
        helpers.append(helper)
    return helpers


def find_strays(bus: BusClient, ids: list, queued: list) -> dict:
    """{Id: [unique names]} of connections that answer with an Id in `ids` at /org/qemu/VMState1
    but are not in `queued` (typically: they asked for the name with DO_NOT_QUEUE)."""
    ids = set(ids)
    strays = {}
    if not ids:
        return strays
    skip = set(queued) | {bus.unique_name}
    candidates = [n for n in bus.connections() if n not in skip][:_MAX_STRAY_CONNECTIONS]
    for name in candidates:
        if bus.deadline.remaining() <= 0:
            break
        try:
            hid = vmstate_id(bus, name, timeout=_STRAY_CALL_SECONDS)
        except (DBusCallError, QemuTimeoutError):
            continue
        if hid in ids:
            strays.setdefault(hid, []).append(name)
    return strays


def check_helpers(address: str, id_list: list | None, timeout: float) -> dict:
    """Read the bus and judge it: {'helpers', 'problems', 'warnings'} (helpers marked 'included')."""
    with BusClient(address, timeout) as bus:
        helpers = _read_helpers(bus)
        problems, warnings = find_problems(helpers, id_list)
        missing = [p['id'] for p in problems if p['problem'] == 'missing_helper']
        if missing:
            try:
                strays = find_strays(bus, missing, [h['name'] for h in helpers])
            except (DBusCallError, QemuTimeoutError):
                strays = {}
            if strays:
                problems, warnings = find_problems(helpers, id_list, strays)
    mark_included(helpers, id_list)
    return {'helpers': helpers, 'problems': problems, 'warnings': warnings}


def problems_message(problems: list, object_id: str, addr: str, operation: str) -> str:
    parts = ['{0}) {1}'.format(i + 1, p['message']) for i, p in enumerate(problems)]
    return ('the dbus-vmstate object {0!r} (bus {1}) is not safe for {2}; QEMU was not asked to do '
            'anything. {3}'.format(object_id, addr, operation, ' '.join(parts)))


# -- the QEMU side ----------------------------------------------------------------------------

def object_types(qmp: QMPSession) -> list:
    """Names of the QOM types that are dbus-vmstate (empty when QEMU was built without it)."""
    try:
        return sorted(t['name'] for t in qmp.execute('qom-list-types', {'implements': OBJECT_TYPE}))
    except CommandError:
        return []


def find_objects(qmp: QMPSession, types: list | None = None) -> list:
    """The VM's dbus-vmstate objects under /objects: [{'id', 'type', 'addr', 'id_list'}]."""
    types = object_types(qmp) if types is None else types
    if not types:
        return []
    children = {f'child<{t}>': t for t in types}
    objects = []
    for entry in qmp.execute('qom-list', {'path': '/objects'}):
        qom_type = children.get(entry.get('type'))
        if qom_type is None:
            continue
        path = '/objects/{0}'.format(entry['name'])
        objects.append({
            'id': entry['name'],
            'type': qom_type,
            'addr': qmp.execute('qom-get', {'path': path, 'property': 'addr'}),
            'id_list': parse_id_list(qmp.execute('qom-get', {'path': path, 'property': 'id-list'})),
        })
    return objects


def preflight_dbus_vmstate(qmp: QMPSession, timeout: float | None = None, operation: str = 'a snapshot') -> dict | None:
    """Refuse, before QEMU is asked, a save or load its dbus-vmstate helpers would crash or fail.

    `qmp` is an open QMPSession. Returns None when the VM has no dbus-vmstate object, else
    {'object_id', 'addr', 'id_list', 'helpers', 'warnings'}; raises DBusVMStateError
    (a QemuVMError) naming every problem, or DBusBusError when the bus cannot be read.
    """
    bound = qmp.timeout if timeout is None else timeout
    objects = find_objects(qmp)
    if not objects:
        return None
    deadline = Deadline(bound)
    report = None
    for obj in objects:  # QEMU allows one; check whatever is there
        try:
            checked = check_helpers(obj['addr'], obj['id_list'], max(0.001, deadline.remaining()))
        except DBusBusError as exc:
            raise DBusBusError('cannot check the helpers of the dbus-vmstate object {0!r} before {1}: {2}'.format(
                obj['id'], operation, exc), object_id=obj['id'], addr=obj['addr']) from exc
        if checked['problems']:
            raise DBusVMStateError(
                problems_message(checked['problems'], obj['id'], obj['addr'], operation),
                object_id=obj['id'], addr=obj['addr'], problems=checked['problems'], helpers=checked['helpers'])
        if report is None:
            report = {'object_id': obj['id'], 'addr': obj['addr'], 'id_list': obj['id_list'],
                      'helpers': checked['helpers'], 'warnings': checked['warnings']}
    return report
