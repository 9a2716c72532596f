# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This plugin_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The second adapter of the QemuVMError family: for plugins that run on the controller.

Modules turn a QemuVMError into fail_json in one place (module_utils/_common.run_module);
a connection plugin raises Ansible's exceptions instead, and `connection_error` says which:

* AnsibleConnectionFailure (the host is unreachable) when the guest cannot be used at all: its
  socket, an agent that does not answer or went away, the commands a connection needs blocked
  or unknown, frozen filesystems, no /bin/sh to run;
* AnsibleFileNotFound for a guest file that does not exist, when asked (fetch);
* AnsibleError (the task failed) for anything else, a local file included.
"""

from __future__ import annotations

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    AgentNotRespondingError,
    CommandDisabledError,
    CommandNotFoundError,
    ConnectionLostError,
    GuestFrozenError,
    SocketError,
    SocketPermissionError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.errors import ProgramNotFoundError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import GuestFileMissingError, LocalFileError

#: Errors after which the host cannot be used at all: Ansible reports them as unreachable.
UNREACHABLE = (SocketError, AgentNotRespondingError, ConnectionLostError, CommandDisabledError,
               CommandNotFoundError, GuestFrozenError)


def connection_error(plugin, exc, missing_file=False):
    """The Ansible exception for the QemuVMError `exc` raised under the connection plugin `plugin`.

    With `missing_file`, a guest file that does not exist (GuestFileMissingError) is AnsibleFileNotFound.
    """
    message = f'{plugin}: {exc}'
    if isinstance(exc, LocalFileError):
        return AnsibleError(message)
    if missing_file and isinstance(exc, GuestFileMissingError):
        return AnsibleFileNotFound(message)
    if isinstance(exc, ProgramNotFoundError):
        return AnsibleConnectionFailure(f'{message} (is this a POSIX guest with /bin/sh?)')
    if isinstance(exc, SocketPermissionError):
        return AnsibleConnectionFailure(f'{message} (the plugin runs on the controller as the user running Ansible; '
                                        'become acts inside the guest and does not help here)')
    if isinstance(exc, UNREACHABLE):
        return AnsibleConnectionFailure(message)
    return AnsibleError(message)
