# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Freeze → snapshot → thaw in one process, and a guard that thaws if that process dies.

The frozen window is the snapshot job plus the two agent round trips: the QMP and QGA
sessions are opened before the freeze and the guard process is started (and has
imported everything it needs) before the freeze as well.

The guard is a detached Python process holding the read end of a pipe whose write end
only the module holds. It thaws the guest when
  - the pipe reaches EOF without a "done" line (the module died: SIGKILL, OOM, lost controller,
    or the module's own thaw failed and it handed the thaw over), or
  - `freeze_timeout` passes after the module said "frozen" without saying "done".
The module says "done" only after guest-fsfreeze-status confirmed the thaw. A paused VM's agent
cannot thaw: the guard waits for the VM to run again (it asks QMP), for up to a day, and gives
up at once when QEMU is gone. A marker in the private runtime directory says a freeze of ours is
not confirmed thawed; the next agent session on that socket thaws first (see session.py). It is
written before the guard starts: a marker that cannot be written means no freeze.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, QemuVMError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest.errors import QuiesceError
from ansible_collections.qemu.vm.plugins.module_utils._guest.freeze import freeze, thaw
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import fsfreeze_status
from ansible_collections.qemu.vm.plugins.module_utils._guest.session import AgentSession, forget_freeze, remember_freeze
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import RuntimeFileError
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import SMALL_REPLY_BYTES, QGASession
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import run_state_of
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline

QUIESCE_MODES = ('off', 'preferred', 'required')
#: How long the guard may take to start; it imports the transport before the freeze.
GUARD_START_SECONDS = 15.0
#: How long the guard keeps trying to thaw a running VM (the agent may be busy right after a crash).
GUARD_THAW_SECONDS = 60.0
#: How long the guard waits for a paused VM to run again, so that it can thaw it.
GUARD_PAUSED_SECONDS = 86400.0


class FreezeGuard:
    """The detached thaw guard. start() before freezing; frozen() right after; done() after the thaw."""

    def __init__(self, qga_address, freeze_timeout, timeout, qmp_address=None):
        self.qga_address = qga_address
        self.freeze_timeout = freeze_timeout
        self.timeout = timeout
        self.qmp_address = qmp_address
        self._proc = None

    def start(self):
        env = dict(os.environ)
        # The module's own import path (AnsiballZ payload included): the guard imports
        # everything before it says "ready", so removing the payload later is harmless.
        env['PYTHONPATH'] = os.pathsep.join(p for p in sys.path if p)
        code = 'from ansible_collections.qemu.vm.plugins.module_utils._guest.quiesce import guard_main; guard_main()'
        self._proc = subprocess.Popen(
            [sys.executable, '-c', code, str(self.qga_address), repr(self.freeze_timeout), repr(self.timeout),
             str(self.qmp_address or '')],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True, env=env)
        ready, _w, _x = select.select([self._proc.stdout], [], [], GUARD_START_SECONDS)
        line = self._proc.stdout.readline() if ready else b''
        if line.strip() != b'ready':
            self._proc.kill()
            self._proc.wait()
            raise VMStateError(f'the thaw guard process did not start within {GUARD_START_SECONDS:g} s; not freezing the guest')
        self._proc.stdout.close()
        return self

    def _say(self, word):
        try:
            self._proc.stdin.write(word + b'\n')
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def frozen(self):
        self._say(b'frozen')

    def done(self):
        """The guest is confirmed thawed: release the guard without it doing anything."""
        if self._proc is not None:
            self._say(b'done')
            self._proc.stdin.close()
            self._proc.wait()
            self._proc = None

    def hand_over(self):
        """Our thaw failed: closing our end makes the guard thaw now (and keep trying)."""
        if self._proc is not None:
            self._proc.stdin.close()
            self._proc = None


def guard_main():
    """Entry point of the guard process (see FreezeGuard)."""
    qga_address = sys.argv[1]
    freeze_timeout = float(sys.argv[2])
    timeout = float(sys.argv[3])
    qmp_address = sys.argv[4] or None
    # Import-time work is done; tell the module we are armed, then detach from its output.
    sys.stdout.write('ready\n')
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    # Until the module says "frozen", allow for the freeze command itself.
    deadline = Deadline(QGASession.freeze_command_timeout(timeout) + freeze_timeout)
    pending = b''
    while not deadline.expired:
        readable, _w, _x = select.select([0], [], [], deadline.remaining())
        if not readable:
            break
        chunk = os.read(0, 64)
        if not chunk:
            break  # EOF without "done": the module is gone, or handed the thaw over
        pending += chunk
        if b'done' in pending:
            return
        if b'frozen' in pending:
            deadline = Deadline(freeze_timeout)
            pending = pending.replace(b'frozen', b'')
    _thaw_until(qga_address, qmp_address, timeout)


def _thaw_until(qga_address, qmp_address, timeout):
    """Thaw; while the VM is paused, wait for it to run again (up to GUARD_PAUSED_SECONDS)."""
    running_bound = Deadline(GUARD_THAW_SECONDS)
    paused_bound = Deadline(GUARD_PAUSED_SECONDS)
    while not paused_bound.expired:
        try:
            with QGASession(qga_address, timeout=min(timeout, 10.0), max_reply=SMALL_REPLY_BYTES) as qga:
                thaw(qga)
                if fsfreeze_status(qga) == 'thawed':
                    forget_freeze(qga_address)
                    return True
        except QemuVMError:
            pass
        state = run_state_of(qmp_address) if qmp_address else None
        if state == 'gone':
            return False  # QEMU exited: nothing is frozen any more
        if state == 'running' and running_bound.expired:
            return False
        if state != 'running':
            running_bound = Deadline(GUARD_THAW_SECONDS)  # counts from when the VM runs again
        time.sleep(0.5)
    return False


def thaw_failure(exc, save_error, run_state):
    """The error to raise when the thaw after a snapshot failed: why, what it means, how to recover."""
    cause = f' The snapshot failed first: {save_error}.' if save_error is not None else ''
    if run_state in (None, 'running', 'gone'):
        return VMStateError(
            f'the guest filesystems may still be frozen: {exc}. The thaw guard keeps trying for {GUARD_THAW_SECONDS:g} s; if it does '
            'not succeed, the next qemu.vm task on this agent socket thaws first, or run qemu.vm.qemu_guest_fsfreeze '
            f'state=thawed.{cause}')
    why = 'paused on an I/O error' if run_state == 'io-error' else 'paused'
    return VMStateError(
        f'the VM was {why} (QEMU run state {run_state!r}) while the guest filesystems were frozen, so the guest agent cannot '
        'thaw them: the guest may still be frozen. The thaw guard thaws them as soon as the VM runs again (QMP '
        f'cont; for an I/O error, fix its cause first), for up to {GUARD_PAUSED_SECONDS / 3600:g} hours; after that, the next qemu.vm task on '
        f'this agent socket thaws first.{cause} (thaw: {exc})')


def thaw_and_confirm(qga, on_thawed=None):
    """Thaw, then read the status back; raises VMStateError if the guest is still frozen.

    on_thawed() is called as soon as the thaw reply arrives (the end of the frozen window).
    """
    thaw(qga)
    if on_thawed is not None:
        on_thawed()
    status = fsfreeze_status(qga)
    if status != 'thawed':
        raise VMStateError(f'guest-fsfreeze-thaw returned but guest-fsfreeze-status says {status!r}')


def quiesced(qga_address, mode, timeout, freeze_timeout, save, warn, qmp=None, taken='snapshot'):
    """Run save(bound) with the guest's filesystems frozen around it.

    mode 'required': any failure to freeze raises QuiesceError before a snapshot is taken.
    mode 'preferred': such a failure takes the snapshot crash-consistent and says why.
    save(bound) is called with the bound for the job: `freeze_timeout` while frozen, else
    `timeout`. `qmp` (an open QMPSession, optional) lets a failed thaw say whether the VM
    is paused, and lets the guard wait for a paused VM to run again. `taken` names what save()
    makes, for the messages. Returns (save result, report).
    """
    report = {'quiesced': False, 'frozen_ms': 0}

    def cannot_quiesce(reason):
        if mode == 'required':
            raise QuiesceError(f'quiesce=required, but {reason}; no {taken} was taken')
        report['quiesce_reason'] = reason
        warn(f'{taken} taken without quiescing the guest (crash-consistent): {reason}')

    try:
        qga = AgentSession(qga_address, timeout=timeout, max_reply=SMALL_REPLY_BYTES)
        qga.open()
    except QemuVMError as exc:
        cannot_quiesce(f'the guest agent is not usable: {exc}')
        return save(timeout), report

    try:
        if qga.thawed_interrupted_freeze:
            warn('the guest filesystems were still frozen by an interrupted earlier run: thawed them first')
        # First: while frozen, the agent lists the freeze command itself as disabled.
        if fsfreeze_status(qga) == 'frozen':
            warn(f'the guest filesystems were already frozen (an earlier run died?): thawed them before the {taken}')
            thaw_and_confirm(qga)
        state = qga.command_state('guest-fsfreeze-freeze')
        if state != 'enabled':
            cannot_quiesce(f'the guest agent has guest-fsfreeze-freeze {state}')
            return save(timeout), report
        try:
            remember_freeze(qga_address)
        except RuntimeFileError as exc:
            cannot_quiesce(f'the marker that makes the next session thaw cannot be written: {exc}')
            return save(timeout), report
        try:
            guard = FreezeGuard(qga_address, freeze_timeout, timeout, qmp.shown if qmp is not None else None).start()
        except BaseException:
            forget_freeze(qga_address)
            raise
        frozen_at = None
        save_error = None
        try:
            try:
                report['frozen_filesystems'] = freeze(qga)
                frozen_at = time.monotonic()
                guard.frozen()
            except CommandError as exc:
                # The agent thaws everything itself when a freeze fails.
                cannot_quiesce(f'guest-fsfreeze-freeze failed: {exc.desc}')
            report['quiesced'] = frozen_at is not None and report['frozen_filesystems'] > 0
            if frozen_at is not None and not report['quiesced']:
                cannot_quiesce('the guest has no freezable filesystems')
            try:
                result = save(freeze_timeout if report['quiesced'] else timeout)
            except QemuVMError as exc:
                save_error = exc
                raise
        finally:
            # Thaw on every path once the freeze was sent: it may have frozen even if we saw an error.
            def thawed():
                if frozen_at is not None:  # freeze reply -> thaw reply
                    report['frozen_ms'] = int(round((time.monotonic() - frozen_at) * 1000))
            try:
                thaw_and_confirm(qga, thawed)
            except QemuVMError as exc:
                guard.hand_over()
                raise thaw_failure(exc, save_error, _run_state(qmp)) from exc
            guard.done()
            forget_freeze(qga_address)
    finally:
        qga.close()
    return result, report


def _run_state(qmp):
    if qmp is None:
        return None
    try:
        return qmp.run_state()
    except QemuVMError:
        return None
