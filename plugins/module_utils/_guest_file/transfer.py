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

Reads are bounded: by the size the file reports when it is opened (a file that grows is
cut there, a device or pseudo file that reports none is read up to a limit and refused
past it), and by one deadline for the whole read. A local copy is made private (0600)
from its first byte, only once the size to come fits in the free space there, and gets
its final mode before it is renamed into place.

Used by the qemu.vm.qga connection plugin (put_file/fetch_file) and by qemu_guest_file.
No Ansible imports.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import posixpath

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    ConnectionLostError,
    GuestFrozenError,
    QemuVMError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import (
    GuestDirectoryMissingError,
    GuestFileError,
    GuestFileMissingError,
    GuestFileTimeoutError,
    GuestFileTooLargeError,
    GuestIsADirectoryError,
    GuestNoSpaceError,
    GuestNotADirectoryError,
    GuestPermissionError,
    GuestReadOnlyError,
    LocalFileError,
    class_of,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.local import LocalCopy
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import MAX_FILE_CHUNK, SLOWEST_BYTES_PER_SECOND
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline

MIB = 1024 * 1024
#: The default chunk: the agent's cost is per base64 character (its JSON lexer), so writes move at
#: the same pace within a few percent from 256 KiB to 48 MiB chunks, 4 KiB ones pay a round trip per
#: call, and 1 MiB was the fastest of the sweep both ways (bench/results.md, figure 2), at low memory.
DEFAULT_CHUNK = MIB
#: A 48 MiB write is 64 MiB of base64, over the agent's JSON token limit: stay below it.
MAX_WRITE_CHUNK = MAX_FILE_CHUNK - 4096
#: A file that reports no size (a device, a pseudo file under /proc or /sys) is read up to this many
#: bytes unless the caller gives its own bound: /dev/zero or a growing pipe cannot fill a disk.
UNSIZED_LIMIT = MIB
FILE_COMMANDS = ('guest-file-open', 'guest-file-read', 'guest-file-write', 'guest-file-close')
READ_COMMANDS = ('guest-file-open', 'guest-file-seek', 'guest-file-read', 'guest-file-close')
BLOCKED_HINT = ('turn them on in the agent configuration: qemu-ga --block-rpcs, or --allow-rpcs on qemu-ga 8.0 '
                'and later (block-rpcs= / allow-rpcs= in /etc/qemu/qemu-ga.conf; RHEL-family guests block '
                'guest-file-* by default through BLACKLIST_RPC or QEMU_GA_ARGS in /etc/sysconfig/qemu-ga)')


def explain_text(path, what, text, command=None):
    """An error text from the guest (an agent reply, a tool's stderr), said in terms of the file."""
    cls = class_of(text)
    where = 'guest-exec' if command is None else command
    if cls is GuestPermissionError:
        message = f'permission denied in the guest: cannot {what} {path} ({where}: {text}); the guest agent runs as its own user ' \
                  'there (usually root) and the file, its directory or a security policy forbids it'
    elif cls is GuestReadOnlyError:
        message = f'cannot {what} {path}: the guest filesystem is read-only ({text})'
    elif cls is GuestNoSpaceError:
        message = f'cannot {what} {path}: the guest filesystem is full ({text})'
    elif cls is GuestNotADirectoryError:
        message = f'cannot {what} {path}: a component of the path is not a directory in the guest ({text})'
    elif cls is GuestIsADirectoryError:
        message = f'{path} is a directory in the guest, not a file ({text})'
    else:
        message = f'cannot {what} {path} in the guest: {text}'
    return cls(path, message)


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
    if class_of(text) is GuestFileMissingError:
        if action == 'write':
            directory = posixpath.dirname(path) if path.startswith('/') else path
            return GuestDirectoryMissingError(path, f'the guest directory {directory} does not exist, so {path} cannot be '
                                                    f'created ({exc.command}: {text})')
        return GuestFileMissingError(path, f'{path} does not exist in the guest ({exc.command}: {text})')
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
        action = 'write' if ('w' in self.mode or 'a' in self.mode or '+' in self.mode) else 'read'
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

    def measure(self):
        """The size the open file reports: its end, by seeking there and back (the agent has no fstat).

        0 for what has no size (a character device such as /dev/zero, pseudo files: some have no end
        to seek to); a pipe refuses the seek (GuestNotAFileError).
        """
        try:
            end = self._call('guest-file-seek', {'handle': self.handle, 'offset': 0, 'whence': 'end'}, 'read')
        except GuestFileError as exc:
            if 'Invalid argument' not in str(exc):
                raise
            return 0
        self._call('guest-file-seek', {'handle': self.handle, 'offset': 0, 'whence': 'set'}, 'read')
        return max(0, int(end.get('position', 0)))

    def read(self, count):
        """(bytes, eof) for up to `count` bytes."""
        reply = self._call('guest-file-read', {'handle': self.handle, 'count': count}, 'read')
        got = reply.get('count', 0)
        data = binascii.a2b_base64(reply.get('buf-b64', '')) if got else b''
        if len(data) != got or got > count:
            raise GuestFileError(self.path, f'guest-file-read on {self.path} asked for {count} bytes, announced {got} and '
                                            f'sent {len(data)}')
        return data, bool(reply.get('eof')) or got == 0

    def write(self, view):
        """Write all of `view` (bytes or a memoryview)."""
        text = binascii.b2a_base64(view, newline=False).decode('ascii')
        reply = self._call('guest-file-write', {'handle': self.handle, 'buf-b64': text}, 'write')
        if reply.get('count') != len(view):
            raise GuestNoSpaceError(self.path, 'short write to {0} in the guest: {1} of {2} bytes written (is the guest '
                                               'filesystem full?)'.format(self.path, reply.get('count'), len(view)))


def _fill(reader, view):
    """Read into `view` until it is full or the reader ends; the byte count."""
    total = 0
    while total < len(view):
        count = reader.readinto(view[total:])
        if not count:
            break
        total += count
    return total


def upload(qga, reader, path, chunk_size=DEFAULT_CHUNK, size_hint=None, mode='wb'):
    """Stream `reader` (anything with readinto) into the guest file `path` (opened with `mode`: created or
    truncated by default; 'r+b' writes an existing file and never creates one).

    Returns (sha256 hex, size). One buffer of at most `chunk_size` bytes is reused.
    """
    chunk = max(1, min(chunk_size, MAX_WRITE_CHUNK))
    if size_hint is not None:
        chunk = max(1, min(chunk, size_hint))
    buf = bytearray(chunk)
    view = memoryview(buf)
    hasher = hashlib.sha256()
    size = 0
    with OpenGuestFile(qga, path, mode) as guest_file:
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


def transfer_bound(qga, size):
    """Seconds a transfer of `size` bytes may take as a whole: the session's timeout, one more per MiB."""
    return getattr(qga, 'timeout', 30.0) + size / SLOWEST_BYTES_PER_SECOND


def download(qga, path, sink, chunk_size=DEFAULT_CHUNK, limit=None, max_size=None, start=None, warn=None):
    """Stream the guest file `path` through sink(bytes), hashing it: (sha256 hex, size).

    The read stops at the size the file reports when it is opened. A file that grows meanwhile is cut
    there (warn(text) says so); one that reports no size (0: a device, a pseudo file) is read up to
    max_size (UNSIZED_LIMIT when not given) and refused past it; one over max_size is refused before
    anything is read. The whole read has one deadline (transfer_bound). start(bound), when given, runs
    with the most bytes that can come, after the first read and before sink() sees anything (to check
    the free space and make the destination). With `limit`, a file over `limit` bytes is not read:
    (None, its size).
    """
    count = max(1, min(chunk_size, MAX_FILE_CHUNK))
    hasher = hashlib.sha256()
    size = 0
    with OpenGuestFile(qga, path, 'rb') as guest_file:
        reported = guest_file.measure()
        if limit is not None and reported > limit:
            return None, reported
        if max_size is not None and reported > max_size:
            raise GuestFileTooLargeError(path, f'{path} holds {reported} bytes in the guest, more than max_size ({max_size} '
                                               'bytes): nothing was read', max_size)
        sized = reported > 0
        if sized:
            bound = reported
        else:
            bound = limit if limit is not None else (max_size if max_size is not None else UNSIZED_LIMIT)
        deadline = Deadline(transfer_bound(qga, bound))
        eof = False
        while size < bound and not eof:
            if deadline.expired:
                raise GuestFileTimeoutError(path, f'reading {path} from the guest took longer than {deadline.seconds:g} s '
                                                  f'({size} of {bound} bytes read, the timeout plus a second per MiB): stopped')
            data, eof = guest_file.read(min(count, bound - size))
            if start is not None:
                # After the first read: a directory (which may report any size) fails there, not for want of space.
                start(bound)
                start = None
            if data:
                hasher.update(data)
                if sink is not None:
                    sink(data)
                size += len(data)
            del data
        if start is not None:
            start(bound)
        if not eof and guest_file.read(1)[0]:
            if sized:
                if warn is not None:
                    warn(f'{path} grew while it was read: only its first {reported} bytes were read, its size when the '
                         'read began')
            elif limit is not None:
                return None, size
            else:
                raise GuestFileTooLargeError(
                    path, f'{path} reports no size in the guest (a device, a pipe or a pseudo file) and holds more than '
                          f'{bound} bytes: it was not read whole (qemu_guest_file reads more with max_size)', bound)
    return hasher.hexdigest(), size


def put_file(qga, local_path, path, chunk_size=DEFAULT_CHUNK):
    """Copy the local file `local_path` to the guest file `path`; (sha256 hex, size)."""
    try:
        reader = open(local_path, 'rb')
    except OSError as exc:
        raise LocalFileError(path, f'cannot read {os.fsdecode(local_path)}: {exc.strerror or exc}') from exc
    with reader:
        return upload(qga, reader, path, chunk_size, size_hint=os.fstat(reader.fileno()).st_size or 1)


def fetch_file(qga, path, local_path, chunk_size=DEFAULT_CHUNK, mode=0o600, warn=None):
    """Copy the guest file `path` to `local_path` (see LocalCopy), which gets `mode`; (sha256 hex, size)."""
    with LocalCopy(os.fsdecode(local_path), path) as copy:
        result = download(qga, path, copy.write, chunk_size, start=copy.create, warn=warn)
        copy.commit(mode)
    return result
