# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_transport.dbus: which bus addresses we connect to."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._transport import dbus as bus
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import DBusBusError


def test_addresses():
    assert bus.bus_socket_addresses('unix:path=/run/b,guid=00') == ['/run/b']
    assert bus.bus_socket_addresses('unix:abstract=/tmp/x') == ['\0/tmp/x']
    assert bus.bus_socket_addresses('tcp:host=h,port=1;unix:path=/p') == ['/p']
    with pytest.raises(DBusBusError, match='only unix:path'):
        bus.bus_socket_addresses('tcp:host=h,port=1')
    with pytest.raises(DBusBusError, match='cannot be parsed'):
        bus.bus_socket_addresses('nonsense')
