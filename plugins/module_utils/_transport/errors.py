# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Errors of the transport's own concerns, in the QemuVMError family (_errors).

The socket, session and command errors every transport shares are the root's; here are
those of the private runtime files (_transport.lock) and the agent sessions' bounds
(_transport.qga, _transport.sockets):

  RuntimeFileError            a lock or freeze-marker file, or their private directory, is not what we made
  ReplyTooLargeError (a ConnectionLostError)  a reply (or the sync line) outgrew the session's bound

and those of the D-Bus client (_transport.dbus):

  DBusError (a VMStateError)  about the bus a QEMU object uses; names the bus and the object
    +-- DBusBusError          the bus cannot be reached or read (or jeepney is missing)
    (+-- _dbus_vmstate.errors.DBusVMStateError: the helpers on it would make QEMU crash or fail)
  DBusCallError               a peer on the bus answered a call with an error reply

No Ansible imports here.
"""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import ConnectionLostError, QemuVMError, VMStateError


class DBusError(VMStateError):
    """A problem with the D-Bus bus at `addr` that the QEMU object `object_id` uses; both optional."""

    def __init__(self, message, object_id=None, addr=None):
        self.object_id = object_id
        self.addr = addr
        super().__init__(message)

    def details(self):
        details = {}
        if self.object_id is not None:
            details['object_id'] = self.object_id
        if self.addr is not None:
            details['bus_address'] = self.addr
        return details


class DBusBusError(DBusError):
    """The bus cannot be reached or read."""


class DBusCallError(QemuVMError):
    """A D-Bus error reply: `name` (org.freedesktop.DBus.Error.X) and its text."""

    def __init__(self, name, text):
        self.name = name
        self.text = text
        super().__init__(
            f'{name}: {text}' if name and text else (text or name or 'D-Bus error'))

    def details(self):
        return {'dbus_error': self.name} if self.name else {}


class ReplyTooLargeError(ConnectionLostError):
    """The peer sent more than this session accepts in one reply; the session is closed."""

    def __init__(self, address, what, limit, why=None):
        self.what = what
        self.limit = limit
        why = f' ({why})' if why else ''
        super().__init__(address, f'{what} was longer than {limit} bytes, the most this session accepts{why}: '
                                  'the session was closed')

    def details(self):
        details = super().details()
        details['reply_limit'] = self.limit
        return details


class RuntimeFileError(QemuVMError):
    """A lock or marker file, or the private runtime directory holding them, is a symbolic link, a FIFO,
    another user's file, or open to other users. Nothing was read or written through it."""

    def __init__(self, path, reason):
        self.path = path
        self.reason = reason
        super().__init__(f'{path}: {reason}')

    def details(self):
        return {'runtime_path': self.path}
