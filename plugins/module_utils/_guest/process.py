# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Programs in the guest through guest-exec: run, wait, collect, kill on timeout.

guest-exec starts a program ({path, arg, env, input-data, capture-output}) and answers
with its pid; guest-exec-status reports, once the program exited and its output pipes
closed, the exit code (or signal) and the captured output, base64, capped by the agent
(16 MiB per stream on qemu-ga 7.2, flagged *-truncated). The first status after the exit
reaps the process. The agent has no kill command: on timeout a second guest-exec runs a
small POSIX shell script that stops and kills the process and its descendants.

Used by the module qemu_guest_exec and the qemu.vm.qga connection plugin, and meant to
be the POSIX tool runner under _guest_file. No Ansible imports.
"""

from __future__ import annotations

import base64
import binascii
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    GuestFrozenError,
    ParameterError,
    QemuTimeoutError,
    QemuVMError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.errors import ExecTimeoutError, ProgramNotFoundError
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline, wait_until

EXEC_COMMANDS = ('guest-exec', 'guest-exec-status')
#: How the agent's configuration turns commands off; named in every "blocked" error.
BLOCKED_HINT = ('turn it on in the agent configuration: qemu-ga --block-rpcs, or --allow-rpcs on qemu-ga 8.0 '
                'and later (block-rpcs= / allow-rpcs= in /etc/qemu/qemu-ga.conf; BLACKLIST_RPC or QEMU_GA_ARGS '
                'in /etc/sysconfig/qemu-ga on RHEL-family guests, which block it by default)')
#: Seconds given to the kill and to collecting the killed program's status.
KILL_GRACE = 10.0
#: Poll guest-exec-status at this pace: fast first (short commands), then calmer.
FIRST_POLL = 0.005
MAX_POLL = 0.05
# Stop the process first (it cannot fork any more), then its children, recursively,
# then kill it: a shell's children would otherwise keep running and keep the agent's
# output pipes open. /proc/PID/task/*/children needs Linux >= 3.5 (all distributions).
_KILL_TREE = (
    'k() { kill -STOP "$1" 2>/dev/null; '
    'for t in /proc/"$1"/task/*/children; do [ -r "$t" ] && for c in $(cat "$t"); do k "$c"; done; done; '
    'kill -KILL "$1" 2>/dev/null; kill -CONT "$1" 2>/dev/null; }; k "$1"')


class ExecResult:
    """What a finished guest program left: exit code (or signal), output, truncation flags."""

    def __init__(self, pid, status):
        self.pid = pid
        self.exitcode = status.get('exitcode')
        self.signal = status.get('signal')
        self.stdout = _decode(status.get('out-data'))
        self.stderr = _decode(status.get('err-data'))
        self.stdout_truncated = bool(status.get('out-truncated', False))
        self.stderr_truncated = bool(status.get('err-truncated', False))

    @property
    def rc(self):
        """The exit code, or -N when signal N ended the program (as subprocess says it)."""
        if self.exitcode is not None:
            return self.exitcode
        if self.signal is not None:
            return -int(self.signal)
        return None

    def as_dict(self, with_rc=True):
        out = {
            'stdout': _text(self.stdout), 'stderr': _text(self.stderr),
            'stdout_truncated': self.stdout_truncated, 'stderr_truncated': self.stderr_truncated,
        }
        if with_rc:
            out['rc'] = self.rc
        return out


def _decode(data):
    if not data:
        return b''
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise QemuVMError(f'the guest agent sent output that is not base64: {exc}') from exc


def _text(data):
    return data.decode('utf-8', 'replace')


def exec_arguments(argv, env=None, stdin=None, capture=True):
    """The guest-exec arguments for argv (a list), env (a dict or list of K=V) and stdin bytes."""
    if not argv or not argv[0]:
        raise ParameterError('argv', 'a guest command needs a program (argv[0])')
    arguments = {'path': str(argv[0]), 'arg': [str(a) for a in argv[1:]], 'capture-output': bool(capture)}
    if env is not None:
        if isinstance(env, dict):
            env = [f'{k}={v}' for k, v in sorted(env.items())]
        arguments['env'] = list(env)
    if stdin is not None:
        arguments['input-data'] = base64.b64encode(stdin).decode('ascii')
    return arguments


def explain_unavailable(error):
    """The error to show when guest-exec (or guest-exec-status) cannot be used: names the RPC."""
    if isinstance(error, (GuestFrozenError, ProgramNotFoundError)):
        return error
    if isinstance(error, CommandDisabledError):
        return CommandDisabledError(
            error.command, error.error_class, error.desc,
            message=f'{error.command} is blocked by the guest agent configuration ({error.desc}): running programs in the guest '
                    f'needs it; {BLOCKED_HINT}')
    if isinstance(error, CommandNotFoundError):
        return CommandNotFoundError(
            error.command, error.error_class, error.desc,
            message=f'the guest agent does not offer {error.command} ({error.desc}): running programs in the guest needs '
                    'qemu-ga 2.5 or later')
    return error


class GuestExec:
    """Programs in one guest over an open QGASession (anything with execute(command, arguments, timeout))."""

    def __init__(self, qga, sleep=time.sleep):
        self.qga = qga
        self._sleep = sleep

    def _call(self, command, arguments, timeout=None):
        try:
            return self.qga.execute(command, arguments, timeout=timeout)
        except (CommandNotFoundError, CommandDisabledError, GuestFrozenError) as exc:
            raise explain_unavailable(exc) from exc

    def start(self, argv, env=None, stdin=None, capture=True):
        """Start argv in the guest; its pid."""
        arguments = exec_arguments(argv, env, stdin, capture)
        try:
            reply = self._call('guest-exec', arguments)
        except CommandError as exc:
            if isinstance(exc, (CommandNotFoundError, CommandDisabledError, GuestFrozenError)):
                raise
            if 'Failed to execute child process' in (exc.desc or '') or 'No such file' in (exc.desc or ''):
                raise ProgramNotFoundError(argv[0], exc.desc) from exc
            raise
        return reply['pid']

    def status(self, pid):
        """The ExecResult when the program has exited (this reaps it), else None."""
        reply = self._call('guest-exec-status', {'pid': pid})
        if not reply.get('exited'):
            return None
        return ExecResult(pid, reply)

    def wait(self, pid, timeout, argv=('program',), kill=True):
        """Wait at most `timeout` seconds for pid to exit; its ExecResult.

        On timeout, kills it in the guest (unless kill=False) and raises ExecTimeoutError.
        """
        deadline = Deadline(timeout)
        try:
            return wait_until(lambda: self.status(pid), deadline, 'guest command', interval=FIRST_POLL,
                              max_interval=MAX_POLL, sleep=self._sleep)
        except QemuTimeoutError:
            pass
        if not kill:
            raise ExecTimeoutError(argv, timeout, pid, killed=False)
        killed, result = self.kill(pid)
        raise ExecTimeoutError(argv, timeout, pid, killed=killed, result=result)

    def run(self, argv, timeout, env=None, stdin=None, capture=True, shown=None):
        """Run argv to its end (at most `timeout` seconds, then killed); its ExecResult.

        `shown` (a list, or a command line) names the program in errors instead of argv."""
        pid = self.start(argv, env=env, stdin=stdin, capture=capture)
        return self.wait(pid, timeout, [shown] if isinstance(shown, str) else shown or argv)

    def environment(self, timeout):
        """The agent's own environment, which a program started without `env` gets (guest-exec's `env`
        replaces all of it): /proc/<pid>/environ of a shell it starts, else that shell's `env`."""
        result = self.run([SHELL, '-c', _ENVIRON], timeout, shown=['(reading the guest agent\'s environment)'])
        if result.rc != 0:
            raise QemuVMError(f'cannot read the guest agent\'s environment (to add env to it): rc {result.rc}, '
                              f'{_text(result.stderr).strip()}')
        entries = result.stdout.split(b'\0') if b'\0' in result.stdout else result.stdout.splitlines()
        return dict(_text(entry).split('=', 1) for entry in entries if b'=' in entry[1:])

    def kill(self, pid):
        """SIGKILL pid and its descendants in the guest; (whether it is gone, its ExecResult or None).

        The agent has no kill command: a second guest-exec runs the kill, then the killed
        program's status is collected (which also reaps it in the agent).
        """
        try:
            killer = self.start(['/bin/sh', '-c', _KILL_TREE, 'qemu-vm-kill', str(pid)], capture=False)
            wait_until(lambda: self.status(killer), Deadline(KILL_GRACE), 'kill', interval=FIRST_POLL,
                       max_interval=MAX_POLL, sleep=self._sleep)
            result = wait_until(lambda: self.status(pid), Deadline(KILL_GRACE), 'killed program', interval=FIRST_POLL,
                                max_interval=MAX_POLL, sleep=self._sleep)
        except QemuVMError:
            return False, None
        return True, result


# -- what qemu_guest_exec adds on top: environment, working directory, creates/removes ------

# Changes directory, then execs the program. Environment values never go into arguments (every guest
# user can read /proc/*/cmdline, and the agent logs each guest-exec's arguments): they go through
# guest-exec's own `env`, added to the agent's environment read first (GuestExec.environment).
_WRAP = ('if [ -n "$1" ]; then cd -- "$1" || { echo "qemu.vm: cannot change directory to $1" >&2; exit 126; }; fi; '
         'shift; exec "$@"')
_ENVIRON = 'cat "/proc/$$/environ" 2>/dev/null || exec env'
# Exit 0 when the glob $1 (relative to $2 when set) matches an existing path, 1 when not.
_EXISTS = ('if [ -n "$2" ]; then cd -- "$2" || exit 2; fi; IFS=; '
           'for f in $1; do if [ -e "$f" ] || [ -L "$f" ]; then exit 0; fi; done; exit 1')
SHELL = '/bin/sh'


def command_argv(argv=None, cmd=None, chdir=None):
    """The argv to run for argv (a list) or cmd (a /bin/sh -c line), in chdir when given."""
    program = list(argv) if argv is not None else [SHELL, '-c', cmd]
    if not chdir:
        return program
    return [SHELL, '-c', _WRAP, 'qemu-vm-exec', chdir] + program


def path_exists(guest, pattern, chdir=None, timeout=30.0):
    """Whether the guest path (a shell glob, relative to chdir) exists; through /bin/sh in the guest."""
    result = guest.run([SHELL, '-c', _EXISTS, 'qemu-vm-test', pattern, chdir or ''], timeout)
    if result.rc == 2:
        raise ParameterError('chdir', f'chdir {chdir}: cannot change to this directory in the guest ({_text(result.stderr).strip()})')
    if result.rc not in (0, 1):
        raise QemuVMError(f'cannot test whether {pattern} exists in the guest: rc {result.rc}, {_text(result.stderr).strip()}')
    return result.rc == 0
