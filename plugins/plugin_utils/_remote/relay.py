# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This plugin_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The relay: runs on the hypervisor (bundle.py ships it), between SSH's stdin/stdout and a VM's socket.

It takes the collection's per-socket lock there, the same file a module running there takes
(_transport/lock.py), connects to the socket, says in one JSON line whether that worked, then moves
bytes both ways until either side closes: the controller closing the SSH channel (stdin ends) is the
end of the session, and the lock goes with the process. Nothing of ours stays running.

The header line: {"ok": true, "frozen": <the socket's freeze marker exists>} or
{"error": <QemuVMError class name>, "reason": ..., "message": ...}.
"""

from __future__ import annotations

import json
import os
import select

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError
from ansible_collections.qemu.vm.plugins.module_utils._guest.session import FROZEN_SUFFIX
from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import SocketLock, runtime_file_exists
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import connect_socket, parse_address
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline

#: What each side may have read and not yet passed on.
BUFFER = 256 * 1024
#: How to take the lock: as a task does (created), as the inventory does (only when a task holds it), not.
LOCK_MODES = ('take', 'existing', 'none')


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def header(fd, **fields):
    _write_all(fd, json.dumps(fields).encode('utf-8') + b'\n')


def pump(sock, stdin=0, stdout=1):
    """Move bytes between the stdin/stdout pair and `sock` until either side ends."""
    sock.setblocking(True)
    while True:
        readable = select.select([stdin, sock], [], [])[0]
        if stdin in readable:
            data = os.read(stdin, BUFFER)
            if not data:
                return
            sock.sendall(data)
        if sock in readable:
            data = sock.recv(BUFFER)
            if not data:
                return
            _write_all(stdout, data)


def relay(address, lock='take', timeout=30.0):
    """Connect to the socket `address` of this host under its lock, then relay stdin/stdout to it; exit status 0."""
    deadline = Deadline(float(timeout))
    held = None
    sock = None
    try:
        parsed = parse_address(address)
        if lock != 'none':
            held = SocketLock(parsed, existing_only=lock == 'existing')
            held.acquire(float(timeout))
        sock = connect_socket(parsed, max(deadline.remaining(), 0.001))
        frozen = runtime_file_exists(parsed, FROZEN_SUFFIX)
    except (QemuVMError, ValueError) as exc:
        if sock is not None:
            sock.close()
        if held is not None:
            held.release()
        header(1, error=type(exc).__name__, reason=str(getattr(exc, 'reason', exc)), message=str(exc))
        return 0
    header(1, ok=True, frozen=frozen)
    try:
        pump(sock)
    except OSError:
        pass  # either side went away: the session is over
    finally:
        sock.close()
        if held is not None:
            held.release()
    return 0
