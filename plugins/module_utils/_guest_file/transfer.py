# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Guest file transfer primitives: open, stream in large chunks, close on every path.

guest-file-open/-read/-write/-close move the bytes; reads and writes go in large chunks
(guest-file-read accepts up to 48 MiB, a write request must stay under the agent's 64 MiB
JSON token limit), one reusable buffer per transfer, so memory is bounded by the chunk
size, never by the file size. The SHA-256 of every byte is computed while it streams.

Used by the qemu.vm.qga connection plugin (put_file/fetch_file), and meant for
qemu_guest_file. No Ansible imports.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import posixpath
import stat
import tempfile

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    ConnectionLostError,
    GuestFrozenError,
    QemuVMError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import GuestFileError, LocalFileError
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import MAX_FILE_CHUNK

MIB = 1024 * 1024
#: The default chunk: the agent's cost is per base64 character (its JSON lexer), so writes move at
#: the same pace within a few percent from 256 KiB to 48 MiB chunks, 4 KiB ones pay a round trip per
#: call, and 1 MiB was the fastest of the sweep both ways (bench/results.md, figure 2), at low memory.
DEFAULT_CHUNK = MIB
#: A 48 MiB write is 64 MiB of base64, over the agent's JSON token limit: stay below it.
MAX_WRITE_CHUNK = MAX_FILE_CHUNK - 4096
FILE_COMMANDS = ('guest-file-open', 'guest-file-read', 'guest-file-write', 'guest-file-close')
BLOCKED_HINT = ('turn them on in the agent configuration: qemu-ga --allow-rpcs / --block-rpcs '
                '(allow-rpcs= / block-rpcs= in /etc/qemu/qemu-ga.conf; RHEL-family guests block guest-file-* '
                'by default through BLOCK_RPCS/BLACKLIST_RPC in /etc/sysconfig/qemu-ga)')
_REASONS = (
    ('No such file or directory', 'missing'),
    ('Permission denied', 'permission'),
    ('Operation not permitted', 'permission'),
    ('Is a directory', 'directory'),
    ('Not a directory', 'not_directory'),
    ('Read-only file system', 'read_only'),
    ('No space left on device', 'no_space'),
    ('Disk quota exceeded', 'no_space'),
)


def reason_of(text):
    for needle, reason in _REASONS:
        if needle in (text or ''):
            return reason
    return None


def explain_text(path, what, text, command=None):
    """An error text from the guest (an agent reply, a tool's stderr), said in terms of the file."""
    reason = reason_of(text)
    where = 'guest-exec' if command is None else command
    if reason == 'permission':
        message = f'permission denied in the guest: cannot {what} {path} ({where}: {text}); the guest agent runs as its own user ' \
                  'there (usually root) and the file, its directory or a security policy forbids it'
    elif reason == 'read_only':
        message = f'cannot {what} {path}: the guest filesystem is read-only ({text})'
    elif reason == 'no_space':
        message = f'cannot {what} {path}: the guest filesystem is full ({text})'
    elif reason == 'not_directory':
        message = f'cannot {what} {path}: a component of the path is not a directory in the guest ({text})'
    elif reason == 'directory':
        message = f'{path} is a directory in the guest, not a file ({text})'
    else:
        message = f'cannot {what} {path} in the guest: {text}'
    return GuestFileError(path, message, reason=reason)


def explain(exc, path, action):
    """An agent error from guest-file-*, said in terms of the file (or of the blocked RPC)."""
    if isinstance(exc, GuestFrozenError):
        return exc
    if isinstance(exc, CommandDisabledError):
        return CommandDisabledError(
            exc.command, exc.error_class, exc.desc,
            message='{0} is blocked by the guest agent configuration ({1}): file transfer needs '
                    '{2}; {3}'.format(exc.command, exc.desc, ', '.join(FILE_COMMANDS), BLOCKED_HINT))
    if isinstance(exc, CommandNotFoundError):
        return exc
    text = exc.desc or str(exc)
    reason = reason_of(text)
    if reason == 'missing' and action == 'write':
        directory = posixpath.dirname(path) if path.startswith('/') else path
        return GuestFileError(path, f'the guest directory {directory} does not exist, so {path} cannot be created '
                                    f'({exc.command}: {text})', reason='missing_directory')
    if reason == 'missing':
        return GuestFileError(path, f'{path} does not exist in the guest ({exc.command}: {text})',
                              reason='missing')
    return explain_text(path, action, text, command=exc.command)


class OpenGuestFile:
    """One open guest file: `with OpenGuestFile(qga, path, 'rb') as f: f.read(n)`; closed on every path.

    On success the close is checked; on failure it is quiet (reconnecting once when the
    session was lost), so the first error is the one reported.
    """

    def __init__(self, qga, path, mode):
        self.qga = qga
        self.path = path
        self.mode = mode
        self.handle = None

    def _call(self, command, arguments, action):
        try:
            return self.qga.execute(command, arguments)
        except CommandError as exc:
            raise explain(exc, self.path, action) from exc

    def __enter__(self):
        action = 'write' if ('w' in self.mode or 'a' in self.mode) else 'read'
        self.handle = self._call('guest-file-open', {'path': self.path, 'mode': self.mode}, action)
        return self

    def __exit__(self, exc_type, exc, tb):
        handle, self.handle = self.handle, None
        if handle is None:
            return
        if exc_type is None:
            self._call('guest-file-close', {'handle': handle}, 'close')
            return
        for attempt in (1, 2):
            try:
                self.qga.execute('guest-file-close', {'handle': handle})
                return
            except ConnectionLostError:
                if attempt == 2:
                    return
                try:
                    self.qga.close()
                    self.qga.open()
                except QemuVMError:
                    return
            except QemuVMError:
                return

    def read(self, count):
        """(bytes, eof) for up to `count` bytes."""
        reply = self._call('guest-file-read', {'handle': self.handle, 'count': count}, 'read')
        got = reply.get('count', 0)
        data = binascii.a2b_base64(reply.get('buf-b64', '')) if got else b''
        if len(data) != got:
            raise GuestFileError(self.path, f'guest-file-read on {self.path} announced {got} bytes and sent {len(data)}')
        return data, bool(reply.get('eof')) or got == 0

    def write(self, view):
        """Write all of `view` (bytes or a memoryview)."""
        text = binascii.b2a_base64(view, newline=False).decode('ascii')
        reply = self._call('guest-file-write', {'handle': self.handle, 'buf-b64': text}, 'write')
        if reply.get('count') != len(view):
            raise GuestFileError(self.path, 'short write to {0} in the guest: {1} of {2} bytes written (is the guest '
                                            'filesystem full?)'.format(self.path, reply.get('count'), len(view)),
                                 reason='no_space')


def _fill(reader, view):
    """Read into `view` until it is full or the reader ends; the byte count."""
    total = 0
    while total < len(view):
        count = reader.readinto(view[total:])
        if not count:
            break
        total += count
    return total


def upload(qga, reader, path, chunk_size=DEFAULT_CHUNK, size_hint=None):
    """Stream `reader` (anything with readinto) into the guest file `path` (created or truncated).

    Returns (sha256 hex, size). One buffer of at most `chunk_size` bytes is reused.
    """
    chunk = max(1, min(chunk_size, MAX_WRITE_CHUNK))
    if size_hint is not None:
        chunk = max(1, min(chunk, size_hint))
    buf = bytearray(chunk)
    view = memoryview(buf)
    hasher = hashlib.sha256()
    size = 0
    with OpenGuestFile(qga, path, 'wb') as guest_file:
        while True:
            count = _fill(reader, view)
            if not count:
                break
            part = view[:count]
            hasher.update(part)
            guest_file.write(part)
            part.release()
            size += count
            if count < len(view):
                break
    return hasher.hexdigest(), size


def download(qga, path, sink, chunk_size=DEFAULT_CHUNK, limit=None):
    """Stream the guest file `path` through sink(bytes); (sha256 hex, size).

    With `limit`, stops after more than `limit` bytes and returns (None, bytes read so far).
    """
    count = max(1, min(chunk_size, MAX_FILE_CHUNK))
    if limit is not None:
        count = min(count, limit + 1)
    hasher = hashlib.sha256()
    size = 0
    with OpenGuestFile(qga, path, 'rb') as guest_file:
        while True:
            data, eof = guest_file.read(count)
            if data:
                hasher.update(data)
                if sink is not None:
                    sink(data)
                size += len(data)
            del data
            if limit is not None and size > limit:
                return None, size
            if eof:
                break
    return hasher.hexdigest(), size


def put_file(qga, local_path, path, chunk_size=DEFAULT_CHUNK):
    """Copy the local file `local_path` to the guest file `path`; (sha256 hex, size)."""
    try:
        reader = open(local_path, 'rb')
    except OSError as exc:
        raise LocalFileError(path, f'cannot read {local_path}: {exc.strerror or exc}',
                             reason=reason_of(str(exc)) or 'local') from exc
    with reader:
        return upload(qga, reader, path, chunk_size, size_hint=os.fstat(reader.fileno()).st_size or 1)


def fetch_file(qga, path, local_path, chunk_size=DEFAULT_CHUNK):
    """Copy the guest file `path` to `local_path`, through a temporary file renamed at the end."""
    local_path = os.fsdecode(local_path)
    directory = os.path.dirname(os.path.abspath(local_path))
    try:
        fd, tmp = tempfile.mkstemp(prefix='.qemu-vm-', suffix='.part', dir=directory)
    except OSError as exc:
        raise LocalFileError(path, f'cannot write into {directory}: {exc.strerror or exc}',
                             reason='local') from exc
    try:
        with os.fdopen(fd, 'wb') as writer:
            result = download(qga, path, writer.write, chunk_size)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as a plain new file would be, not mkstemp's 0600
        os.replace(tmp, local_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return result


# -- the local side -----------------------------------------------------------------------


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
                raise LocalFileError(None, f'src {self.label}: {exc.strerror or exc}', reason='src')
            if stat.S_ISDIR(info.st_mode):
                raise LocalFileError(None, f'src {self.label} is a directory: qemu_guest_file copies one file',
                                     reason='src')
            if not stat.S_ISREG(info.st_mode):
                raise LocalFileError(None, f'src {self.label} is not a regular file', reason='src')
            if not os.access(path, os.R_OK):
                raise LocalFileError(None, f'src {self.label}: permission denied', reason='src')
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
