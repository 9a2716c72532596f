# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""What QMP and QGA sessions share: socket addresses, connecting, the event loop.

qemu.qmp is asyncio-only; modules are synchronous. One private event loop per
process runs every coroutine, each bounded by asyncio.wait_for.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import socket
import stat
import time
import traceback

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    ConnectionLostError,
    GuestFrozenError,
    QemuTimeoutError,
    SocketBusyError,
    SocketError,
    SocketMissingError,
    SocketPermissionError,
    SocketRefusedError,
)
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import ReplyTooLargeError
from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import SocketLock
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline

try:
    import qemu.qmp as qmp_lib
    QMP_IMPORT_ERROR = None
except ImportError:
    qmp_lib = None
    QMP_IMPORT_ERROR = traceback.format_exc()

#: The qemu.qmp version the collection was tested with (requirements.txt pins it; a unit test
#: keeps the two equal). _Client overrides private parts of qemu.qmp.
QMP_TESTED_VERSION = '0.0.6'


def qmp_version_warning(installed=None):
    """A warning when the installed qemu.qmp is not the tested version, else None."""
    if installed is None:
        try:
            from importlib.metadata import PackageNotFoundError, version
        except ImportError:  # pragma: no cover (Python < 3.8)
            return None
        try:
            installed = version('qemu.qmp')
        except PackageNotFoundError:
            return None
    if installed == QMP_TESTED_VERSION:
        return None
    return (f'qemu.qmp {installed} is installed, but the qemu.vm collection was tested with qemu.qmp '
            f'{QMP_TESTED_VERSION} only and overrides private parts of it: install qemu.qmp=={QMP_TESTED_VERSION}')


# QEMU can write events to a new QMP connection ahead of its greeting (seen in CI: a
# JOB_STATUS_CHANGE first), most likely because the monitor still counts as negotiated
# from its previous client until the greeting resets it. Skip a bounded number of
# events; the connect deadline bounds the time.
_MAX_EVENTS_BEFORE_GREETING = 64

if qmp_lib is not None:
    from qemu.qmp.models import Greeting as _Greeting
    from qemu.qmp.qmp_client import GreetingError as _GreetingError

    class _Client(qmp_lib.QMPClient):
        """QMPClient without the per-message debug strings, and with events before the greeting skipped.

        qemu.qmp's message hooks log str(message), indented JSON, even when debug logging
        is off: for a 48 MiB guest-file chunk that is another 64 MiB string to build.
        The hooks are meant for subclasses; ours format only when someone listens.
        """

        def _cb_outbound(self, msg):
            if self.logger.isEnabledFor(logging.DEBUG):
                return super()._cb_outbound(msg)
            return msg

        def _cb_inbound(self, msg):
            if self.logger.isEnabledFor(logging.DEBUG):
                return super()._cb_inbound(msg)
            return msg

        async def _get_greeting(self):
            message = await self._recv()
            skipped = 0
            while 'event' in message and 'QMP' not in message and skipped < _MAX_EVENTS_BEFORE_GREETING:
                skipped += 1
                message = await self._recv()
            try:
                return _Greeting(message)
            except (qmp_lib.QMPError, KeyError, TypeError) as exc:
                raise _GreetingError('Did not understand Greeting', exc) from exc


_HOST_PORT = re.compile(r'^\[?(?P<host>[^\[\]/]+?)\]?:(?P<port>[0-9]{1,5})$')


def parse_address(text):
    """A unix socket path, or a (host, port) tuple for `host:port` / `[v6]:port`."""
    if not isinstance(text, str) or not text:
        raise ValueError('a socket address must be a non-empty string')
    if '/' not in text:
        match = _HOST_PORT.match(text)
        if match:
            port = int(match.group('port'))
            if not 0 < port < 65536:
                raise ValueError(f'port {port} in {text!r} is out of range')
            return (match.group('host'), port)
    return text


def format_address(address):
    if isinstance(address, tuple):
        return '{0}:{1}'.format(*address)
    return address


def connect_socket(address, timeout):
    """A connected stream socket, or a SocketError saying why not."""
    shown = format_address(address)
    if isinstance(address, tuple):
        try:
            return socket.create_connection(address, timeout=timeout)
        except ConnectionRefusedError:
            raise SocketRefusedError(shown, 'connection refused: is QEMU running with this socket?')
        except socket.timeout:
            raise QemuTimeoutError(f'connecting to {shown}', timeout)
        except OSError as exc:
            raise SocketError(shown, f'cannot connect: {exc.strerror or exc}')
    try:
        mode = os.stat(address).st_mode
    except FileNotFoundError:
        raise SocketMissingError(shown, 'no such socket: is the VM running and the path right?')
    except PermissionError:
        raise SocketPermissionError(shown, 'permission denied while looking up the socket path')
    if not stat.S_ISSOCK(mode):
        raise SocketError(shown, 'exists but is not a unix socket')
    deadline = Deadline(timeout)
    while True:
        sock = _connect_unix(address, shown, deadline)
        if sock is not None:
            return sock
        if deadline.expired:
            raise SocketBusyError(
                shown, 'another client holds this socket and the connections queued behind it fill its listen '
                       f'backlog (QEMU serves one client at a time); waited {timeout:g} s (timeout)')
        time.sleep(min(_BUSY_RETRY_SECONDS, deadline.remaining()))


#: Pause between connection attempts while a socket's listen backlog is full.
_BUSY_RETRY_SECONDS = 0.1


def _connect_unix(address, shown, deadline):
    """A connected unix socket; None when the listen backlog is full (busy: try again)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(max(deadline.remaining(), 0.001))
    try:
        sock.connect(address)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, OSError) and exc.errno == errno.EAGAIN:
            return None  # before the PermissionError check: BlockingIOError is an OSError too
        if isinstance(exc, PermissionError):
            raise SocketPermissionError(shown, 'permission denied: the user this runs as may not use this socket')
        if isinstance(exc, ConnectionRefusedError):
            raise SocketRefusedError(shown, 'connection refused: the socket file is stale, QEMU is not running')
        if isinstance(exc, FileNotFoundError):
            raise SocketMissingError(shown, 'no such socket: is the VM running and the path right?')
        if isinstance(exc, socket.timeout):
            raise QemuTimeoutError(f'connecting to {shown}', deadline.seconds)
        raise
    return sock


class Runner:
    """Runs coroutines on this process' private event loop, each with a bound."""

    _shared = None

    def __init__(self):
        self.loop = asyncio.new_event_loop()

    @classmethod
    def shared(cls):
        # Created on first use, never at import: import sanity forbids loops at import time.
        if cls._shared is None or cls._shared.loop.is_closed():
            cls._shared = cls()
        return cls._shared

    def run(self, coro, timeout=None, what=None, hint=None):
        if timeout is not None:
            coro = asyncio.wait_for(coro, max(timeout, 0.001))
        try:
            return self.loop.run_until_complete(coro)
        except asyncio.TimeoutError:
            raise QemuTimeoutError(what or 'operation', timeout, hint)

    def call(self, func):
        """Run a plain function inside the loop (for objects that must be created there)."""
        async def _call():
            return func()
        return self.loop.run_until_complete(_call())


def classify_command_error(command, error_class, desc):
    """The error class a user can act on, from QEMU's or the agent's error reply."""
    desc = desc or ''
    if 'agent is in frozen state' in desc:
        return GuestFrozenError(command, error_class, desc)
    if error_class == 'CommandNotFound' and 'has been disabled' in desc:
        return CommandDisabledError(
            command, error_class, desc,
            message=f'{command} is disabled in the guest agent ({desc}): it is blocked by the agent '
                    'configuration (qemu-ga --block-rpcs, or --allow-rpcs on qemu-ga 8.0 and later)')
    if error_class == 'CommandNotFound':
        return CommandNotFoundError(command, error_class, desc)
    return CommandError(command, error_class, desc)


class ClientSession:
    """One locked qemu.qmp client session on a QMP or guest-agent socket."""

    kind = 'QMP'
    #: Said when a reply outgrows the session's bound.
    reply_bound_reason = "qemu.qmp's default reply size"

    def __init__(self, address, timeout=30.0, lock=True, runner=None, connector=None):
        self.address = parse_address(address)
        #: Reaches the socket another way (through SSH on its host, see `connect`), and names it so.
        self.connector = connector
        self.shown = connector.shown if connector is not None else format_address(self.address)
        self.timeout = float(timeout)
        # A connector takes the socket's lock where the socket is.
        self._lock = SocketLock(self.address) if lock and connector is None else None
        self._runner = runner
        self._client = None

    @property
    def runner(self):
        if self._runner is None:
            self._runner = Runner.shared()
        return self._runner

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def open(self):
        if qmp_lib is None:
            raise ImportError('the qemu.qmp Python library is required')
        if self._lock is not None:
            self._lock.acquire(self.timeout)
        try:
            self._open(Deadline(self.timeout))
        except BaseException:
            self.close()
            raise

    def _open(self, deadline):
        raise NotImplementedError

    def connect(self, deadline):
        """A connected stream socket to the peer: the socket itself, or the connector's byte stream to it."""
        if self.connector is not None:
            return self.connector.connect(max(deadline.remaining(), 0.001))
        return connect_socket(self.address, deadline.remaining())

    def _new_client(self, **attributes):
        def make():
            client = _Client('qemu.vm', **attributes)
            # The default listener would queue (and keep in its history) every event
            # forever and cannot be removed: make it refuse them. Ours are scoped.
            client.events.event_filter = _refuse_event
            return client
        return self.runner.call(make)

    def close(self):
        client, self._client = self._client, None
        if client is not None:
            try:
                self.runner.run(client.disconnect(), timeout=5)
            except Exception:  # pylint: disable=broad-except
                pass  # disconnect() re-raises whatever ended the session; it is over either way
        if self.connector is not None:
            self.connector.close()
        if self._lock is not None:
            self._lock.release()

    def execute(self, command, arguments=None, timeout=None):
        if self._client is None:
            raise ConnectionLostError(self.shown, 'the session is closed')
        bound = self.timeout if timeout is None else timeout
        try:
            return self.runner.run(
                self._client.execute(command, arguments), bound,
                what=f'{command} on {self.shown}')
        except qmp_lib.ExecuteError as exc:
            raise classify_command_error(command, exc.error_class, str(exc))
        except qmp_lib.QMPError as exc:
            limit = self._reply_limit_exceeded()
            if limit:
                raise ReplyTooLargeError(self.shown, f'the reply to {command}', limit, self.reply_bound_reason)
            raise ConnectionLostError(self.shown, f'while waiting for the reply to {command}: {_describe(exc)}')

    def _reply_limit_exceeded(self):
        """The reader's bound (readbuflen) when the session ended because a reply line outgrew it, else None.

        asyncio's readline() raises ValueError past its limit, having buffered about that much at
        most; qemu.qmp ends the session, and its disconnect() re-raises what ended it.
        """
        client, self._client = self._client, None
        try:
            self.runner.run(client.disconnect(), timeout=5)
        except ValueError as exc:
            return client.readbuflen if 'limit' in str(exc) else None
        except Exception:  # pylint: disable=broad-except
            return None  # another cause: the caller reports the session as lost
        return None


def _refuse_event(_event):
    return False


def _describe(exc):
    """qemu.qmp wraps the cause; show both."""
    cause = getattr(exc, 'exc', None) or exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in str(exc):
        return f'{exc}: {cause}'
    return str(exc) or type(exc).__name__
