# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The local side of a guest file transfer: the bytes to put in the guest (Source), and the local copy of a
guest file (LocalCopy: private from its first byte, made only once the size to come fits, renamed into
place with its final mode). No Ansible imports.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile

from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import LocalFileError, LocalNoSpaceError, SourceFileError

MIB = 1024 * 1024


def check_free_space(directory, size, path):
    """Raise LocalNoSpaceError when `directory` has less than `size` bytes free for us (what others may use)."""
    try:
        info = os.statvfs(directory)
    except OSError as exc:
        raise LocalFileError(path, f'cannot read the free space of {directory}: {exc.strerror or exc}') from exc
    free = info.f_bavail * info.f_frsize
    if size > free:
        raise LocalNoSpaceError(path, f'{directory} has {free} bytes free, and {path} from the guest needs up to {size}: '
                                      'nothing was written', size, free)


def fetched_mode(guest_mode):
    """The mode of a local copy of a guest file: the guest file's permission bits minus our umask (as
    sftp gives them), or 0600 when the guest could not say (guest_mode None)."""
    if guest_mode is None:
        return 0o600
    umask = os.umask(0o077)
    os.umask(umask)
    return guest_mode & 0o777 & ~umask


class LocalCopy:
    """The local file a guest file is read into: private (0600) from its first byte, made beside `dest`
    only once the size to come is known to fit there (create), renamed over `dest` by commit, deleted
    on every other path (a `with` block)."""

    def __init__(self, dest, path, prefix='.qemu-vm-', suffix='.part'):
        self.dest = dest
        self.path = path
        self.directory = os.path.dirname(os.path.abspath(dest))
        self.prefix = prefix
        self.suffix = suffix
        self.temp = None
        self._handle = None

    def create(self, size):
        check_free_space(self.directory, size, self.path)
        try:
            fd, self.temp = tempfile.mkstemp(prefix=self.prefix, suffix=self.suffix, dir=self.directory)
        except OSError as exc:
            raise LocalFileError(self.path, f'cannot write into {self.directory}: {exc.strerror or exc}') from exc
        self._handle = os.fdopen(fd, 'wb')

    def write(self, data):
        try:
            self._handle.write(data)
        except OSError as exc:
            raise LocalFileError(self.path, f'cannot write {self.temp}: {exc.strerror or exc}') from exc

    def commit(self, mode=None, owner=None, finish=None):
        """Give the complete copy `mode` and `owner` ((uid, gid)), then finish(temp path) (the owner, group
        and mode a module sets), then rename it over dest: it is never in place with other permissions."""
        if self._handle is None:
            self.create(0)
        try:
            self._handle.flush()
            if owner is not None:
                os.fchown(self._handle.fileno(), *owner)
            if mode is not None:
                os.fchmod(self._handle.fileno(), mode)
            self._handle.close()
            if finish is not None:
                finish(self.temp)
            os.replace(self.temp, self.dest)
        except OSError as exc:
            raise LocalFileError(self.path, f'cannot write {self.dest}: {exc.strerror or exc}') from exc
        self.temp = None

    def discard(self):
        if self._handle is not None:
            self._handle.close()
        if self.temp is not None:
            try:
                os.unlink(self.temp)
            except FileNotFoundError:
                pass
            self.temp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.discard()


class Source:
    """Bytes to put in the guest: a local file or `content`; readable as often as needed."""

    def __init__(self, path=None, data=None, label=None):
        self.path = path
        self.data = data
        self.label = label or path or 'content'
        self._sha256 = None
        if path is not None:
            try:
                info = os.stat(path)
            except OSError as exc:
                raise SourceFileError(None, f'src {self.label}: {exc.strerror or exc}') from exc
            if stat.S_ISDIR(info.st_mode):
                raise SourceFileError(None, f'src {self.label} is a directory: qemu_guest_file copies one file')
            if not stat.S_ISREG(info.st_mode):
                raise SourceFileError(None, f'src {self.label} is not a regular file')
            if not os.access(path, os.R_OK):
                raise SourceFileError(None, f'src {self.label}: permission denied')
            self.size = info.st_size
        else:
            self.size = len(data)

    def open(self):
        if self.path is not None:
            return open(self.path, 'rb')
        return _BytesReader(self.data)

    def sha256(self, chunk_size=MIB):
        if self._sha256 is None:
            hasher = hashlib.sha256()
            buf = bytearray(chunk_size)
            view = memoryview(buf)
            with self.open() as handle:
                while True:
                    count = handle.readinto(view)
                    if not count:
                        break
                    hasher.update(view[:count])
            self._sha256 = hasher.hexdigest()
        return self._sha256

    def head(self, limit):
        """The first `limit` bytes (for diffs of small files)."""
        with self.open() as handle:
            return handle.read(limit)


class _BytesReader:
    """readinto()/read() over bytes without copying them into a BytesIO."""

    def __init__(self, data):
        self._view = memoryview(data)
        self._pos = 0

    def readinto(self, target):
        count = min(len(target), len(self._view) - self._pos)
        target[:count] = self._view[self._pos:self._pos + count]
        self._pos += count
        return count

    def read(self, size=-1):
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        data = bytes(self._view[self._pos:end])
        self._pos = end
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._view.release()
