# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""One guest's files over an open agent session: what the agent offers for them, POSIX tools
run through guest-exec (stat, readlink, sha256sum, rm; the scripts of _guest_file.replace), and
streaming through the shared transfer layer (_guest_file.transfer).

No Ansible imports; the decisions that use it are in _guest_file.state.
"""

from __future__ import annotations

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
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import (
    GuestFileError,
    GuestFileMissingError,
    GuestToolMissingError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.transfer import (
    DEFAULT_CHUNK,
    FILE_COMMANDS,
    READ_COMMANDS,
    OpenGuestFile,
    download,
    explain,
    explain_text,
    transfer_bound,
    upload,
)

EXEC_COMMANDS = ('guest-exec', 'guest-exec-status')
#: size, mode, uid, gid, links, then its identity (device, inode, raw mode: a new file in its place
#: differs even when the filesystem reuses the inode number), names and type.
_STAT_FORMAT = '%s %a %u %g %h %d:%i:%u:%f %U %G %F'


class GuestStat:
    """What `stat` says about a guest path (of a symbolic link itself unless followed)."""

    KINDS = {'regular file': 'file', 'regular empty file': 'file', 'directory': 'directory',
             'symbolic link': 'link'}

    def __init__(self, size, mode, uid, gid, user, group, kind, links=1, identity=None):
        self.size = size
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.user = user
        self.group = group
        self.kind = kind
        self.links = links
        #: 'device:inode:uid:rawmode', what tells this file from one put in its place
        self.identity = identity

    @classmethod
    def parse(cls, line):
        fields = line.strip('\n').split(' ', 8)
        if len(fields) != 9 or not re.match(r'^[0-9]+:[0-9]+:[0-9]+:[0-9a-f]+$', fields[5]):
            raise ValueError(f'unexpected stat output {line!r}')
        size, mode, uid, gid, links, identity, user, group, kind = fields
        return cls(int(size), int(mode, 8), int(uid), int(gid), user, group, cls.KINDS.get(kind, kind),
                   links=int(links), identity=identity)

    def attributes(self):
        return {'mode': f'{self.mode:04o}', 'owner': self.user, 'group': self.group}


def guest_file_mode(qga, path):
    """The permission bits of the guest file `path` (links followed), or None when the guest cannot say
    (no guest-exec, no stat). For the qemu.vm.qga connection's fetched files."""
    try:
        result = GuestExec(qga).run(['stat', '-L', '-c', '%a', '--', path], getattr(qga, 'timeout', 30.0))
    except GuestFrozenError:
        raise
    except QemuVMError:
        return None
    match = re.match(r'^([0-7]{1,4})$', result.stdout.decode('ascii', 'replace').strip())
    return int(match.group(1), 8) if result.rc == 0 and match else None


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
                blocked = [c for c in FILE_COMMANDS + ('guest-file-seek',) if self.qga.command_state(c) != 'enabled']
                if isinstance(error, CommandDisabledError):
                    raise CommandDisabledError(
                        name, error.error_class, error.desc,
                        message='the guest agent has its file commands blocked ({0} disabled): they are turned off '
                                'in the agent configuration (qemu-ga --block-rpcs, or --allow-rpcs on qemu-ga 8.0 and later; '
                                'RHEL-family guests block guest-file-* by default through BLACKLIST_RPC or '
                                'QEMU_GA_ARGS in /etc/sysconfig/qemu-ga)'.format(
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
            out = self._tool(['sha256sum', '--', path], path, 'checksum', timeout=transfer_bound(self.qga, size))
        except GuestToolMissingError:
            return None
        match = re.match(r'^\\?([0-9a-f]{64})\s', out.decode('ascii', 'replace'))
        if not match:
            raise GuestFileError(path, f'unexpected sha256sum output in the guest: {out[:200]!r}')
        return match.group(1)

    def remove(self, path):
        self._tool(['rm', '-f', '--', path], path, 'delete')

    # -- guest-file-* --------------------------------------------------------------------

    def probe(self, path):
        """Without guest-exec: GuestStat(size, kind='file') of an existing file, or None when missing."""
        self.require(*READ_COMMANDS)
        try:
            with OpenGuestFile(self.qga, path, 'rb') as guest_file:
                guest_file.read(1)
                try:
                    reply = self.qga.execute('guest-file-seek', {'handle': guest_file.handle, 'offset': 0,
                                                                 'whence': 'end'})
                except CommandError as exc:
                    raise explain(exc, path, 'read') from exc
        except GuestFileMissingError:
            return None
        return GuestStat(reply['position'], None, None, None, None, None, 'file')

    def read_stream(self, path, sink=None, limit=None, max_size=None, start=None):
        """Stream the guest file through `sink(bytes)` while hashing it, bounded as transfer.download
        says: (sha256 hex, size). With `limit`, a file over `limit` bytes gives (None, its size)."""
        self.require(*READ_COMMANDS)
        digest, size = download(self.qga, path, sink, self.chunk_size, limit=limit, max_size=max_size, start=start,
                                warn=self.warnings.append)
        if digest is not None:
            self.read_bytes += size
        return digest, size

    def read_small(self, path, limit):
        """The whole file when it holds at most `limit` bytes, else None."""
        parts = []
        digest, _size = self.read_stream(path, parts.append, limit=limit)
        if digest is None:
            return None
        return b''.join(parts)

    def write_stream(self, path, source, mode='wb'):
        """Write `source` to the guest file `path` (created or truncated; mode 'r+b': an existing file,
        never created): (sha256 hex, size)."""
        self.require(*FILE_COMMANDS)
        with source.open() as reader:
            digest, size = upload(self.qga, reader, path, self.chunk_size, size_hint=max(source.size, 1), mode=mode)
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
