# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""One guest's files over an open agent session: what the agent offers for them, POSIX tools
run through guest-exec (stat, rename, delete, chmod, chown, sha256sum, a private temporary
file), and streaming through the shared transfer layer (_guest_transfer).

No Ansible imports; the decisions that use it are in _guest_file.
"""

from __future__ import annotations

import posixpath
import random
import re

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    GuestFrozenError,
    QemuVMError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import command_unavailable
from ansible_collections.qemu.vm.plugins.module_utils._guest.errors import ProgramNotFoundError
from ansible_collections.qemu.vm.plugins.module_utils._guest.process import GuestExec
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import GuestFileError, GuestToolMissingError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.transfer import (
    DEFAULT_CHUNK,
    FILE_COMMANDS,
    OpenGuestFile,
    download,
    explain,
    explain_text,
    upload,
)
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import SLOWEST_BYTES_PER_SECOND

EXEC_COMMANDS = ('guest-exec', 'guest-exec-status')
_STAT_FORMAT = '%s %a %u %g %U %G %F'
_rng = random.SystemRandom()

#: Temporary guest files are `.NAME.qemu-vm-XXXXXXXX.tmp` beside the file being written.
_TEMP_SUFFIX = re.compile(r'\.qemu-vm-[0-9a-f]{8}\.tmp$')


def temp_name(target):
    """A hidden temporary name beside `target`, for write-then-rename."""
    directory, name = posixpath.split(target)
    suffix = f'.qemu-vm-{_rng.getrandbits(32):08x}.tmp'
    return posixpath.join(directory, '.' + name[:200] + suffix)


def target_of_temp(temp):
    """The (possibly shortened) name a temporary file was made for: `.NAME.qemu-vm-X.tmp` -> NAME."""
    directory, name = posixpath.split(temp)
    return posixpath.join(directory, _TEMP_SUFFIX.sub('', name)[1:])


class GuestStat:
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
            raise ValueError(f'unexpected stat output {line!r}')
        size, mode, uid, gid, user, group, kind = fields
        return cls(int(size), int(mode, 8), int(uid), int(gid), user, group, cls.KINDS.get(kind, kind))

    def attributes(self):
        return {'mode': f'{self.mode:04o}', 'owner': self.user, 'group': self.group}


class GuestFileSystem:
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
        """Run argv in the guest; (exit code, stdout bytes, stderr bytes). -N for a signal N.

        Past `timeout` (default: the session's) the program is killed in the guest.
        """
        self.require(*EXEC_COMMANDS)
        try:
            result = GuestExec(self.qga).run(argv, self.qga.timeout if timeout is None else timeout, stdin=stdin)
        except ProgramNotFoundError as exc:
            raise GuestToolMissingError(argv[0], exc.desc) from exc
        return result.rc, result.stdout, result.stderr

    def _tool(self, argv, path, what, timeout=None):
        code, out, err = self.run(argv, timeout=timeout)
        if code != 0:
            raise explain_text(path, what, err.decode('utf-8', 'replace').strip() or f'exit code {code}')
        return out

    def stat(self, path, follow=False):
        """GuestStat of `path` (of the link itself unless follow), or None when it does not exist."""
        argv = ['stat'] + (['-L'] if follow else []) + ['-c', _STAT_FORMAT, '--', path]
        code, out, err = self.run(argv)
        if code == 0:
            try:
                return GuestStat.parse(out.decode('utf-8', 'replace'))
            except ValueError as exc:
                raise GuestFileError(path, f'cannot read the guest stat output for {path}: {exc}')
        text = err.decode('utf-8', 'replace').strip()
        if 'No such file or directory' in text:
            return None
        raise explain_text(path, 'look up', text or f'stat exit code {code}')

    def realpath(self, path):
        out = self._tool(['readlink', '-f', '--', path], path, 'resolve the symbolic link')
        resolved = out.decode('utf-8', 'surrogateescape').rstrip('\n')
        if not resolved.startswith('/'):
            raise GuestFileError(path, f'cannot resolve the symbolic link {path} (readlink -f said {resolved!r})')
        return resolved

    def sha256sum(self, path, size):
        """The guest's own sha256sum of `path`, or None when the guest has no sha256sum."""
        try:
            out = self._tool(['sha256sum', '--', path], path, 'checksum', timeout=self._transfer_bound(size))
        except GuestToolMissingError:
            return None
        match = re.match(r'^\\?([0-9a-f]{64})\s', out.decode('ascii', 'replace'))
        if not match:
            raise GuestFileError(path, f'unexpected sha256sum output in the guest: {out[:200]!r}')
        return match.group(1)

    def rename(self, source, target):
        self._tool(['mv', '-f', '--', source, target], target, f'rename {source} onto')

    def remove(self, path):
        self._tool(['rm', '-f', '--', path], path, 'delete')

    def chown(self, path, owner=None, group=None):
        spec = (owner or '') + (':' + group if group else '')
        self._tool(['chown', spec, '--', path], path, f'change the owner/group ({spec}) of')

    def chmod(self, path, mode):
        self._tool(['chmod', f'{mode:04o}', '--', path], path, 'change the mode of')

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
            raise explain_text(path, 'create the temporary file',
                               err.decode('utf-8', 'replace').strip() or f'exit code {code}')
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

    def probe(self, path):
        """Without guest-exec: GuestStat(size, kind='file') of an existing file, or None when missing."""
        self.require('guest-file-open', 'guest-file-read', 'guest-file-seek', 'guest-file-close')
        try:
            with OpenGuestFile(self.qga, path, 'rb') as guest_file:
                guest_file.read(1)
                try:
                    reply = self.qga.execute('guest-file-seek', {'handle': guest_file.handle, 'offset': 0,
                                                                 'whence': 'end'})
                except CommandError as exc:
                    raise explain(exc, path, 'read') from exc
        except GuestFileError as exc:
            if exc.reason == 'missing':
                return None
            raise
        return GuestStat(reply['position'], None, None, None, None, None, 'file')

    def read_stream(self, path, sink=None, limit=None):
        """Stream the guest file through `sink(bytes)` while hashing it: (sha256 hex, size).

        With `limit`, stops after more than `limit` bytes and returns (None, bytes read so far).
        """
        self.require('guest-file-open', 'guest-file-read', 'guest-file-close')
        digest, size = download(self.qga, path, sink, self.chunk_size, limit=limit)
        self.read_bytes += size
        return digest, size

    def read_small(self, path, limit):
        """The whole file when it holds at most `limit` bytes, else None."""
        parts = []
        digest, _size = self.read_stream(path, parts.append, limit=limit)
        if digest is None:
            return None
        return b''.join(parts)

    def write_stream(self, path, source):
        """Write `source` to the guest file `path` (created or truncated): (sha256 hex, size)."""
        self.require(*FILE_COMMANDS)
        with source.open() as reader:
            digest, size = upload(self.qga, reader, path, self.chunk_size, size_hint=max(source.size, 1))
        self.written_bytes += size
        return digest, size

    def checksum(self, path, size, use_exec):
        """(sha256 hex, how): the guest's sha256sum when it can run it, else a streamed read."""
        if use_exec:
            digest = self.sha256sum(path, size)
            if digest is not None:
                return digest, 'sha256sum'
        digest, _size = self.read_stream(path)
        return digest, 'stream'
