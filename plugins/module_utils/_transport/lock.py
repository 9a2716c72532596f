# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""A per-socket host lock.

QEMU serves one client at a time on a monitor or agent socket; a second client
hangs or steals the channel. Tasks of this collection that target the same
socket take an exclusive flock first, so they wait their turn instead.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import SocketBusyError
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline

_POLL_SECONDS = 0.05


def lock_path_for(address):
    """Lock file for a socket address: beside a unix socket when that directory is writable."""
    if isinstance(address, tuple):
        key = '{0}:{1}'.format(*address)
        directory = tempfile.gettempdir()
    else:
        key = os.path.realpath(address)
        directory = os.path.dirname(key)
        if not os.access(directory, os.W_OK):
            directory = tempfile.gettempdir()
    digest = hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()[:16]
    return os.path.join(directory, f'.qemu.vm-{digest}.lock')


def freeze_marker_path(address):
    """File that says "a freeze of ours through this agent socket may not have been thawed yet"."""
    return lock_path_for(address)[:-len('.lock')] + '.frozen'


class SocketLock:
    """Exclusive flock for one socket, waited for at most `timeout` seconds.

    With existing_only, the lock file is never created, only opened read-only (flock needs
    no write access) when it exists; without it there is nothing to wait for. A reader that
    runs as another user (the inventory, often as root over everybody's VMs) must not leave
    files it owns beside their sockets: a root-owned lock file would lock their tasks out.
    """

    def __init__(self, address, existing_only=False):
        self.address = address
        self.path = lock_path_for(address)
        self.existing_only = existing_only
        self._fd = None

    def _open(self):
        if not self.existing_only:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def acquire(self, timeout):
        fd = self._open()
        if fd is None:
            return
        deadline = Deadline(timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._fd = fd
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    if self.existing_only:
                        return  # a reader goes ahead unlocked rather than fail over the lock
                    raise
            if deadline.expired:
                os.close(fd)
                raise SocketBusyError(
                    self.address,
                    f'another qemu.vm task held this socket for longer than timeout={timeout:g} s '
                    f'(lock file {self.path})')
            time.sleep(min(_POLL_SECONDS, deadline.remaining()))

    def release(self):
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing drops the flock
