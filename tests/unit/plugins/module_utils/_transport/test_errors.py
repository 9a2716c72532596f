# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The D-Bus client's errors: where they sit in the family, and what they tell fail_json."""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import DBusBusError, DBusCallError, DBusError


def test_bus_errors_are_vm_state_errors():
    assert issubclass(DBusBusError, DBusError)
    assert issubclass(DBusError, VMStateError)
    assert issubclass(DBusCallError, QemuVMError)
    assert not issubclass(DBusCallError, VMStateError)


def test_details_name_the_bus_and_the_object_when_known():
    assert DBusBusError('x', object_id='dv0', addr='unix:path=/b').details() == {
        'object_id': 'dv0', 'bus_address': 'unix:path=/b'}
    assert DBusBusError('x').details() == {}


def test_a_call_error_names_the_dbus_error():
    exc = DBusCallError('org.freedesktop.DBus.Error.Failed', 'no')
    assert str(exc) == 'org.freedesktop.DBus.Error.Failed: no'
    assert exc.details() == {'dbus_error': 'org.freedesktop.DBus.Error.Failed'}
    assert str(DBusCallError(None, None)) == 'D-Bus error'
    assert DBusCallError(None, 'text').details() == {}
