# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Files in the guest through the guest agent: streamed, hashed, replaced atomically.

Data moves with guest-file-open/-read/-write/-close in large chunks; the SHA-256
of every byte is computed while it streams, so memory is bounded by the chunk
size, never by the file size. What the agent's file commands cannot do (stat,
rename, delete, chmod, chown, a fast checksum) goes through guest-exec running
POSIX tools in the guest, when the agent offers it.

No Ansible imports: the module qemu_guest_file is a thin wrapper around this.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import posixpath
import random
import re
import stat
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    ConnectionLostError,
    GuestFrozenError,
    QemuTimeoutError,
    QemuVMError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest import command_unavailable
from ansible_collections.qemu.vm.plugins.module_utils._qga import MAX_FILE_CHUNK, SLOWEST_BYTES_PER_SECOND
from ansible_collections.qemu.vm.plugins.module_utils._transport import Deadline

MIB = 1024 * 1024
DEFAULT_CHUNK = 8 * MIB
MIN_CHUNK = 1024
MAX_CHUNK = MAX_FILE_CHUNK
#: The agent refuses a request whose JSON tokens add up to more than 64 MiB; a 48 MiB
#: chunk is 64 MiB of base64 on its own. Writes stay 4 KiB below 48 MiB (measured limit:
#: 48 MiB - 1 KiB passes, 48 MiB - 512 B does not).
MAX_WRITE_CHUNK = MAX_FILE_CHUNK - 4096
#: Like ansible.builtin.copy's default MAX_FILE_SIZE_FOR_DIFF.
DIFF_MAX_BYTES = 104448
FILE_COMMANDS = ('guest-file-open', 'guest-file-read', 'guest-file-write', 'guest-file-close')
EXEC_COMMANDS = ('guest-exec', 'guest-exec-status')
_STAT_FORMAT = '%s %a %u %g %U %G %F'
_rng = random.SystemRandom()


class GuestFileError(QemuVMError):
    """A guest file operation cannot be done; the message says why and what to do."""

    def __init__(self, path, message, reason=None):
        self.path = path
        self.reason = reason
        super(GuestFileError, self).__init__(message)

    def details(self):
        # Not 'path': AnsibleModule would add the stat of a same-named file on the managed host.
        details = {'guest_path': self.path}
        if self.reason:
            details['reason'] = self.reason
        return details


class GuestToolMissingError(GuestFileError):
    """guest-exec could not start a program: it is not installed in the guest (or no POSIX guest)."""

    def __init__(self, program, desc):
        self.program = program
        super(GuestToolMissingError, self).__init__(
            None, 'the guest has no usable {0} program for guest-exec ({1})'.format(program, desc), reason='tool_missing')


class GuestStat(object):
    """What `stat` says about a guest path."""

    KINDS = {'regular file': 'file', 'regular empty file': 'file', 'directory': 'directory',
             'symbolic link': 'link'}

    def __init__(self, size, mode, uid, gid, user, group, kind):
        self.size = size
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.user = user
        self.group = group
        self.kind = kind

    @classmethod
    def parse(cls, line):
        fields = line.strip('\n').split(' ', 6)
        if len(fields) != 7:
            raise ValueError('unexpected stat output {0!r}'.format(line))
        size, mode, uid, gid, user, group, kind = fields
        return cls(int(size), int(mode, 8), int(uid), int(gid), user, group, cls.KINDS.get(kind, kind))

    def attributes(self):
        return {'mode': '{0:04o}'.format(self.mode), 'owner': self.user, 'group': self.group}


# -- input checks ---------------------------------------------------------------------


def check_guest_path(path, name='path'):
    """Absolute POSIX (/x) or Windows (C:\\x) path, no NUL byte."""
    if not path or '\0' in path:
        raise ValueError('{0} must be a non-empty path without NUL bytes'.format(name))
    if not (path.startswith('/') or re.match(r'^[A-Za-z]:[\\/]', path) or path.startswith('\\\\')):
        raise ValueError('{0} must be an absolute path in the guest, got {1!r}'.format(name, path))
    if path.endswith('/') and path != '/':
        raise ValueError('{0} must name a file, not a directory: {1!r} ends with /'.format(name, path))


def check_chunk_size(value):
    if value is None:
        return DEFAULT_CHUNK
    if not MIN_CHUNK <= value <= MAX_CHUNK:
        raise ValueError('chunk_size must be between {0} bytes and {1} bytes (48 MiB, the largest '
                         'guest-file-read the agent accepts), got {2}'.format(MIN_CHUNK, MAX_CHUNK, value))
    return value


def parse_mode(value):
    """An octal mode: '0644', '644', '1777', or an int as Ansible's file modules take it (0644 in YAML)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError('mode must be an octal number such as 0644, got {0!r}'.format(value))
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not re.match(r'^0?[0-7]{1,4}$', text):
            raise ValueError('mode must be an octal number such as 0644 or 0755 (symbolic modes like u+rw '
                             'are not supported for guest files), got {0!r}'.format(value))
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise ValueError('mode {0!r} is out of range (0000-7777 octal)'.format(value))
    return mode


def check_id(value, name):
    if value is None:
        return None
    text = str(value)
    if not text or ':' in text or text.strip() != text:
        raise ValueError('{0} must be a user/group name or a numeric id, got {1!r}'.format(name, value))
    return text


def _matches(wanted, number, name):
    if wanted.isdigit():
        return int(wanted) == number
    return wanted == name


# -- sources ----------------------------------------------------------------------------


class Source(object):
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
                raise GuestFileError(None, 'src {0}: {1}'.format(self.label, exc.strerror or exc), reason='src')
            if stat.S_ISDIR(info.st_mode):
                raise GuestFileError(None, 'src {0} is a directory: qemu_guest_file copies one file'.format(self.label),
                                     reason='src')
            if not stat.S_ISREG(info.st_mode):
                raise GuestFileError(None, 'src {0} is not a regular file'.format(self.label), reason='src')
            if not os.access(path, os.R_OK):
                raise GuestFileError(None, 'src {0}: permission denied'.format(self.label), reason='src')
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


class _BytesReader(object):
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


def _fill(handle, view):
    """Read into `view` until it is full or the file ends; the byte count."""
    total = 0
    while total < len(view):
        count = handle.readinto(view[total:])
        if not count:
            break
        total += count
    return total


def sha256_file(path, chunk_size=MIB):
    """SHA-256 of a local file, or None when it does not exist."""
    hasher = hashlib.sha256()
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    try:
        handle = open(path, 'rb')
    except FileNotFoundError:
        return None
    with handle:
        while True:
            count = handle.readinto(view)
            if not count:
                break
            hasher.update(view[:count])
    return hasher.hexdigest()


# -- the guest ---------------------------------------------------------------------------


class GuestFiles(object):
    """File operations in one guest, over an open QGASession."""

    def __init__(self, qga, chunk_size=DEFAULT_CHUNK):
        self.qga = qga
        self.chunk_size = chunk_size
        self.read_bytes = 0
        self.written_bytes = 0
        self.warnings = []
        self._exec_error = False  # not determined yet
        self._checked = set()

    # -- what the agent offers ---------------------------------------------------------

    def require(self, *names):
        """Raise a clear error when a command we need is blocked, missing or frozen."""
        for name in names:
            if name in self._checked:
                continue
            error = command_unavailable(self.qga, name)
            if error is None:
                self._checked.add(name)
                continue
            if isinstance(error, GuestFrozenError):
                raise error
            if name in FILE_COMMANDS or name == 'guest-file-seek':
                blocked = [c for c in FILE_COMMANDS if self.qga.command_state(c) != 'enabled']
                if isinstance(error, CommandDisabledError):
                    raise CommandDisabledError(
                        name, error.error_class, error.desc,
                        message='the guest agent has its file commands blocked ({0} disabled): they are turned off '
                                'in the agent configuration (qemu-ga --block-rpcs/--allow-rpcs; RHEL-family guests '
                                'block guest-file-* by default, see BLOCK_RPCS/BLACKLIST_RPC in '
                                '/etc/sysconfig/qemu-ga or allow-rpcs in /etc/qemu/qemu-ga.conf)'.format(
                                    ', '.join(blocked or [name])))
            raise error

    def exec_unavailable(self):
        """None when guest-exec can be used, else the error saying why not (not raised).

        A frozen guest is raised at once: nothing at all can be done until it is thawed.
        """
        if self._exec_error is False:
            self._exec_error = None
            for name in EXEC_COMMANDS:
                error = command_unavailable(self.qga, name)
                if isinstance(error, GuestFrozenError):
                    raise error
                if error is not None:
                    self._exec_error = error
                    break
        return self._exec_error

    def mark_exec_unusable(self, error):
        self._exec_error = error

    # -- guest-exec ----------------------------------------------------------------------

    def run(self, argv, timeout=None, stdin=None):
        """Run argv in the guest; (exit code, stdout bytes, stderr bytes). -N for a signal N."""
        self.require(*EXEC_COMMANDS)
        bound = self.qga.timeout if timeout is None else timeout
        arguments = {'path': argv[0], 'arg': list(argv[1:]), 'capture-output': True}
        if stdin is not None:
            arguments['input-data'] = base64.b64encode(stdin).decode('ascii')
        try:
            pid = self.qga.execute('guest-exec', arguments)['pid']
        except (CommandNotFoundError, CommandDisabledError, GuestFrozenError):
            raise
        except CommandError as exc:
            if 'Failed to execute child process' in exc.desc or 'No such file' in exc.desc:
                raise GuestToolMissingError(argv[0], exc.desc)
            raise
        deadline = Deadline(bound)
        delay = 0.005
        while True:
            status = self.qga.execute('guest-exec-status', {'pid': pid})
            if status.get('exited'):
                break
            if deadline.expired:
                raise QemuTimeoutError(
                    'guest command {0!r}'.format(' '.join(argv)), bound,
                    'it may still be running in the guest as pid {0}'.format(pid))
            time.sleep(min(delay, max(deadline.remaining(), 0.001)))
            delay = min(delay * 2, 0.1)
        code = status['exitcode'] if 'exitcode' in status else -int(status.get('signal', 0))
        out = base64.b64decode(status.get('out-data', ''))
        err = base64.b64decode(status.get('err-data', ''))
        return code, out, err

    def _tool(self, argv, path, what, timeout=None):
        code, out, err = self.run(argv, timeout=timeout)
        if code != 0:
            raise _explain_text(path, what, err.decode('utf-8', 'replace').strip() or 'exit code {0}'.format(code))
        return out

    def stat(self, path, follow=False):
        """GuestStat of `path` (of the link itself unless follow), or None when it does not exist."""
        argv = ['stat'] + (['-L'] if follow else []) + ['-c', _STAT_FORMAT, '--', path]
        code, out, err = self.run(argv)
        if code == 0:
            try:
                return GuestStat.parse(out.decode('utf-8', 'replace'))
            except ValueError as exc:
                raise GuestFileError(path, 'cannot read the guest stat output for {0}: {1}'.format(path, exc))
        text = err.decode('utf-8', 'replace').strip()
        if 'No such file or directory' in text:
            return None
        raise _explain_text(path, 'look up', text or 'stat exit code {0}'.format(code))

    def realpath(self, path):
        out = self._tool(['readlink', '-f', '--', path], path, 'resolve the symbolic link')
        resolved = out.decode('utf-8', 'surrogateescape').rstrip('\n')
        if not resolved.startswith('/'):
            raise GuestFileError(path, 'cannot resolve the symbolic link {0} (readlink -f said {1!r})'.format(
                path, resolved))
        return resolved

    def sha256sum(self, path, size):
        """The guest's own sha256sum of `path`, or None when the guest has no sha256sum."""
        try:
            out = self._tool(['sha256sum', '--', path], path, 'checksum', timeout=self._transfer_bound(size))
        except GuestToolMissingError:
            return None
        match = re.match(r'^\\?([0-9a-f]{64})\s', out.decode('ascii', 'replace'))
        if not match:
            raise GuestFileError(path, 'unexpected sha256sum output in the guest: {0!r}'.format(out[:200]))
        return match.group(1)

    def rename(self, source, target):
        self._tool(['mv', '-f', '--', source, target], target, 'rename {0} onto'.format(source))

    def remove(self, path):
        self._tool(['rm', '-f', '--', path], path, 'delete')

    def chown(self, path, owner=None, group=None):
        spec = (owner or '') + (':' + group if group else '')
        self._tool(['chown', spec, '--', path], path, 'change the owner/group ({0}) of'.format(spec))

    def chmod(self, path, mode):
        self._tool(['chmod', '{0:04o}'.format(mode), '--', path], path, 'change the mode of')

    def create_private(self, path):
        """Create `path` empty, 0600 from the first moment (umask 077, noclobber: never an existing file),
        and delete the temporary files an interrupted earlier run of ours left beside it.

        A killed run cannot clean up; the next one on the same path does. Our tasks on one agent
        socket never overlap (the host lock), so such files are no other run's work in progress.
        Returns the leftovers deleted.
        """
        directory = posixpath.dirname(path)
        base = posixpath.basename(target_of_temp(path))
        script = ('umask 077; for f in "$1/.$2".qemu-vm-????????.tmp; do [ "$f" = "$3" ] && continue; '
                  'if [ -e "$f" ] || [ -L "$f" ]; then rm -f -- "$f" && printf "%s\\n" "$f"; fi; done; '
                  'set -C; : > "$3"')
        code, out, err = self.run(['sh', '-c', script, 'sh', directory or '/', base[:200], path])
        if code != 0:
            raise _explain_text(path, 'create the temporary file', err.decode('utf-8', 'replace').strip()
                                or 'exit code {0}'.format(code))
        return [line for line in out.decode('utf-8', 'surrogateescape').splitlines() if line]

    def new_file_mode(self):
        """0666 & ~umask of the agent, or None when the guest has no sh to ask.

        qemu-ga 7.2 creates files 0666 whatever its umask; a file we create through
        a temporary name gets the mode the agent's umask implies instead.
        """
        try:
            code, out, _err = self.run(['sh', '-c', 'umask'])
        except GuestToolMissingError:
            return None
        match = re.match(r'^\s*([0-7]{1,4})\s*$', out.decode('ascii', 'replace'))
        if code != 0 or not match:
            return None
        return 0o666 & ~int(match.group(1), 8)

    def remove_quietly(self, path):
        try:
            self.remove(path)
        except QemuVMError:
            pass

    def _transfer_bound(self, size):
        return self.qga.timeout + size / SLOWEST_BYTES_PER_SECOND

    # -- guest-file-* --------------------------------------------------------------------

    def open(self, path, mode):
        self.require('guest-file-open', 'guest-file-close')
        try:
            return self.qga.execute('guest-file-open', {'path': path, 'mode': mode})
        except (CommandNotFoundError, CommandDisabledError, GuestFrozenError):
            raise
        except CommandError as exc:
            raise _explain(exc, path, 'write' if 'w' in mode else 'read')

    def close(self, handle, path):
        try:
            self.qga.execute('guest-file-close', {'handle': handle})
        except (CommandNotFoundError, CommandDisabledError, GuestFrozenError):
            raise
        except CommandError as exc:
            raise _explain(exc, path, 'close')

    @contextlib.contextmanager
    def closing(self, handle, path):
        """Close `handle` on every path: normally (errors reported) when the block succeeds,
        quietly when it fails, so the first error is the one the user sees."""
        try:
            yield handle
        except BaseException:
            self.close_quietly(handle)
            raise
        self.close(handle, path)

    def opened(self, path, mode):
        return self.closing(self.open(path, mode), path)

    def close_quietly(self, handle):
        """Close a handle on a failure path; reconnect once if the session was lost."""
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

    def probe(self, path):
        """Without guest-exec: GuestStat(size, kind='file') of an existing file, or None when missing."""
        self.require('guest-file-seek')
        try:
            handle = self.open(path, 'rb')
        except GuestFileError as exc:
            if exc.reason == 'missing':
                return None
            raise
        with self.closing(handle, path):
            try:
                self.qga.execute('guest-file-read', {'handle': handle, 'count': 1})
                size = self.qga.execute('guest-file-seek', {'handle': handle, 'offset': 0, 'whence': 'end'})['position']
            except (CommandNotFoundError, CommandDisabledError, GuestFrozenError):
                raise
            except CommandError as exc:
                raise _explain(exc, path, 'read')
        return GuestStat(size, None, None, None, None, None, 'file')

    def read_stream(self, path, sink=None, limit=None):
        """Stream the guest file through `sink(bytes)` while hashing it: (sha256 hex, size).

        With `limit`, stops after more than `limit` bytes and returns (None, bytes read so far).
        """
        self.require('guest-file-open', 'guest-file-read', 'guest-file-close')
        hasher = hashlib.sha256()
        size = 0
        count = self.chunk_size if limit is None else min(self.chunk_size, limit + 1)
        with self.opened(path, 'rb') as handle:
            while True:
                try:
                    reply = self.qga.execute('guest-file-read', {'handle': handle, 'count': count})
                except (CommandNotFoundError, CommandDisabledError, GuestFrozenError):
                    raise
                except CommandError as exc:
                    raise _explain(exc, path, 'read')
                got = reply.get('count', 0)
                eof = reply.get('eof', False) or got == 0
                if got:
                    data = binascii.a2b_base64(reply['buf-b64'])
                    del reply
                    if len(data) != got:
                        raise GuestFileError(path, 'guest-file-read on {0} announced {1} bytes and sent {2}'.format(
                            path, got, len(data)))
                    hasher.update(data)
                    if sink is not None:
                        sink(data)
                    size += got
                    self.read_bytes += got
                    del data
                if limit is not None and size > limit:
                    return None, size
                if eof:
                    break
        return hasher.hexdigest(), size

    def read_small(self, path, limit):
        """The whole file when it holds at most `limit` bytes, else None."""
        parts = []
        digest, _size = self.read_stream(path, parts.append, limit=limit)
        if digest is None:
            return None
        return b''.join(parts)

    def write_stream(self, path, source):
        """Write `source` to the guest file `path` (created or truncated): (sha256 hex, size).

        The source is read into one preallocated buffer, hashed and base64-encoded
        once per chunk; nothing else is kept between chunks.
        """
        self.require(*FILE_COMMANDS)
        chunk = min(self.chunk_size, MAX_WRITE_CHUNK)
        buf = bytearray(min(chunk, max(source.size, 1)))
        view = memoryview(buf)
        hasher = hashlib.sha256()
        size = 0
        with source.open() as reader, self.opened(path, 'wb') as handle:
            while True:
                count = _fill(reader, view)
                if not count:
                    break
                part = view[:count]
                hasher.update(part)
                text = binascii.b2a_base64(part, newline=False).decode('ascii')
                part.release()
                try:
                    reply = self.qga.execute('guest-file-write', {'handle': handle, 'buf-b64': text})
                except (CommandNotFoundError, CommandDisabledError, GuestFrozenError):
                    raise
                except CommandError as exc:
                    raise _explain(exc, path, 'write')
                del text
                if reply.get('count') != count:
                    raise GuestFileError(path, 'short write to {0} in the guest: {1} of {2} bytes written '
                                               '(is the guest filesystem full?)'.format(path, reply.get('count'), count))
                size += count
                self.written_bytes += count
                if count < len(view):
                    break
        return hasher.hexdigest(), size

    def checksum(self, path, size, use_exec):
        """(sha256 hex, how): the guest's sha256sum when it can run it, else a streamed read."""
        if use_exec:
            digest = self.sha256sum(path, size)
            if digest is not None:
                return digest, 'sha256sum'
        digest, _size = self.read_stream(path)
        return digest, 'stream'


# -- error wording -------------------------------------------------------------------------

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


def _reason(text):
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    return None


def _explain_text(path, what, text, command=None):
    reason = _reason(text)
    where = 'guest-exec' if command is None else command
    if reason == 'permission':
        message = 'permission denied in the guest: cannot {0} {1} ({2}: {3}); the guest agent runs as its own user ' \
                  'there (usually root) and the file, its directory or a security policy forbids it'.format(
                      what, path, where, text)
    elif reason == 'read_only':
        message = 'cannot {0} {1}: the guest filesystem is read-only ({2})'.format(what, path, text)
    elif reason == 'no_space':
        message = 'cannot {0} {1}: the guest filesystem is full ({2})'.format(what, path, text)
    elif reason == 'not_directory':
        message = 'cannot {0} {1}: a component of the path is not a directory in the guest ({2})'.format(what, path, text)
    elif reason == 'directory':
        message = '{0} is a directory in the guest, not a file ({1})'.format(path, text)
    else:
        message = 'cannot {0} {1} in the guest: {2}'.format(what, path, text)
    return GuestFileError(path, message, reason=reason)


def _explain(exc, path, action):
    """A guest-file-* CommandError, said in terms of the file."""
    text = exc.desc or str(exc)
    reason = _reason(text)
    if reason == 'missing' and action == 'write':
        directory = posixpath.dirname(path) if path.startswith('/') else path
        return GuestFileError(path, 'the guest directory {0} does not exist, so {1} cannot be created ({2}: {3})'.format(
            directory, path, exc.command, text), reason='missing_directory')
    if reason == 'missing':
        return GuestFileError(path, '{0} does not exist in the guest ({1}: {2})'.format(path, exc.command, text),
                              reason='missing')
    return _explain_text(path, action, text, command=exc.command)


# -- the three states ------------------------------------------------------------------------


#: Temporary guest files are `.NAME.qemu-vm-XXXXXXXX.tmp` beside the file being written.
_TEMP_SUFFIX = re.compile(r'\.qemu-vm-[0-9a-f]{8}\.tmp$')


def temp_name(target):
    """A hidden temporary name beside `target`, for write-then-rename."""
    directory, name = posixpath.split(target)
    suffix = '.qemu-vm-{0:08x}.tmp'.format(_rng.getrandbits(32))
    return posixpath.join(directory, '.' + name[:200] + suffix)


def target_of_temp(temp):
    """The (possibly shortened) name a temporary file was made for: `.NAME.qemu-vm-X.tmp` -> NAME."""
    directory, name = posixpath.split(temp)
    return posixpath.join(directory, _TEMP_SUFFIX.sub('', name)[1:])


def _is_text(data):
    if b'\0' in data:
        return None
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        return None


class Desired(object):
    """What the task asks for."""

    def __init__(self, path, mode=None, owner=None, group=None):
        self.path = path
        self.mode = mode
        self.owner = owner
        self.group = group

    @property
    def wants_attributes(self):
        return self.mode is not None or self.owner is not None or self.group is not None

    def attribute_changes(self, current):
        """{name: (before, after)} for requested attributes that differ from `current` (None: new file)."""
        changes = {}
        if self.owner is not None and (current is None or not _matches(self.owner, current.uid, current.user)):
            changes['owner'] = (None if current is None else current.user, self.owner)
        if self.group is not None and (current is None or not _matches(self.group, current.gid, current.group)):
            changes['group'] = (None if current is None else current.group, self.group)
        if self.mode is not None and (current is None or current.mode != self.mode):
            changes['mode'] = (None if current is None else '{0:04o}'.format(current.mode), '{0:04o}'.format(self.mode))
        return changes


def _inspect_target(guest, path):
    """(target path, GuestStat or None, the GuestToolMissingError when stat cannot run) for a file to write.

    Follows a symbolic link to its file; fails for a missing parent directory, a directory or a non-file.
    """
    try:
        current = guest.stat(path)
    except GuestToolMissingError as exc:
        return path, None, exc
    target = path
    if current is None:
        parent = posixpath.dirname(path) or '/'
        parent_stat = guest.stat(parent, follow=True)
        if parent_stat is None:
            raise GuestFileError(path, 'the guest directory {0} does not exist, so {1} cannot be created'.format(
                parent, path), reason='missing_directory')
        if parent_stat.kind != 'directory':
            raise GuestFileError(path, 'cannot create {0}: {1} is not a directory in the guest'.format(path, parent),
                                 reason='not_directory')
        return target, None, None
    if current.kind == 'link':
        followed = guest.stat(path, follow=True)
        if followed is None:
            raise GuestFileError(path, '{0} is a dangling symbolic link in the guest; point it at a file or '
                                       'remove it first'.format(path), reason='dangling_link')
        target = guest.realpath(path)
        current = followed
    if current.kind == 'directory':
        raise GuestFileError(path, '{0} is a directory in the guest, not a file'.format(path), reason='directory')
    if current.kind != 'file':
        raise GuestFileError(path, '{0} is not a regular file in the guest (it is a {1})'.format(path, current.kind),
                             reason='not_file')
    return target, current, None


def ensure_present(guest, source, desired, check_mode=False, diff_mode=False):
    """Make the guest file hold the source's bytes (and the requested attributes)."""
    path = desired.path
    exec_error = guest.exec_unavailable()
    if desired.wants_attributes and exec_error is not None:
        raise GuestFileError(path, 'mode, owner and group are set through guest-exec (chmod/chown in the guest), '
                                   'which is not available: {0}'.format(exec_error), reason='exec_unavailable')
    current = None
    target = path
    use_exec = exec_error is None
    if use_exec:
        target, current, missing_tool = _inspect_target(guest, path)
        if missing_tool is not None:
            if desired.wants_attributes:
                raise GuestFileError(path, 'mode, owner and group need POSIX tools in the guest: {0}'.format(missing_tool),
                                     reason='exec_unavailable')
            use_exec = False
            guest.mark_exec_unusable(missing_tool)
            guest.warnings.append('guest-exec is offered but {0}; {1} is written in place, not through a temporary '
                                  'file and a rename'.format(missing_tool, path))
    if not use_exec:
        guest.require('guest-file-open', 'guest-file-read', 'guest-file-close')
        current = guest.probe(path)

    # decide
    compared_by = 'missing'
    src_sum = None
    if current is None:
        content_changed = True
    elif current.size != source.size:
        content_changed = True
        compared_by = 'size'
    else:
        guest_sum, compared_by = guest.checksum(target, current.size, use_exec)
        src_sum = source.sha256()
        content_changed = guest_sum != src_sum
    attribute_changes = desired.attribute_changes(current)
    changed = content_changed or bool(attribute_changes)

    result = {'changed': changed, 'guest_path': path, 'state': 'present', 'compared_by': compared_by}
    if target != path:
        result['guest_target'] = target
    if diff_mode and changed:
        result['diff'] = _present_diff(guest, source, target, current, content_changed, attribute_changes)

    if check_mode or not changed:
        result['checksum'] = src_sum or source.sha256()
        result['size'] = source.size
        return result

    if content_changed:
        if use_exec:
            written_sum, size = _replace_atomically(guest, source, target, current, desired)
        else:
            try:
                written_sum, size = guest.write_stream(target, source)
            except QemuVMError as exc:
                raise GuestFileError(path, '{0}; {1} was being written in place (the agent offers no usable '
                                           'guest-exec), so it may now be incomplete: run the task again'.format(
                                               exc, target), reason=getattr(exc, 'reason', None))
        result['atomic'] = use_exec
        if src_sum is not None and written_sum != src_sum:
            raise GuestFileError(path, 'the source {0} changed while it was copied (SHA-256 {1} before, {2} while '
                                       'writing); run the task again'.format(source.label, src_sum, written_sum))
        result['checksum'] = written_sum
        result['size'] = size
    else:
        _apply_attributes(guest, target, desired.owner, desired.group, desired.mode)
        result['checksum'] = src_sum
        result['size'] = source.size
    return result


def _replace_atomically(guest, source, target, current, desired):
    """Write a temporary file beside `target`, give it its attributes, rename it over `target`."""
    tmp = temp_name(target)
    mode, owner, group = desired.mode, desired.owner, desired.group
    if current is not None:
        # Keep what the replaced file had unless the task says otherwise.
        mode = current.mode if mode is None else mode
        owner = str(current.uid) if owner is None else owner
        group = str(current.gid) if group is None else group
    elif mode is None:
        mode = guest.new_file_mode()
    try:
        # Created 0600 before the first byte: the content is never readable by others in between.
        for leftover in guest.create_private(tmp):
            guest.warnings.append('deleted {0}, a temporary file an interrupted earlier run left in the '
                                  'guest'.format(leftover))
        written = guest.write_stream(tmp, source)
        _apply_attributes(guest, tmp, owner, group, mode)
        guest.rename(tmp, target)
    except GuestFileError as exc:
        guest.remove_quietly(tmp)
        raise GuestFileError(target, 'writing {0} through the temporary file {1} failed, {0} is unchanged: {2}'.format(
            target, posixpath.basename(tmp), exc), reason=exc.reason)
    except BaseException:
        guest.remove_quietly(tmp)
        raise
    return written


def _apply_attributes(guest, path, owner, group, mode):
    # Owner first: chown may clear set-id bits that chmod then sets.
    if owner is not None or group is not None:
        guest.chown(path, owner, group)
    if mode is not None:
        guest.chmod(path, mode)


def _present_diff(guest, source, target, current, content_changed, attribute_changes):
    diffs = []
    if content_changed:
        entry = {'before_header': target, 'after_header': source.label}
        if source.size > DIFF_MAX_BYTES:
            entry['src_larger'] = DIFF_MAX_BYTES
        elif current is not None and current.size > DIFF_MAX_BYTES:
            entry['dst_larger'] = DIFF_MAX_BYTES
        else:
            before = b'' if current is None else guest.read_small(target, DIFF_MAX_BYTES)
            after = source.head(DIFF_MAX_BYTES + 1)
            before_text = None if before is None else _is_text(before)
            after_text = _is_text(after)
            if before is None:
                entry['dst_larger'] = DIFF_MAX_BYTES
            elif before_text is None:
                entry['dst_binary'] = 1
            elif after_text is None:
                entry['src_binary'] = 1
            else:
                entry['before'] = before_text
                entry['after'] = after_text
        diffs.append(entry)
    if attribute_changes or current is None:
        before = {'path': target, 'state': 'absent' if current is None else 'file'}
        after = {'path': target, 'state': 'file'}
        for name, (old, new) in sorted(attribute_changes.items()):
            if current is not None:
                before[name] = old
            after[name] = new
        diffs.append({'before': before, 'after': after})
    return diffs


def ensure_absent(guest, path, check_mode=False, diff_mode=False):
    """Delete the guest file (guest-exec rm); nothing to do when it is not there."""
    result = {'changed': False, 'guest_path': path, 'state': 'absent'}
    exec_error = guest.exec_unavailable()
    current = None
    if exec_error is None:
        try:
            current = guest.stat(path)
        except GuestToolMissingError as exc:
            exec_error = exc
    if exec_error is not None:
        # Without guest-exec we can still tell that there is nothing to delete.
        if command_unavailable(guest.qga, 'guest-file-open') is None:
            try:
                exists = guest.probe(path) is not None
            except GuestFileError as exc:
                exists = exc.reason != 'not_directory'
            if not exists:
                return result
        raise GuestFileError(path, 'cannot delete {0}: the guest agent has no delete command, so this needs '
                                   'guest-exec running rm in the guest, which is not available: {1}'.format(
                                       path, exec_error), reason='exec_unavailable')
    if current is None:
        return result
    if current.kind == 'directory':
        raise GuestFileError(path, '{0} is a directory in the guest; state=absent deletes files only'.format(path),
                             reason='directory')
    result['changed'] = True
    if diff_mode:
        result['diff'] = {'before': {'path': path, 'state': 'link' if current.kind == 'link' else 'file'},
                          'after': {'path': path, 'state': 'absent'}}
    if not check_mode:
        guest.remove(path)
    return result


def throughput(moved, milliseconds):
    """MB/s (10**6 bytes per second) over the whole task, 0 when nothing moved."""
    if not moved or milliseconds <= 0:
        return 0.0
    return round(moved / 1e6 / (milliseconds / 1000.0), 3)
