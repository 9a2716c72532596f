# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection plugin's adapter: which Ansible exception each QemuVMError becomes."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound

from ansible_collections.qemu.vm.plugins.connection.qga import Connection
from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    AgentNotRespondingError,
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    ConnectionLostError,
    GuestFrozenError,
    JobError,
    QemuTimeoutError,
    SocketBusyError,
    SocketMissingError,
    SocketPermissionError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.errors import ExecTimeoutError, ProgramNotFoundError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import (
    GuestFileMissingError,
    GuestFileTooLargeError,
    GuestIsADirectoryError,
    GuestPermissionError,
    LocalFileError,
)
from ansible_collections.qemu.vm.plugins.plugin_utils._errors import connection_error

UNREACHABLE = [
    SocketMissingError('/run/q.sock', 'no such socket'),
    SocketBusyError('/run/q.sock', 'held by another client'),
    AgentNotRespondingError('/run/q.sock', 3.0),
    ConnectionLostError('/run/q.sock', 'EOF'),
    CommandDisabledError('guest-exec', 'CommandNotFound', 'disabled'),
    CommandNotFoundError('guest-exec', 'CommandNotFound', 'not found'),
    GuestFrozenError('guest-file-open', 'GenericError', 'frozen'),
]
FAILED = [
    CommandError('guest-exec-status', 'GenericError', 'no such pid'),
    QemuTimeoutError('guest-exec-status', 5.0),
    ExecTimeoutError(['sleep', '9'], 1.0, 7, killed=True),
    JobError('j', 'backup', 'EIO'),
    VMStateError('paused'),
    GuestPermissionError('/etc/x', 'permission denied in the guest'),
    GuestFileTooLargeError('/dev/zero', '/dev/zero reports no size', 1024),
]


@pytest.mark.parametrize('error', UNREACHABLE, ids=lambda e: type(e).__name__)
def test_a_guest_that_cannot_be_used_is_unreachable(error):
    mapped = connection_error('qemu.vm.qga', error)
    assert mapped.__class__ is AnsibleConnectionFailure
    assert mapped.message == f'qemu.vm.qga: {error}'


@pytest.mark.parametrize('error', FAILED, ids=lambda e: type(e).__name__)
def test_anything_else_fails_the_task(error):
    mapped = connection_error('qemu.vm.qga', error)
    assert mapped.__class__ is AnsibleError
    assert mapped.message == f'qemu.vm.qga: {error}'


def test_no_shell_is_unreachable_and_says_why():
    mapped = connection_error('qemu.vm.qga', ProgramNotFoundError('/bin/sh', 'No such file or directory'))
    assert mapped.__class__ is AnsibleConnectionFailure
    assert mapped.message.endswith('(is this a POSIX guest with /bin/sh?)')


def test_a_socket_denied_on_the_controller_does_not_suggest_become():
    # become acts inside the guest, not on the controller where the plugin opens the socket
    mapped = connection_error('qemu.vm.qga', SocketPermissionError('/run/q.sock', 'permission denied'))
    assert mapped.__class__ is AnsibleConnectionFailure
    assert mapped.message.startswith('qemu.vm.qga: /run/q.sock: permission denied')
    assert 'become acts inside the guest' in mapped.message
    assert 'become: true' not in mapped.message


def test_a_missing_guest_file_is_not_found_only_when_asked():
    missing = GuestFileMissingError('/etc/nope', '/etc/nope does not exist in the guest')
    assert connection_error('qemu.vm.qga', missing, missing_file=True).__class__ is AnsibleFileNotFound
    assert connection_error('qemu.vm.qga', missing).__class__ is AnsibleError
    other = GuestIsADirectoryError('/etc/x', 'is a directory')
    assert connection_error('qemu.vm.qga', other, missing_file=True).__class__ is AnsibleError


def test_a_local_file_fails_the_task_even_when_missing():
    local = LocalFileError('/etc/x', 'cannot read /tmp/gone: No such file or directory')
    assert connection_error('qemu.vm.qga', local, missing_file=True).__class__ is AnsibleError


def test_the_connection_plugin_names_itself_as_before():
    assert Connection.transport == 'qemu.vm.qga'
