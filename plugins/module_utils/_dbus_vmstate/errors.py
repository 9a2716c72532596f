# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Errors of the dbus-vmstate concern, in the QemuVMError family (_errors).

  DBusError (_transport.errors, a VMStateError)
    +-- DBusVMStateError   the VM's dbus-vmstate helpers would make QEMU crash or fail

No Ansible imports here.
"""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import DBusError


class DBusVMStateError(DBusError):
    """The VM's dbus-vmstate helpers would make QEMU crash or fail; QEMU was not asked."""

    def __init__(self, message, object_id=None, addr=None, problems=(), helpers=None):
        self.problems = list(problems)
        self.helpers = helpers
        super().__init__(message, object_id=object_id, addr=addr)

    def details(self):
        details = super().details()
        if self.problems:
            details['problems'] = self.problems
        if self.helpers is not None:
            details['helpers'] = self.helpers
        return details
