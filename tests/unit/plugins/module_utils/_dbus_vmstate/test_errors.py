# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The dbus-vmstate preflight's error: where it sits in the family, and what it tells fail_json."""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate import vmstate as dv
from ansible_collections.qemu.vm.plugins.module_utils._dbus_vmstate.errors import DBusVMStateError
from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import DBusError


def test_a_vmstate_error_is_a_bus_error():
    assert issubclass(DBusVMStateError, DBusError)
    assert issubclass(DBusVMStateError, VMStateError) and issubclass(DBusVMStateError, QemuVMError)


def test_details_carry_the_problems_and_the_helpers():
    helpers = [{'name': ':1.3', 'id': 'a'}, {'name': ':1.4', 'id': 'a'}]
    problems = dv.find_problems(helpers, None)[0]
    exc = DBusVMStateError(dv.problems_message(problems, 'dv0', 'unix:path=/b', 'a snapshot'),
                           object_id='dv0', addr='unix:path=/b', problems=problems, helpers=[])
    assert str(exc).startswith("the dbus-vmstate object 'dv0' (bus unix:path=/b) is not safe for a snapshot")
    assert '1) Id' in str(exc)
    assert exc.details() == {'object_id': 'dv0', 'bus_address': 'unix:path=/b', 'problems': problems, 'helpers': []}
    assert DBusVMStateError('m').details() == {}
