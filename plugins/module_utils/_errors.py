# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The one exception family of the qemu.vm transport.

QemuVMError
 +-- SocketError            a socket we were told to use cannot be used
 |    +-- SocketMissingError       nothing at that path
 |    +-- SocketPermissionError    we may not connect to it
 |    +-- SocketRefusedError       nobody listens (QEMU not running)
 |    +-- SocketBusyError          another client holds it longer than `timeout`
 +-- ConnectionLostError    the peer went away or sent something unparseable
 +-- AgentNotRespondingError QEMU accepted, but no guest agent answered
 +-- CommandError           QEMU or the agent answered with an error
 |    +-- CommandNotFoundError     the peer does not know the command
 |    +-- CommandDisabledError     the agent has the command disabled or blocked
 |    +-- GuestFrozenError         refused because the guest filesystems are frozen
 +-- JobError               a QMP job concluded with an error
 +-- QemuTimeoutError       a bounded wait ran out
 +-- VMStateError           the VM is not in a state that allows the request
 +-- ParameterError         a module parameter is invalid (names the parameter); nothing was changed

These are the cross-cutting errors. Errors of one concern live in its package's errors.py and
derive from these: _transport.errors (DBusError, DBusBusError, DBusCallError), _qemu.errors
(ImageInUseError), _guest.errors (ProgramNotFoundError, ProgramFailedError, ExecTimeoutError,
QuiesceError), _guest_file.errors (GuestFileError, LocalFileError, GuestToolMissingError),
_dbus_vmstate.errors (DBusVMStateError), _backup.errors (BackupError, ManifestError,
ChainInvalidError, BackupCorruptError). The snapshot concern raises the root's errors only.

Every class a failed task can name in `error_type`, and the detail fields that come with it, is
documented in plugins/doc_fragments/_errors.py (a unit test keeps the two in step).

No Ansible imports here: modules map this family to fail_json in _common.
"""

from __future__ import annotations


class QemuVMError(Exception):
    """Root of every error raised by the qemu.vm transport."""

    def details(self):
        """Structured facts for fail_json, beside the message."""
        return {}


class SocketError(QemuVMError):
    def __init__(self, address, reason):
        self.address = address
        self.reason = reason
        super().__init__(f'{address}: {reason}')

    def details(self):
        return {'socket': str(self.address)}


class SocketMissingError(SocketError):
    pass


class SocketPermissionError(SocketError):
    pass


class SocketRefusedError(SocketError):
    pass


class SocketBusyError(SocketError):
    pass


class ConnectionLostError(QemuVMError):
    def __init__(self, address, reason):
        self.address = address
        super().__init__(
            f'connection to {address} lost: {reason}')

    def details(self):
        return {'socket': str(self.address)}


class AgentNotRespondingError(QemuVMError):
    def __init__(self, address, seconds):
        self.address = address
        self.seconds = seconds
        super().__init__(
            f'guest agent on {address} did not answer guest-sync-delimited within {round(seconds, 1):g} s: '
            'QEMU accepted the connection, but the agent inside the guest is not running, '
            'not installed, or still booting')

    def details(self):
        return {'socket': str(self.address)}


class CommandError(QemuVMError):
    def __init__(self, command, error_class, desc, message=None):
        self.command = command
        self.error_class = error_class
        self.desc = desc
        super().__init__(
            message or f'{command} failed: {desc} ({error_class})')

    def details(self):
        return {'command': self.command, 'error_class': self.error_class, 'error_desc': self.desc}


class CommandNotFoundError(CommandError):
    pass


class CommandDisabledError(CommandError):
    pass


class GuestFrozenError(CommandError):
    def __init__(self, command, error_class, desc):
        super().__init__(
            command, error_class, desc,
            message=f'{command} refused: the guest filesystems are frozen ({desc}). Thaw them with '
                    'qemu.vm.qemu_guest_fsfreeze state=thawed (guest-fsfreeze-thaw) and retry')


class JobError(QemuVMError):
    def __init__(self, job_id, job_type, error):
        self.job_id = job_id
        self.job_type = job_type
        self.error = error
        super().__init__(f'{job_type} job {job_id} failed: {error}')

    def details(self):
        return {'job_id': self.job_id, 'job_type': self.job_type, 'job_error': self.error}


class QemuTimeoutError(QemuVMError):
    def __init__(self, what, seconds, hint=None):
        self.what = what
        self.seconds = seconds
        message = f'{what} did not complete within {seconds:g} s'
        if hint:
            message = f'{message}; {hint}'
        super().__init__(message)

    def details(self):
        return {'timed_out': self.what, 'timeout': self.seconds}


class VMStateError(QemuVMError):
    pass


class ParameterError(QemuVMError, ValueError):
    """A parameter is invalid; the message names it. Raised before anything changes.

    Also a ValueError, so input checks that predate the family keep working.
    """

    def __init__(self, parameter, message):
        self.parameter = parameter
        super().__init__(message)

    def details(self):
        return {'parameter': self.parameter}
