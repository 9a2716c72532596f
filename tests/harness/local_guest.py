# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stand-in for qemu-ga's file and exec commands that acts on THIS machine: guest paths are
local paths, guest-exec runs the program here (optionally with busybox's applets only, like
the test guest), guest-file-open opens files as qemu-ga 7.2 does (a creating mode first tries
O_EXCL, then opens the existing file, following links; a file it creates gets 0666).

For unit tests of the shell scripts and decisions of _guest_file against a real filesystem,
where a test can act between two steps (hooks) as a guest user racing the module would.
"""

from __future__ import annotations

import base64
import os
import subprocess

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError

BUSYBOX = '/bin/busybox'
#: The applets the scripts of _guest_file may use, as the test guest has them.
APPLETS = ('sh', 'stat', 'id', 'mkdir', 'rmdir', 'rm', 'mv', 'chmod', 'chown', 'readlink', 'sha256sum', 'cat', 'ln')
_MODES = {
    'r': os.O_RDONLY, 'rb': os.O_RDONLY,
    'w': os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 'wb': os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    'a': os.O_WRONLY | os.O_CREAT | os.O_APPEND, 'ab': os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    'r+': os.O_RDWR, 'r+b': os.O_RDWR, 'rb+': os.O_RDWR,
}
_WHENCE = {'set': os.SEEK_SET, 'cur': os.SEEK_CUR, 'end': os.SEEK_END}


def busybox_path(directory):
    """A directory of busybox applet links, to put alone on PATH."""
    os.makedirs(directory, exist_ok=True)
    for applet in APPLETS:
        link = os.path.join(directory, applet)
        if not os.path.lexists(link):
            os.symlink(BUSYBOX, link)
    return directory


class LocalAgent:
    """guest-file-*, guest-exec(-status) and guest-fsfreeze-status on this machine.

    hooks: {command: callable(arguments)} run before the command (a racing user's move);
    `blocked`: commands the agent has disabled.
    """

    timeout = 30.0

    def __init__(self, path=None, blocked=()):
        self.env = dict(os.environ)
        if path is not None:
            self.env['PATH'] = path
        self.blocked = set(blocked)
        self.hooks = {}
        self.calls = []
        self.execs = []
        self.handles = {}
        self._next = 1000
        self._exited = {}

    def command_state(self, name):
        return 'disabled' if name in self.blocked else 'enabled'

    def info(self):
        return {'version': '7.2.0', 'supported_commands': []}

    def open(self):
        pass

    def close(self):
        pass

    def execute(self, command, arguments=None, timeout=None):
        arguments = dict(arguments or {})
        self.calls.append(command)
        if command in self.blocked:
            raise CommandError(command, 'CommandNotFound', f'Command {command} has been disabled')
        hook = self.hooks.get(command)
        if hook is not None:
            hook(arguments)
        return getattr(self, '_' + command.replace('-', '_'))(arguments)

    @staticmethod
    def _fail(command, what, exc):
        return CommandError(command, 'GenericError', f'{what}: {exc.strerror}')

    def _guest_file_open(self, args):
        path, mode = args['path'], args.get('mode', 'r')
        flags = _MODES[mode]
        try:
            if flags & os.O_CREAT:
                try:
                    fd = os.open(path, flags | os.O_EXCL, 0o666)
                    os.fchmod(fd, 0o666)
                except FileExistsError:
                    fd = os.open(path, flags & ~os.O_CREAT)
            else:
                fd = os.open(path, flags)
        except OSError as exc:
            raise self._fail('guest-file-open', f"failed to open file '{path}' (mode: '{mode}')", exc)
        handle = self._next
        self._next += 1
        self.handles[handle] = fd
        return handle

    def _guest_file_read(self, args):
        try:
            data = os.read(self.handles[args['handle']], args.get('count', 4096))
        except OSError as exc:
            raise self._fail('guest-file-read', 'failed to read file', exc)
        return {'count': len(data), 'buf-b64': base64.b64encode(data).decode(), 'eof': len(data) < args.get('count', 4096)}

    def _guest_file_write(self, args):
        data = base64.b64decode(args['buf-b64'])
        try:
            written = os.write(self.handles[args['handle']], data)
        except OSError as exc:
            raise self._fail('guest-file-write', 'failed to write to file', exc)
        return {'count': written, 'eof': False}

    def _guest_file_seek(self, args):
        try:
            position = os.lseek(self.handles[args['handle']], args['offset'], _WHENCE[args['whence']])
        except OSError as exc:
            raise self._fail('guest-file-seek', 'failed to seek file', exc)
        return {'position': position, 'eof': False}

    def _guest_file_close(self, args):
        os.close(self.handles.pop(args['handle']))
        return {}

    def _guest_exec(self, args):
        argv = [args['path']] + list(args.get('arg', []))
        self.execs.append(argv)
        stdin = base64.b64decode(args['input-data']) if 'input-data' in args else None
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, env=self.env, timeout=60, check=False)
        except FileNotFoundError as exc:
            raise CommandError('guest-exec', 'GenericError',
                               f'Guest agent command failed, error was \'Failed to execute child process "{argv[0]}" '
                               f'({exc.strerror})\'') from exc
        pid = 4000 + len(self.execs)
        self._exited[pid] = proc
        return {'pid': pid}

    def _guest_exec_status(self, args):
        proc = self._exited.pop(args['pid'])
        status = {'exited': True, 'out-data': base64.b64encode(proc.stdout).decode(),
                  'err-data': base64.b64encode(proc.stderr).decode()}
        if proc.returncode < 0:
            status['signal'] = -proc.returncode
        else:
            status['exitcode'] = proc.returncode
        return status

    def _guest_fsfreeze_status(self, args):
        return 'thawed'
