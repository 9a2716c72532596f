# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Guest agent (QGA) sessions.

Every connection starts with the guest-sync-delimited handshake on the raw socket:
a 0xFF byte makes the agent drop any half-parsed request an earlier client left,
and the agent prefixes its reply with 0xFF, so we can skip stale bytes and stale
replies up to it. Only then does qemu.qmp read the stream: a 0xFF byte would
end its session (invalid UTF-8). What the guest sends is bounded: the handshake keeps
a few KiB at most, and a reply longer than the session's `max_reply` ends the session.

This is transport only: no guest operation happens here. Opening a session that first
thaws a freeze an interrupted run of ours left is the guest layer's (_guest/session.py).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import AgentNotRespondingError, ConnectionLostError, QemuTimeoutError, SocketError
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import ReplyTooLargeError
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import (
    ClientSession, Deadline, _describe, classify_command_error, qmp_lib,
)

SENTINEL = b'\xff'
#: guest-file-read refuses counts above this.
MAX_FILE_CHUNK = 48 * 1024 * 1024
#: What a reply carries besides its base64 payload: the JSON around it, its id.
REPLY_OVERHEAD = 64 * 1024


def reply_bytes_for(chunk):
    """The longest reply line of a guest-file-read of `chunk` bytes: base64 (4/3) plus the JSON around it."""
    return (chunk + 2) // 3 * 4 + REPLY_OVERHEAD


#: The most a session accepts in one reply, by default: a 48 MiB guest-file-read chunk (64 MiB of
#: base64; qemu_guest_file's largest chunk_size) is the largest legitimate reply. guest-exec-status
#: with both streams at the agent's 16 MiB cap is about 43 MiB.
MAX_REPLY_BYTES = reply_bytes_for(MAX_FILE_CHUNK)
#: For sessions that only ask small questions (inventory, freeze and thaw, pings): JSON grows
#: about 25 times once parsed into Python objects, so a hostile guest gets little out of this.
SMALL_REPLY_BYTES = 1024 * 1024
#: A guest-sync-delimited reply is 0xFF and {"return": <int64>}: a line longer than this after 0xFF is not one.
MAX_SYNC_LINE = 4096
#: The handshake is bounded on its own: libvirt uses 5 s, we allow TCG guests more.
SYNC_TIMEOUT = 10.0
#: Freezing flushes the guest's dirty data first, which can take minutes (Proxmox allows 1 h).
FREEZE_TIMEOUT = 300.0
FREEZE_COMMANDS = frozenset(['guest-fsfreeze-freeze', 'guest-fsfreeze-freeze-list'])
#: File transfer bound: `timeout` plus this slow a rate for the bytes moved.
SLOWEST_BYTES_PER_SECOND = 1024 * 1024
#: Commands that send no reply on success; callers confirm the result another way.
NO_REPLY_COMMANDS = frozenset(['guest-shutdown', 'guest-suspend-disk', 'guest-suspend-ram', 'guest-suspend-hybrid'])

_rng = random.SystemRandom()


def sync_delimited(sock, timeout, address):
    """Run the guest-sync-delimited handshake on a connected raw socket.

    Returns once the agent echoed our id; raises AgentNotRespondingError when it
    did not within `timeout`. Bytes before a 0xFF are dropped as they come, and a line
    after one is at most MAX_SYNC_LINE long: what we hold stays small whatever the guest sends.
    """
    sync_id = _rng.randint(-2 ** 63, 2 ** 63 - 1)
    request = json.dumps({'execute': 'guest-sync-delimited', 'arguments': {'id': sync_id}})
    deadline = Deadline(timeout)
    try:
        sock.settimeout(max(deadline.remaining(), 0.001))
        sock.sendall(SENTINEL + request.encode('ascii'))
        pending = b''
        while True:
            start = pending.find(SENTINEL)
            if start >= 0:
                end = pending.find(b'\n', start)
                if end >= 0:
                    line, pending = pending[start + 1:end], pending[end + 1:]
                    if _is_reply_to(line, sync_id):
                        return
                    continue
                pending = pending[start:]
                if len(pending) > MAX_SYNC_LINE:
                    raise ReplyTooLargeError(address, "the line after the agent's 0xFF delimiter", MAX_SYNC_LINE,
                                             'a guest-sync-delimited reply is a few dozen bytes: this is not a guest agent')
            else:
                pending = b''  # everything before the sentinel is stale
            if deadline.expired:
                raise socket.timeout()
            sock.settimeout(max(deadline.remaining(), 0.001))
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionLostError(address, 'the agent socket closed during guest-sync-delimited')
            pending += chunk
    except socket.timeout:
        raise AgentNotRespondingError(address, timeout)
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise ConnectionLostError(address, f'during guest-sync-delimited: {exc}')


def _is_reply_to(line, sync_id):
    try:
        reply = json.loads(line.decode('utf-8', 'replace'))
    except ValueError:
        return False
    return isinstance(reply, dict) and reply.get('return') == sync_id


class QGASession(ClientSession):
    """A guest-agent session: `with QGASession(path, timeout) as qga: qga.execute(...)`."""

    kind = 'QGA'
    reply_bound_reason = ('the largest legitimate agent reply is a 48 MiB guest-file-read chunk, 64 MiB of base64; '
                          'sessions that only ask small questions accept 1 MiB')

    def __init__(self, address, timeout=30.0, lock=True, runner=None, sync_timeout=None, max_reply=MAX_REPLY_BYTES,
                 connector=None):
        super().__init__(address, timeout, lock, runner, connector)
        self.sync_timeout = min(self.timeout, SYNC_TIMEOUT) if sync_timeout is None else sync_timeout
        #: A longer reply ends the session with ReplyTooLargeError (the reader holds about this much at most).
        self.max_reply = int(max_reply)
        self._info = None
        self._pending = []

    def _open(self, deadline):
        sock = self.connect(deadline)
        try:
            sync_delimited(sock, min(self.sync_timeout, deadline.remaining()), self.shown)
            client = self._new_client(readbuflen=self.max_reply)
            client.await_greeting = False  # the agent sends no greeting
            client.negotiate = False
            self.runner.run(client.connect(sock), max(deadline.remaining(), 1.0),
                            what=f'attaching to the agent on {self.shown}')
        except qmp_lib.QMPError as exc:
            sock.close()
            raise ConnectionLostError(self.shown, _describe(exc))
        except BaseException:
            sock.close()
            raise
        self._client = client

    def close(self):
        for task in self._pending:
            task.cancel()
        self._pending = []
        super().close()

    @staticmethod
    def freeze_command_timeout(timeout):
        return max(timeout, FREEZE_TIMEOUT)

    def command_timeout(self, command, arguments=None):
        """The per-command bound: `timeout`, longer for freezing and for big transfers."""
        if command in FREEZE_COMMANDS:
            return self.freeze_command_timeout(self.timeout)
        arguments = arguments or {}
        if command == 'guest-file-read':
            return self.timeout + arguments.get('count', 4096) / SLOWEST_BYTES_PER_SECOND
        if command == 'guest-file-write':
            return self.timeout + len(arguments.get('buf-b64', '')) / SLOWEST_BYTES_PER_SECOND
        return self.timeout

    def execute(self, command, arguments=None, timeout=None):
        if timeout is None:
            timeout = self.command_timeout(command, arguments)
        return super().execute(command, arguments, timeout)

    def send_no_reply(self, command, arguments=None):
        """Send a command that answers only on failure (guest-shutdown, guest-suspend-*).

        Returns a PendingCommand; its check() raises the agent's error if one arrives
        while the caller waits (through QMP) for the outcome.
        """
        if self._client is None:
            raise ConnectionLostError(self.shown, 'the session is closed')
        client = self._client
        task = self.runner.loop.create_task(client.execute(command, arguments))
        self._pending.append(task)
        # Let the writer put the request on the wire now.
        self.runner.run(asyncio.sleep(0.05), timeout=1)
        return PendingCommand(command, task, self.shown)

    # -- what the agent offers --------------------------------------------------------

    def info(self):
        if self._info is None:
            self._info = self.execute('guest-info')
        return self._info

    def command_state(self, name):
        """'enabled', 'disabled' or 'missing', from guest-info."""
        for entry in self.info().get('supported_commands', []):
            if entry.get('name') == name:
                return 'enabled' if entry.get('enabled', True) else 'disabled'
        return 'missing'


class PendingCommand:
    """A command sent without waiting; asks whether the agent has answered yet."""

    def __init__(self, command, task, address):
        self.command = command
        self._task = task
        self._address = address

    def check(self):
        """Raise the agent's error if it answered with one; return its reply, or None while silent."""
        if not self._task.done():
            return None
        if self._task.cancelled():
            return None
        exc = self._task.exception()
        if exc is None:
            return self._task.result()
        if isinstance(exc, qmp_lib.ExecuteError):
            raise classify_command_error(self.command, exc.error_class, str(exc))
        if isinstance(exc, qmp_lib.QMPError):
            return None  # the channel went away, as it does when the guest powers off
        raise exc


def wait_for_agent(address, timeout, attempt_timeout=5.0, runner=None):
    """Block until the agent on `address` answers a sync, at most `timeout` seconds.

    Returns the number of seconds it took. Each attempt reconnects, so an agent
    restarted by a reboot, or a socket QEMU has not created yet, is found too.
    """
    deadline = Deadline(timeout)
    last_error = None
    while not deadline.expired:
        session = QGASession(address, timeout=max(deadline.remaining(), 0.001), runner=runner,
                             sync_timeout=min(attempt_timeout, deadline.remaining()), max_reply=SMALL_REPLY_BYTES)
        try:
            session.open()
            session.execute('guest-ping', timeout=max(deadline.remaining(), 1.0))
            return deadline.seconds - deadline.remaining()
        except (AgentNotRespondingError, ConnectionLostError, SocketError) as exc:
            last_error = exc
        finally:
            session.close()
        # A socket that is not there yet (QEMU starting) fails fast; don't spin.
        time.sleep(min(0.2, deadline.remaining()))
    raise QemuTimeoutError(
        f'waiting for the guest agent on {address}', timeout,
        f'last error: {last_error}' if last_error else None)
