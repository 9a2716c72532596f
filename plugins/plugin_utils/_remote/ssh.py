# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This plugin_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""A hypervisor reached with the system's OpenSSH client, and a VM socket on it reached through a relay.

`ssh` is run as users run it: it reads ~/.ssh/config, checks host keys as configured there (by default
an unknown or changed key is refused), and with the default arguments shares one master connection
(ControlMaster=auto, ControlPersist=60s) across tasks, as Ansible's ssh connection does. BatchMode=yes
is always given, so nothing prompts: a key that needs a passphrase must be in an ssh-agent. The control
sockets live in a private directory (ssh/ in the transport's runtime directory, 0700).

A session to a VM's socket runs relay.py on the hypervisor (bundle.py ships it) with the ssh process'
stdin and stdout both one end of a socket pair: the other end is an ordinary connected socket, so the
QMP and agent sessions of _transport use it as they use a unix socket. What goes wrong is said from
ssh's stderr, naming the host: unreachable, authentication refused, unknown host key, no python3.
No Ansible imports.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import socket
import stat
import subprocess
import tempfile
import time

from ansible_collections.qemu.vm.plugins.module_utils import _errors
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import RuntimeFileError
from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import open_runtime_dir
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline
from ansible_collections.qemu.vm.plugins.plugin_utils._remote.bundle import remote_command
from ansible_collections.qemu.vm.plugins.plugin_utils._remote.errors import HypervisorError

DEFAULT_SSH_ARGS = '-o ControlMaster=auto -o ControlPersist=60s'
RELAY = 'ansible_collections.qemu.vm.plugins.plugin_utils._remote.relay'
#: The relay's first line is a small JSON object.
MAX_HEADER = 64 * 1024
#: What the relay's start may take beyond the SSH connection (bounded by ConnectTimeout) and its own bound:
#: a python3 start and the import of the bundled code on a loaded host.
RELAY_START_SECONDS = 5.0
#: How long a closed session's ssh process may take to exit before it is killed.
EXIT_SECONDS = 5.0
#: Socket errors the relay may report, rebuilt here under the host's name.
_SOCKET_ERRORS = dict((cls.__name__, cls) for cls in (
    _errors.SocketError, _errors.SocketMissingError, _errors.SocketPermissionError, _errors.SocketRefusedError,
    _errors.SocketBusyError))


def control_dir():
    """The private directory for ssh's control sockets (created 0700, checked to be ours and closed)."""
    dir_fd, path = open_runtime_dir()
    os.close(dir_fd)
    path = os.path.join(path, 'ssh')
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise RuntimeFileError(path, 'is not a directory of ours closed to other users (0700): remove it')
    return path


def explain_ssh_failure(text, status):
    """Why ssh (exit `status`, stderr `text`) failed, in words a user can act on."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(('Warning: Permanently', 'debug'))]
    said = '; '.join(lines[-3:]) or f'ssh exited with status {status} and said nothing'
    lowered = text.lower()
    if 'host key verification failed' in lowered or 'host key for' in lowered and 'has changed' in lowered:
        return f'its SSH host key is not known or has changed (add it to ~/.ssh/known_hosts, e.g. with ssh-keyscan, after checking it): {said}'
    if 'permission denied' in lowered and ('publickey' in lowered or 'password' in lowered or 'keyboard' in lowered):
        return f'SSH authentication was refused (check the user and the private key; BatchMode=yes, so nothing prompts): {said}'
    if any(words in lowered for words in ('could not resolve hostname', 'connection refused', 'connection timed out',
                                          'no route to host', 'network is unreachable', 'operation timed out')):
        return f'cannot reach it over SSH: {said}'
    if status == 127 or 'python3: not found' in lowered or 'python3: command not found' in lowered:
        return f'python3 is not found there (the hypervisor needs Python 3, as the qemu.vm modules do): {said}'
    if status == 255:
        return f'the SSH connection failed: {said}'
    return f'the remote command failed (exit status {status}): {said}'


class SSHHost:
    """A hypervisor as the user named it: host, and optionally user, port, private key file, ssh arguments."""

    def __init__(self, host, user=None, port=None, private_key_file=None, ssh_args=None, python='python3'):
        self.host = host
        self.user = user or None
        self.port = int(port) if port else None
        self.private_key_file = private_key_file or None
        self.ssh_args = DEFAULT_SSH_ARGS if ssh_args is None else ssh_args
        self.python = python
        self.shown = '{0}{1}{2}'.format(f'{self.user}@' if self.user else '', host, f':{self.port}' if self.port else '')

    def argv(self, command, timeout):
        """The ssh command line that runs `command` (a shell command line) there."""
        argv = ['ssh'] + shlex.split(self.ssh_args)
        if 'controlpath' not in self.ssh_args.lower():
            argv += ['-o', 'ControlPath=' + os.path.join(control_dir(), '%C')]
        argv += ['-o', 'BatchMode=yes', '-o', f'ConnectTimeout={max(1, math.ceil(timeout))}']
        if self.port:
            argv += ['-p', str(self.port)]
        if self.user:
            argv += ['-l', self.user]
        if self.private_key_file:
            argv += ['-i', os.path.expanduser(self.private_key_file)]
        return argv + ['--', self.host, command]

    def failure(self, text, status):
        return HypervisorError(self.shown, explain_ssh_failure(text, status))

    def call(self, entry, function, arguments, timeout):
        """Run entry.function(**arguments) there, bounded by `timeout`; its stdout (the function writes JSON)."""
        argv = self.argv(remote_command(entry, function, arguments, self.python), timeout)
        with tempfile.TemporaryFile() as stderr:
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                      timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                raise HypervisorError(self.shown, f'no answer over SSH within {timeout:g} s (timeout)')
            except OSError as exc:
                raise HypervisorError(self.shown, f'cannot run ssh: {exc.strerror or exc}')
            if proc.returncode != 0:
                stderr.seek(0)
                raise self.failure(stderr.read(MAX_HEADER).decode('utf-8', 'replace'), proc.returncode)
        return proc.stdout


class RelayConnector:
    """Connects a session to the socket `address` on `host` through the relay; `lock` as relay.LOCK_MODES."""

    def __init__(self, host, address, lock='take'):
        self.host = host
        self.address = address
        self.lock = lock
        self.shown = f'{host.shown}:{address}'
        #: Whether the socket's freeze marker exists on the hypervisor (known once connected).
        self.freeze_remembered = False
        self._proc = None
        self._sock = None

    def connect(self, timeout):
        """A socket connected through the relay. The relay waits up to `timeout` for the lock and the socket
        there, after the SSH connection (up to `timeout` too, ConnectTimeout) and its own start: so its answer,
        "busy" included, is awaited that long, and a relay that says nothing is given up on after that."""
        self.close()
        deadline = Deadline(2 * timeout + RELAY_START_SECONDS)
        command = remote_command(RELAY, 'relay', {'address': self.address, 'lock': self.lock, 'timeout': timeout},
                                 self.host.python)
        ours, theirs = socket.socketpair()
        stderr = tempfile.TemporaryFile()
        try:
            try:
                self._proc = subprocess.Popen(self.host.argv(command, timeout), stdin=theirs, stdout=theirs, stderr=stderr)
            except OSError as exc:
                raise HypervisorError(self.host.shown, f'cannot run ssh: {exc.strerror or exc}')
            finally:
                theirs.close()
            self._sock = ours
            status = self._header(ours, deadline, stderr)
        except BaseException:
            self.close()
            stderr.close()
            raise
        stderr.close()
        if 'error' in status:
            self.close()
            cls = _SOCKET_ERRORS.get(status['error'], HypervisorError)
            raise cls(self.shown, status.get('reason') or status.get('message') or status['error'])
        self.freeze_remembered = bool(status.get('frozen'))
        ours.settimeout(None)
        return ours

    def _header(self, sock, deadline, stderr):
        """The relay's first line, read without taking any byte after it (a QMP greeting follows at once)."""
        seen = b''
        while True:
            sock.settimeout(max(deadline.remaining(), 0.001))
            try:
                seen = sock.recv(MAX_HEADER, socket.MSG_PEEK)
            except socket.timeout:
                raise HypervisorError(self.host.shown, f'the relay to {self.address} did not answer within '
                                                       f'{deadline.seconds:g} s (the SSH connection, then the lock and '
                                                       'the socket there, are each bounded by timeout)')
            end = seen.find(b'\n')
            if end >= 0:
                line = sock.recv(end + 1)
                try:
                    status = json.loads(line.decode('utf-8'))
                except ValueError:
                    status = None
                if not isinstance(status, dict):
                    raise HypervisorError(self.host.shown, f'the relay answered {line[:200]!r}, not its status line')
                return status
            if not seen:
                break  # ssh ended before the relay spoke
            if len(seen) >= MAX_HEADER:
                raise HypervisorError(self.host.shown, 'the relay sent a status line longer than 64 KiB')
            time.sleep(0.01)  # a part of the line: peeking again at once would only spin
        status_code = self._wait(max(deadline.remaining(), 1.0))
        stderr.seek(0)
        raise self.host.failure(stderr.read(MAX_HEADER).decode('utf-8', 'replace'), status_code)

    def _wait(self, seconds):
        try:
            return self._proc.wait(seconds)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait()

    def close(self):
        """End the session: closing our end ends the relay's stdin, so it lets go of the socket and its lock."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        proc, self._proc = self._proc, None
        if proc is not None:
            self._proc = proc
            self._wait(EXIT_SECONDS)
            self._proc = None
