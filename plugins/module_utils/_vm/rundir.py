# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""A VM's run directory: its layout, the checks that nobody else can steer it, the per-VM lock,
and the record of the applied definition (vm.json).

The directory is ours alone (0700, owned by the user running the module), so nothing another
local user plants can be in it; what is at its path and in it is still checked before use
(lstat, O_NOFOLLOW, owner): a symbolic link, another owner or permissions open to others are
refused with UntrustedPathError naming the path, and never followed or changed.

No Ansible imports here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline, wait_until
from ansible_collections.qemu.vm.plugins.module_utils._vm.definition import DEFAULT_RUN_ROOT
from ansible_collections.qemu.vm.plugins.module_utils._vm.errors import UntrustedPathError

RECORD_VERSION = 1
MAX_RECORD_BYTES = 1 << 20
MAX_PIDFILE_BYTES = 32
_NOFOLLOW_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class RunDir:
    """The paths of one VM's run directory and the operations on it."""

    def __init__(self, path):
        self.path = path
        self.qmp, self.monitor, self.qga = (os.path.join(path, n) for n in ('qmp.sock', 'monitor.sock', 'qga.sock'))
        self.pidfile, self.serial_log, self.record = (os.path.join(path, n) for n in ('qemu.pid', 'serial.log', 'vm.json'))
        self.seed, self.lockfile, self.ovmf_vars = (os.path.join(path, n) for n in ('seed.iso', 'lock', 'OVMF_VARS.fd'))
        self.euid = os.geteuid()

    # -- trust ---------------------------------------------------------------------------

    def exists(self):
        """False when nothing is at the path; True for a directory we may use; raises for anything else."""
        self._check_ancestors()
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise UntrustedPathError(self.path, 'the run directory is a symbolic link')
        if not stat.S_ISDIR(st.st_mode):
            raise ParameterError('run_dir', f'run_dir: {self.path} exists and is not a directory')
        if st.st_uid != self.euid:
            raise UntrustedPathError(self.path, f'the run directory belongs to uid {st.st_uid}, not to uid {self.euid} that '
                                                'runs this module')
        if st.st_mode & 0o022:
            raise UntrustedPathError(self.path, f'the run directory is writable by other users (mode {st.st_mode & 0o7777:04o}), '
                                                'so what is in it cannot be trusted; remove it')
        if st.st_mode & 0o077:
            os.chmod(self.path, 0o700)
        return True

    def _check_ancestors(self):
        """No directory or link above us lets another user swap the path: each belongs to root or to us,
        and none is writable by others unless sticky (as /tmp is)."""
        parent = os.path.dirname(self.path)
        while True:
            try:
                st = os.lstat(parent)
            except FileNotFoundError:
                st = None
            if st is not None and st.st_uid not in (0, self.euid):
                raise UntrustedPathError(parent, f'it belongs to uid {st.st_uid}, who could redirect the run directory below it')
            if st is not None and stat.S_ISDIR(st.st_mode) and st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                raise UntrustedPathError(parent, 'a directory above the run directory is writable by other users and not '
                                                 'sticky')
            if parent == os.path.dirname(parent):
                return
            parent = os.path.dirname(parent)

    def create(self):
        """mkdir 0700 (and the default root /run/qemu-vm); True when this call made it."""
        parent = os.path.dirname(self.path)
        if parent == DEFAULT_RUN_ROOT and not os.path.lexists(parent):
            try:
                os.mkdir(parent, 0o700)
            except FileExistsError:
                pass
        if not os.path.isdir(parent) or os.path.islink(parent):
            raise ParameterError('run_dir', f'run_dir: the directory {parent} does not exist')
        try:
            os.mkdir(self.path, 0o700)
        except FileExistsError:
            return False
        return True

    # -- the per-VM lock -------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, create, timeout, what):
        """Hold the VM's lock (flock of `lock` in the run directory) for the block.

        Yields True when this call created the run directory, False when it existed, and None
        (no lock) when it does not exist and `create` is false. A lock file that another task
        removed with the directory (state absent) while we waited is noticed, and we start over.
        """
        deadline = Deadline(timeout)
        while True:
            created = False
            if not self.exists():
                if not create:
                    yield None
                    return
                created = self.create()
                self.exists()
            fd = self._open_lock()
            if fd is None:
                continue  # the directory went away between the check and the open
            try:
                wait_until(lambda: _try_flock(fd), deadline, what,
                           hint=f'another task holds the lock of this VM ({self.lockfile})', interval=0.05,
                           max_interval=0.5)
                if self._still_at_path(fd):
                    yield created
                    return
            finally:
                os.close(fd)

    def _open_lock(self):
        try:
            fd = os.open(self.lockfile, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UntrustedPathError(self.lockfile, 'the lock file is a symbolic link') from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != self.euid:
            os.close(fd)
            raise UntrustedPathError(self.lockfile, 'the lock file is not a regular file of ours')
        return fd

    def _still_at_path(self, fd):
        try:
            st = os.lstat(self.lockfile)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    # -- files in it -------------------------------------------------------------------------

    def _read_private(self, path, limit):
        """Bytes of a regular file of ours (never through a link), or None when it is not there."""
        try:
            fd = os.open(path, _NOFOLLOW_READ)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UntrustedPathError(path, 'a symbolic link where a file of ours belongs') from None
            raise
        with os.fdopen(fd, 'rb') as handle:
            st = os.fstat(handle.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_uid != self.euid:
                raise UntrustedPathError(path, 'not a regular file of ours')
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise UntrustedPathError(path, f'larger than {limit} bytes')
        return data

    def read_record(self):
        """The record of the applied definition (vm.json), or None when there is none or it is unreadable."""
        data = self._read_private(self.record, MAX_RECORD_BYTES)
        try:
            record = json.loads(data.decode('utf-8')) if data is not None else None
        except ValueError:
            return None
        if not isinstance(record, dict) or record.get('version') != RECORD_VERSION:
            return None
        return record

    def write_record(self, record):
        """vm.json, 0600, replaced atomically (a reader sees the old or the new record, never half of one)."""
        record = dict(record, version=RECORD_VERSION)
        temporary = os.path.join(self.path, f'.vm.json.{os.getpid()}.tmp')
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                json.dump(record, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.record)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def read_pid(self):
        data = self._read_private(self.pidfile, MAX_PIDFILE_BYTES)
        try:
            pid = int(data.decode('ascii').strip()) if data else None
        except ValueError:
            return None
        return pid if pid and pid > 1 else None

    def clear_runtime(self):
        """Remove what a QEMU that is gone left (sockets, pid file), so the next one starts clean."""
        for path in (self.qmp, self.monitor, self.qga, self.pidfile):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                raise UntrustedPathError(path, 'a directory where a socket or the pid file belongs')
            os.unlink(path)  # unlink never follows a link

    def remove(self):
        """Remove the run directory and everything in it (links inside are removed, never followed)."""
        if self.exists():
            shutil.rmtree(self.path)


def _try_flock(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
