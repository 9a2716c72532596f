# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Errors of guest files, in the QemuVMError family (_errors). One class per kind of failure, so a
task tells them apart by `error_type`; every one names the guest file (`guest_path`).

  QemuVMError
   +-- GuestFileError               a guest file cannot be read, written, looked up or changed (other reasons)
        +-- GuestFileMissingError        the guest file does not exist
        +-- GuestDirectoryMissingError   the directory that would hold it does not exist
        +-- GuestPermissionError         the guest (its permissions, a security policy) forbids it
        +-- GuestIsADirectoryError       the path is a directory
        +-- GuestNotADirectoryError      a component of the path is not a directory
        +-- GuestNotAFileError           the path is something else than a regular file (device, pipe, ...)
        +-- GuestDanglingLinkError       the path is a symbolic link to nothing (follow=true)
        +-- GuestReadOnlyError           the guest filesystem is read-only
        +-- GuestNoSpaceError            the guest filesystem is full (or the quota)
        +-- GuestToolMissingError        guest-exec cannot start a POSIX tool the operation needs
        +-- GuestExecUnavailableError    the operation needs guest-exec, which the agent does not offer
        +-- GuestFileChangedError        something else changed the path while we worked on it
        +-- GuestFileTooLargeError       the file is larger than the read may be (max_size, no size)
        +-- GuestFileTimeoutError        the transfer ran past its overall bound
        +-- LocalFileError               the file on this side (controller or managed host) cannot be used
             +-- SourceFileError              src cannot be read
             +-- LocalNoSpaceError            not enough free space where the fetched file goes

No Ansible imports here.
"""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError


class GuestFileError(QemuVMError):
    """A guest file cannot be read, written, looked up or changed."""

    def __init__(self, path, message):
        self.path = path
        super().__init__(message)

    def details(self):
        # Not 'path': AnsibleModule would add the stat of a same-named file on the managed host.
        return {'guest_path': self.path}

    def reworded(self, message, path=None):
        """The same error (same class and details) with another message: the context a caller adds."""
        self.args = (message,)
        if path is not None:
            self.path = path
        return self


class GuestFileMissingError(GuestFileError):
    """The guest file does not exist."""


class GuestDirectoryMissingError(GuestFileError):
    """The guest directory that would hold the file does not exist."""


class GuestPermissionError(GuestFileError):
    """The guest forbids the operation (permissions, a read-only attribute, a security policy)."""


class GuestIsADirectoryError(GuestFileError):
    """The guest path is a directory, not a file."""


class GuestNotADirectoryError(GuestFileError):
    """A component of the guest path is not a directory."""


class GuestNotAFileError(GuestFileError):
    """The guest path is not a regular file (a device, a pipe, a socket)."""


class GuestDanglingLinkError(GuestFileError):
    """The guest path is a symbolic link that points to nothing."""


class GuestReadOnlyError(GuestFileError):
    """The guest filesystem is read-only."""


class GuestNoSpaceError(GuestFileError):
    """The guest filesystem is full (or the user's quota is)."""


class GuestToolMissingError(GuestFileError):
    """guest-exec could not start a program: it is not installed in the guest (or no POSIX guest)."""

    def __init__(self, program, desc, path=None):
        self.program = program
        super().__init__(path, f'the guest has no usable {program} program for guest-exec ({desc})')

    def details(self):
        details = super().details()
        details['program'] = self.program
        return details


class GuestExecUnavailableError(GuestFileError):
    """The operation needs guest-exec (POSIX tools in the guest), which the agent does not offer."""


class GuestFileChangedError(GuestFileError):
    """Something else (a guest user, a program) changed the path while the task worked on it; nothing was replaced."""


class GuestFileTooLargeError(GuestFileError):
    """The guest file holds more than may be read: over max_size, or no size reported and over the default bound."""

    def __init__(self, path, message, size_limit):
        self.size_limit = size_limit
        super().__init__(path, message)

    def details(self):
        details = super().details()
        details['size_limit'] = self.size_limit
        return details


class GuestFileTimeoutError(GuestFileError):
    """A transfer ran past its overall bound (the timeout plus a second per MiB); it was stopped."""


class LocalFileError(GuestFileError):
    """The file on this side (the controller or managed host) cannot be read or written."""


class SourceFileError(LocalFileError):
    """src cannot be read (missing, a directory, not a regular file, no permission)."""


class LocalNoSpaceError(LocalFileError):
    """Not enough free space where a fetched file would be written; nothing was written."""

    def __init__(self, path, message, bytes_needed, bytes_free):
        self.bytes_needed = bytes_needed
        self.bytes_free = bytes_free
        super().__init__(path, message)

    def details(self):
        details = super().details()
        details.update({'bytes_needed': self.bytes_needed, 'bytes_free': self.bytes_free})
        return details


#: The agent's and the POSIX tools' error texts (strerror), and the class each one means.
_BY_TEXT = (
    ('No such file or directory', GuestFileMissingError),
    ('Permission denied', GuestPermissionError),
    ('Operation not permitted', GuestPermissionError),
    ('Is a directory', GuestIsADirectoryError),
    ('Not a directory', GuestNotADirectoryError),
    ('Read-only file system', GuestReadOnlyError),
    ('No space left on device', GuestNoSpaceError),
    ('Disk quota exceeded', GuestNoSpaceError),
    ('Illegal seek', GuestNotAFileError),
)


def class_of(text):
    """The GuestFileError subclass an error text from the guest means (GuestFileError when none)."""
    for needle, cls in _BY_TEXT:
        if needle in (text or ''):
            return cls
    return GuestFileError
