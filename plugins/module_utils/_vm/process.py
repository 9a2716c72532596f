# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The QEMU process of a VM: is it alive, start it, wait for it, stop it.

QEMU supervises itself (`-daemonize -pidfile`): no process of ours stays behind. A VM is alive
when the pid in its pid file (else any process, found in /proc) is a qemu-system process of ours
whose command line carries this run directory's `-pidfile`: a recycled pid or a process that only
looks like QEMU is not taken for the VM. A zombie has an empty command line, so it is dead.

No Ansible imports here.
"""

from __future__ import annotations

import os
import signal
import subprocess

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    AgentNotRespondingError,
    ConnectionLostError,
    QemuTimeoutError,
    QemuVMError,
    SocketBusyError,
    SocketError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import QGASession
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline, wait_until
from ansible_collections.qemu.vm.plugins.module_utils._vm.errors import QemuStartError

MAX_CMDLINE_BYTES = 1 << 20
#: One agent handshake attempt while the guest boots. Long, because the request waits in the channel
#: until the agent opens its port and is answered at once then; a short attempt that gives up
#: drops it, and the agent's start is noticed only by the next attempt. QEMU's exit ends an attempt
#: early (the socket closes).
AGENT_ATTEMPT_SECONDS = 30.0
#: After SIGKILL, the kernel takes the process down at once; this only bounds the wait.
KILL_SECONDS = 10.0
#: How long qmp.sock may keep us waiting for its greeting (another client holds it) before we use monitor.sock.
BUSY_SECONDS = 10.0


def _cmdline(pid, proc_root='/proc'):
    try:
        st = os.stat(f'{proc_root}/{pid}')
        with open(f'{proc_root}/{pid}/cmdline', 'rb') as handle:
            data = handle.read(MAX_CMDLINE_BYTES)
    except (OSError, ValueError):
        return None, None
    return st.st_uid, data.split(b'\0')[:-1] if data else []


def is_vm_process(pid, pidfile, uids, proc_root='/proc'):
    """True when `pid` is a live qemu-system process owned by one of `uids` started with `-pidfile pidfile`."""
    owner, argv = _cmdline(pid, proc_root)
    if not argv or owner not in uids or not os.path.basename(argv[0]).startswith(b'qemu-system-'):
        return False
    wanted = os.fsencode(pidfile)
    return any(argv[i] == b'-pidfile' and argv[i + 1] == wanted for i in range(len(argv) - 1))


def find_vm_process(paths, uids, proc_root='/proc'):
    """The VM's pid, or None. The pid file first; when it is missing or stale, a scan of /proc for our -pidfile."""
    pid = paths.read_pid()
    if pid is not None and is_vm_process(pid, paths.pidfile, uids, proc_root):
        return pid
    try:
        candidates = sorted(int(entry) for entry in os.listdir(proc_root) if entry.isdigit())
    except OSError:
        return None
    for candidate in candidates:
        if candidate != pid and is_vm_process(candidate, paths.pidfile, uids, proc_root):
            return candidate
    return None


def spawn(name, argv, paths, uids, timeout):
    """Run QEMU (it daemonizes once the VM is set up); its pid, or QemuStartError with QEMU's own message."""
    old_umask = os.umask(0o077)  # sockets and files QEMU creates are private (subprocess's umask= is Python 3.9+)
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False,
                              close_fds=True, cwd='/')
    except subprocess.TimeoutExpired:
        kill(paths, uids)
        raise QemuTimeoutError(f'starting QEMU for VM {name}', timeout, 'QEMU was stopped') from None
    except OSError as exc:
        raise QemuStartError(name, f'{argv[0]} could not be run: {exc}', argv) from None
    finally:
        os.umask(old_umask)
    if proc.returncode != 0:
        text = proc.stderr.decode('utf-8', 'replace').strip() or f'exit status {proc.returncode}'
        prefix = os.path.basename(argv[0]) + ': '
        message = ' '.join(line[len(prefix):] if line.startswith(prefix) else line
                           for line in (raw.strip() for raw in text.splitlines()) if line)
        raise QemuStartError(name, message, argv)
    pid = find_vm_process(paths, uids)
    if pid is None:
        raise QemuStartError(name, 'QEMU reported success but its process is gone (the guest may have powered off at once; '
                                   f'see {paths.serial_log})', argv)
    return pid


def _qmp_command(paths, command, timeout):
    """Send one QMP command; None when sent (or QEMU went away answering it), else the error that stopped us.

    qmp.sock first; when another client keeps it (no greeting within BUSY_SECONDS), the second monitor.
    """
    problem = None
    for address, bound in ((paths.qmp, min(timeout, BUSY_SECONDS)), (paths.monitor, timeout)):
        try:
            with QMPSession(address, timeout=bound) as qmp:
                qmp.execute(command)
            return None
        except ConnectionLostError:
            return None  # quit: QEMU may close the monitor before it replies
        except (SocketBusyError, QemuTimeoutError) as exc:
            problem = exc
        except QemuVMError as exc:
            return exc
    return problem


def kill(paths, uids):
    """SIGKILL the VM's QEMU (if it is still ours) and wait until it is gone."""
    pid = find_vm_process(paths, uids)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    wait_until(lambda: not is_vm_process(pid, paths.pidfile, uids), Deadline(KILL_SECONDS),
               f'QEMU (pid {pid}) to die after SIGKILL', interval=0.05)
    return True


def stop(paths, pid, uids, stop_timeout, timeout, warn):
    """Power the VM off: the ACPI power button, up to `stop_timeout`; then QMP quit; then SIGKILL.

    Returns who stopped it: 'guest' (it powered off), 'quit' (QEMU quit, pulling the plug) or 'kill'.
    """
    def gone():
        return not is_vm_process(pid, paths.pidfile, uids)

    problem = _qmp_command(paths, 'system_powerdown', timeout)
    if problem is None:
        if wait_until(gone, Deadline(stop_timeout), 'the guest to power off', interval=0.1, max_interval=0.5, default=False):
            return 'guest'
        warn(f'the guest did not power off within stop_timeout={stop_timeout:g} s of the ACPI power button; quitting QEMU '
             '(like pulling the plug: data the guest had not written is lost)')
    elif not gone():
        warn(f'could not press the ACPI power button ({problem}); quitting QEMU')
    if gone():
        return 'guest'
    problem = _qmp_command(paths, 'quit', timeout)
    if problem is None and wait_until(gone, Deadline(timeout), 'QEMU to quit', interval=0.05, max_interval=0.5, default=False):
        return 'quit'
    warn(f'QEMU did not quit ({problem or f"still running {timeout:g} s after quit"}); killing it (SIGKILL)')
    kill(paths, uids)
    return 'kill'


def wait_ready(paths, pid, uids, wait, timeout, wait_timeout, qmp=True):
    """Block until QMP answers (wait=qmp) and the guest agent too (wait=agent); `qmp=False` skips the
    monitor (a VM that was already running: its monitor may be in another client's hands)."""
    if wait == 'none':
        return

    def alive():
        if not is_vm_process(pid, paths.pidfile, uids):
            raise VMStateError(f'QEMU (pid {pid}) exited while we waited for it (the guest may have powered off or '
                               f'crashed; its console is in {paths.serial_log} when serial_log is on)')
        return True

    def qmp_answers():
        alive()
        try:
            with QMPSession(paths.qmp, timeout=min(5.0, timeout)) as qmp:
                return qmp.run_state()
        except SocketError:
            return None

    if qmp:
        wait_until(qmp_answers, Deadline(timeout), f'waiting for QMP of QEMU (pid {pid}) to answer', interval=0.05,
                   max_interval=0.5)
    if wait != 'agent':
        return
    deadline = Deadline(wait_timeout)

    def agent_answers():
        alive()
        attempt = max(min(AGENT_ATTEMPT_SECONDS, deadline.remaining()), 0.1)
        try:
            with QGASession(paths.qga, timeout=attempt, sync_timeout=attempt) as qga:
                qga.execute('guest-ping')
            return True
        except (AgentNotRespondingError, ConnectionLostError, SocketError, QemuTimeoutError):
            return False

    wait_until(agent_answers, deadline, 'waiting for the guest agent to answer', interval=0.2,
               hint='the guest is still booting, or has no agent on the org.qemu.guest_agent.0 port')
