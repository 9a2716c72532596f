# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""A small blocking D-Bus client, every wait bounded: the transport to a D-Bus bus.

Message building, parsing and authentication are jeepney's (pure Python, import guarded:
JEEPNEY_IMPORT_ERROR); the socket I/O and its deadline are ours. What is said on the bus
(for example QEMU's org.qemu.VMState1 helpers) belongs to the callers (_dbus_vmstate).

Its errors (DBusError, DBusBusError, DBusCallError) are in _transport.errors.

No Ansible imports here.
"""

from __future__ import annotations

import socket
import traceback

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuTimeoutError
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import DBusBusError, DBusCallError
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline

try:
    from jeepney import DBusAddress, HeaderFields, MessageType, Parser, new_method_call
    from jeepney.auth import BEGIN, Authenticator
    from jeepney.bus import parse_addresses
    JEEPNEY_IMPORT_ERROR = None
except ImportError:
    JEEPNEY_IMPORT_ERROR = traceback.format_exc()

BUS_NAME = 'org.freedesktop.DBus'
BUS_PATH = '/org/freedesktop/DBus'
PROPERTIES = 'org.freedesktop.DBus.Properties'
NAME_HAS_NO_OWNER = 'org.freedesktop.DBus.Error.NameHasNoOwner'


def bus_socket_addresses(address: str) -> list:
    """The unix socket addresses (paths, or '\\0'-prefixed abstract names) in a D-Bus address."""
    found = []
    unsupported = []
    try:
        entries = list(parse_addresses(address))
    except ValueError as exc:
        raise DBusBusError(f'the D-Bus address {address!r} cannot be parsed: expected for example '
                           'unix:path=/run/qemu/vm1/bus', addr=address) from exc
    for transport, keys in entries:
        if transport == 'unix' and 'path' in keys:
            found.append(keys['path'])
        elif transport == 'unix' and 'abstract' in keys:
            found.append('\0' + keys['abstract'])
        else:
            unsupported.append(transport + (':' + ','.join(sorted(keys)) if keys else ''))
    if not found:
        raise DBusBusError(
            'cannot check the helpers on D-Bus address {0!r}: only unix:path=... and unix:abstract=... '
            'addresses can be read (found {1})'.format(address, ', '.join(unsupported) or 'nothing'),
            addr=address)
    return found


class BusClient:
    """A small blocking D-Bus client on jeepney's wire format, every wait bounded.

    Not jeepney.io.blocking.open_dbus_connection: its DBusConnection sends Hello and
    waits for the reply with no timeout, so a wedged bus would hang the task. Message
    building, parsing and authentication are jeepney's; only the bounded I/O is ours.

    `with BusClient(address, timeout) as bus: bus.call(...)`. The bound is one deadline
    for the whole session; `call` can take a smaller one.
    """

    def __init__(self, address: str, timeout: float):
        if JEEPNEY_IMPORT_ERROR is not None:
            raise DBusBusError(
                f'reading the D-Bus bus {address} needs the jeepney Python library on the managed '
                'host (pip install jeepney)', addr=address)
        self.address = address
        self.deadline = Deadline(timeout)
        self.unique_name = None
        self._sock = None
        self._parser = Parser()
        self._serial = 0
        self._pending = []

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def open(self) -> None:
        errors = []
        for target in bus_socket_addresses(self.address):
            try:
                self._sock = self._connect(target)
                break
            except OSError as exc:
                errors.append(exc.strerror or str(exc))
        if self._sock is None:
            raise DBusBusError('cannot connect to the D-Bus bus {0}: {1}'.format(
                self.address, '; '.join(errors)), addr=self.address)
        try:
            self._authenticate()
            self.unique_name = self.call(BUS_NAME, BUS_PATH, BUS_NAME, 'Hello')[0]
        except BaseException:
            self.close()
            raise

    def _connect(self, target):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(0.001, self.deadline.remaining()))
        try:
            sock.connect(target)
        except socket.timeout as exc:
            sock.close()
            raise QemuTimeoutError(f'connecting to the D-Bus bus {self.address}',
                                   self.deadline.seconds) from exc
        except BaseException:
            sock.close()
            raise
        return sock

    def _authenticate(self):
        auth = Authenticator()
        try:
            for line in auth:
                self._sock.sendall(line)
                auth.feed(self._recv('D-Bus authentication'))
            self._sock.sendall(BEGIN)
        except ValueError as exc:  # jeepney's AuthenticationError
            raise DBusBusError(f'the D-Bus bus {self.address} refused us: {exc}',
                               addr=self.address) from exc

    def _recv(self, what, deadline=None):
        deadline = deadline or self.deadline
        remaining = deadline.remaining()
        if remaining <= 0:
            raise QemuTimeoutError(f'{what} on the D-Bus bus {self.address}', deadline.seconds)
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(65536)
        except socket.timeout as exc:
            raise QemuTimeoutError(f'{what} on the D-Bus bus {self.address}', deadline.seconds) from exc
        except OSError as exc:
            raise DBusBusError(f'the D-Bus bus {self.address} failed: {exc.strerror or exc}',
                               addr=self.address) from exc
        if not data:
            raise DBusBusError(f'the D-Bus bus {self.address} closed the connection', addr=self.address)
        return data

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def call(self, destination: str, path: str, interface: str, member: str, signature: str | None = None,
             body: tuple = (), timeout: float | None = None) -> tuple:
        """Call a method and return the reply body; DBusCallError on an error reply."""
        deadline = self.deadline
        if timeout is not None and timeout < deadline.remaining():
            deadline = Deadline(timeout)
        what = f'{interface}.{member} on {destination}'
        self._serial += 1
        serial = self._serial
        message = new_method_call(DBusAddress(path, bus_name=destination, interface=interface),
                                  member, signature, body)
        try:
            self._sock.sendall(message.serialise(serial=serial))
        except OSError as exc:
            raise DBusBusError(f'the D-Bus bus {self.address} failed: {exc.strerror or exc}',
                               addr=self.address) from exc
        while True:
            for reply in self._take_pending():
                if reply.header.fields.get(HeaderFields.reply_serial) != serial:
                    continue
                if reply.header.message_type == MessageType.error:
                    name = reply.header.fields.get(HeaderFields.error_name, 'error')
                    text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ''
                    raise DBusCallError(name, text)
                return reply.body
            self._pending.extend(self._parser.feed(self._recv(what, deadline)))

    def _take_pending(self):
        pending, self._pending = self._pending, []
        return pending

    # -- the bus daemon's own calls --------------------------------------------------------

    def queued_owners(self, name: str) -> list:
        """Unique names queued for the well-known `name`, the primary owner first ([] when none)."""
        try:
            return list(self.call(BUS_NAME, BUS_PATH, BUS_NAME, 'ListQueuedOwners', 's', (name,))[0])
        except DBusCallError as exc:
            if exc.name == NAME_HAS_NO_OWNER:
                return []
            raise

    def connections(self) -> list:
        """Unique names of every connection on the bus."""
        names = self.call(BUS_NAME, BUS_PATH, BUS_NAME, 'ListNames')[0]
        return [n for n in names if n.startswith(':')]

    def properties(self, destination: str, path: str, interface: str, timeout: float | None = None) -> dict:
        """Properties.GetAll(interface) of the object `path` of `destination`: {name: (signature, value)}."""
        return self.call(destination, path, PROPERTIES, 'GetAll', 's', (interface,), timeout=timeout)[0]
