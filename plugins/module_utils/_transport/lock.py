# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""A per-socket host lock, and the private directory where it and other per-socket files live.

QEMU serves one client at a time on a monitor or agent socket; a second client
hangs or steals the channel. Tasks of this collection that target the same
socket take an exclusive flock first, so they wait their turn instead.

The files live in a private runtime directory of the user we run as, never beside the
socket (its directory may belong to a less privileged user) nor under a shared /tmp name:
  root     /run/qemu-vm
  others   $XDG_RUNTIME_DIR/qemu-vm, else /run/user/<uid>/qemu-vm, else ~/.cache/qemu-vm
The directory is created 0700 and checked to be a real directory of ours, closed to others;
each file is opened relative to it with O_NOFOLLOW | O_NONBLOCK and checked to be a regular
file of ours with one link. Anything else is a RuntimeFileError naming the path: nothing is
read or written through a symbolic link, a FIFO or another user's file, and nothing hangs.

Files are named by a hash of the socket (its resolved path, or host:port). Not by its inode:
that changes every time QEMU starts, so a lock would not be shared by a task that looked before
the socket existed and one after, and names would pile up. Tasks of different users do not
share a lock (each has its own directory); QEMU's one-client rule still holds them apart.
A lock file is removed by the holder as it lets go, so the directory does not fill up.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import pwd
import stat
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import SocketBusyError
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import RuntimeFileError
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline

_POLL_SECONDS = 0.05
DIR_NAME = 'qemu-vm'
LOCK_SUFFIX = '.lock'
_FILE_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


# -- where -------------------------------------------------------------------------

def runtime_dir(euid=None, environ=None):
    """The private directory for this user's lock and marker files (not created here)."""
    euid = os.geteuid() if euid is None else euid
    environ = os.environ if environ is None else environ
    if euid == 0 and os.path.isdir('/run'):
        return os.path.join('/run', DIR_NAME)
    for base in (environ.get('XDG_RUNTIME_DIR'), f'/run/user/{euid}'):
        if base and os.path.isabs(base) and _is_dir_of(base, euid):
            return os.path.join(base, DIR_NAME)
    try:
        home = pwd.getpwuid(euid).pw_dir
    except KeyError:
        home = None
    if not home or not os.path.isabs(home):
        raise RuntimeFileError(f'the home directory of uid {euid}', 'missing, and neither XDG_RUNTIME_DIR nor /run/user/'
                                                                    f'{euid} is a directory of this user: set XDG_RUNTIME_DIR')
    return os.path.join(home, '.cache', DIR_NAME)


def _is_dir_of(path, euid):
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == euid


def socket_key(address):
    """A file name stem for a socket address: a unix path (resolved) or a (host, port) tuple."""
    if isinstance(address, tuple):
        text = 'tcp:{0}:{1}'.format(*address)
    else:
        text = 'unix:' + os.path.realpath(address)
    return hashlib.sha256(text.encode('utf-8', 'surrogateescape')).hexdigest()[:32]


def runtime_path(address, suffix):
    return os.path.join(runtime_dir(), socket_key(address) + suffix)


def lock_path_for(address):
    """Where the lock file of a socket address lives."""
    return runtime_path(address, LOCK_SUFFIX)


# -- checked opening ---------------------------------------------------------------

def _describe(path, exc, kind):
    """Why opening `path` (expected of `kind`) failed, in words a user can act on."""
    try:
        info = os.lstat(path)
    except OSError:
        return f'cannot be opened: {exc.strerror or exc}'
    return _not_ours(info, kind) or f'cannot be opened: {exc.strerror or exc}'


def _not_ours(info, kind):
    """None when `info` is of `kind` (stat.S_ISREG/S_ISDIR) and ours; else what is wrong."""
    euid = os.geteuid()
    if not kind(info.st_mode):
        found = ('a symbolic link' if stat.S_ISLNK(info.st_mode) else 'a FIFO' if stat.S_ISFIFO(info.st_mode)
                 else 'a socket' if stat.S_ISSOCK(info.st_mode) else 'a directory' if stat.S_ISDIR(info.st_mode)
                 else 'a device' if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else 'a regular file')
        wanted = 'a directory' if kind is stat.S_ISDIR else 'a regular file'
        return f'is {found}, not {wanted} qemu.vm made; nothing was read or written through it: remove it'
    if info.st_uid != euid:
        return f'belongs to uid {info.st_uid}, not to uid {euid} that qemu.vm runs as: remove it'
    if kind is stat.S_ISDIR and info.st_mode & 0o077:
        return (f'has mode {stat.S_IMODE(info.st_mode):04o}: it must be 0700, closed to other users '
                '(chmod 0700 it after checking what is inside, or remove it)')
    if kind is stat.S_ISREG and info.st_nlink > 1:
        return f'has {info.st_nlink} hard links: it is not a file qemu.vm made; remove it'
    return None


def open_runtime_dir(create=True):
    """(fd, path) of the private runtime directory, checked; (None, path) when it is missing and not `create`."""
    path = runtime_dir()
    if create:
        try:
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise RuntimeFileError(path, f'cannot create the private directory for qemu.vm lock files: {exc.strerror or exc}')
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        if not create:
            return None, path
        raise RuntimeFileError(path, 'vanished right after it was created')
    except OSError as exc:
        raise RuntimeFileError(path, _describe(path, exc, stat.S_ISDIR))
    problem = _not_ours(os.fstat(fd), stat.S_ISDIR)
    if problem:
        os.close(fd)
        raise RuntimeFileError(path, problem)
    return fd, path


def open_runtime_file(dir_fd, dir_path, name, create):
    """A checked read-write fd of `name` in the runtime directory; None when it is missing and not `create`."""
    path = os.path.join(dir_path, name)
    try:
        # Refuse a device or a FIFO before opening it at all; fstat below closes the race.
        problem = _not_ours(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), stat.S_ISREG)
    except FileNotFoundError:
        problem = None
    if problem:
        raise RuntimeFileError(path, problem)
    try:
        fd = os.open(name, _FILE_FLAGS | (os.O_CREAT if create else 0), 0o600, dir_fd=dir_fd)
    except FileNotFoundError:
        if create:
            raise RuntimeFileError(path, 'vanished while being created')
        return None
    except OSError as exc:
        raise RuntimeFileError(path, _describe(path, exc, stat.S_ISREG))
    info = os.fstat(fd)
    problem = None if info.st_nlink == 0 else _not_ours(info, stat.S_ISREG)
    if problem:
        os.close(fd)
        raise RuntimeFileError(path, problem)
    return fd


def runtime_file_exists(address, suffix):
    """Whether this socket's `suffix` file exists; a RuntimeFileError if something else is in its place."""
    dir_fd, dir_path = open_runtime_dir(create=False)
    if dir_fd is None:
        return False
    name = socket_key(address) + suffix
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    finally:
        os.close(dir_fd)
    problem = _not_ours(info, stat.S_ISREG)
    if problem:
        raise RuntimeFileError(os.path.join(dir_path, name), problem)
    return True


def write_runtime_file(address, suffix, data):
    """Create or replace the content of this socket's `suffix` file (0600, checked)."""
    dir_fd, dir_path = open_runtime_dir()
    try:
        fd = open_runtime_file(dir_fd, dir_path, socket_key(address) + suffix, create=True)
    finally:
        os.close(dir_fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, data)
    except OSError as exc:
        raise RuntimeFileError(os.path.join(dir_path, socket_key(address) + suffix), f'cannot be written: {exc.strerror or exc}')
    finally:
        os.close(fd)


def remove_runtime_file(address, suffix):
    """Remove this socket's `suffix` file if it exists (unlink never follows a link)."""
    dir_fd, dir_path = open_runtime_dir(create=False)
    if dir_fd is None:
        return
    name = socket_key(address) + suffix
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise RuntimeFileError(os.path.join(dir_path, name), f'cannot be removed: {exc.strerror or exc}')
    finally:
        os.close(dir_fd)


# -- the lock ------------------------------------------------------------------------

class SocketLock:
    """Exclusive flock for one socket, waited for at most `timeout` seconds.

    With existing_only, the lock file is never created, only opened when it exists (a task
    holds it or waits for it); without one there is nothing to wait for.
    """

    def __init__(self, address, existing_only=False):
        self.address = address
        self.name = socket_key(address) + LOCK_SUFFIX
        self.path = lock_path_for(address)
        self.existing_only = existing_only
        self._fd = None
        self._dir_fd = None

    def acquire(self, timeout):
        deadline = Deadline(timeout)
        dir_fd, dir_path = open_runtime_dir(create=not self.existing_only)
        if dir_fd is None:
            return
        self.path = os.path.join(dir_path, self.name)
        try:
            while True:
                fd = open_runtime_file(dir_fd, dir_path, self.name, create=not self.existing_only)
                if fd is None:
                    break  # a reader goes ahead: nobody holds this socket
                self._wait_for(fd, deadline, timeout)
                if self._still_linked(fd, dir_fd):
                    self._fd, self._dir_fd, dir_fd = fd, dir_fd, None
                    return
                os.close(fd)  # the holder removed it as it let go: take the next one
        finally:
            if dir_fd is not None:
                os.close(dir_fd)

    def _wait_for(self, fd, deadline, timeout):
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise RuntimeFileError(self.path, f'cannot be locked: {exc.strerror or exc}')
            if deadline.expired:
                holder = describe_process(lock_holder(os.fstat(fd)))
                os.close(fd)
                raise SocketBusyError(
                    self.address,
                    f'another qemu.vm task{holder} held this socket for longer than timeout={timeout:g} s '
                    f'(lock file {self.path})')
            time.sleep(min(_POLL_SECONDS, deadline.remaining()))

    def _still_linked(self, fd, dir_fd):
        try:
            named = os.stat(self.name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def release(self):
        if self._fd is not None:
            fd, self._fd = self._fd, None
            dir_fd, self._dir_fd = self._dir_fd, None
            try:
                os.unlink(self.name, dir_fd=dir_fd)  # still holding it: a waiter on this file retries
            except OSError:
                pass
            finally:
                os.close(fd)  # closing drops the flock
                os.close(dir_fd)


# -- who holds it ---------------------------------------------------------------------

#: /proc/locks lists every lock on the host; read no more than this of it.
_LOCKS_MAX_BYTES = 4 << 20
_ANSIBALLZ = 'AnsiballZ_'


def lock_holder(st, locks_path='/proc/locks'):
    """The pid that took the flock on the file `st` describes (os.fstat), or None when it cannot be told.

    /proc/locks names each lock's file as <major>:<minor>:<inode> (hex, hex, decimal) and the pid that
    took it; waiters are the lines marked '->'.
    """
    wanted = f'{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}'
    try:
        with open(locks_path, 'rb') as handle:
            text = handle.read(_LOCKS_MAX_BYTES).decode('ascii', 'replace')
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == 'FLOCK' and fields[5] == wanted and fields[4].isdigit():
            return int(fields[4]) or None
    return None


def describe_process(pid, proc_root='/proc'):
    """' (pid N, qemu_backup)' for a module run (its AnsiballZ file names the module), ' (pid N, comm)'
    otherwise, '' when pid is None. Only kernel-made files are read, each bounded."""
    if pid is None:
        return ''
    try:
        with open(os.path.join(proc_root, str(pid), 'cmdline'), 'rb') as handle:
            argv = handle.read(65536).split(b'\0')
        with open(os.path.join(proc_root, str(pid), 'comm'), 'rb') as handle:
            comm = handle.read(64).decode('utf-8', 'replace').strip()
    except OSError:
        return f' (pid {pid})'
    for arg in argv:
        base = os.path.basename(arg).decode('utf-8', 'replace')
        if base.startswith(_ANSIBALLZ) and base.endswith('.py'):
            return f' (pid {pid}, {base[len(_ANSIBALLZ):-3]})'
    return f' (pid {pid}, {comm})' if comm else f' (pid {pid})'
