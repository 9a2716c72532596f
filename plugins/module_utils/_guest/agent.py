# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""What the guest agent offers: its version, which commands it can run now, freeze status.

No Ansible imports. Guest operations live beside it: freeze.py (filesystem freeze),
facts.py (facts), power_plan.py/power.py (power); files in the _guest_file package.
"""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandNotFoundError
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import classify_command_error


def agent_version(qga):
    return qga.info().get('version') or 'unknown'


def fsfreeze_status(qga):
    """'thawed', 'frozen' or 'error' (a thaw failed), from guest-fsfreeze-status."""
    return qga.execute('guest-fsfreeze-status')


def is_frozen(qga):
    """Whether the agent is in frozen state; False when it cannot tell (no fsfreeze support)."""
    if qga.command_state('guest-fsfreeze-status') != 'enabled':
        return False
    return fsfreeze_status(qga) == 'frozen'


def command_unavailable(qga, name):
    """None when `name` can be run now, else the error the agent would give (not raised).

    A command guest-info lists as disabled while the agent is frozen gets the
    GuestFrozenError, which tells the user how to thaw.
    """
    state = qga.command_state(name)
    if state == 'enabled':
        return None
    if state == 'missing':
        return CommandNotFoundError(
            name, 'CommandNotFound', 'not offered by the agent',
            message=f'the guest agent (qemu-ga {agent_version(qga)}) does not offer {name}: the agent is too old, or was '
                    'built without it for this guest OS')
    if is_frozen(qga):
        return classify_command_error(
            name, 'CommandNotFound', f'Command {name} has been disabled: the agent is in frozen state')
    return classify_command_error(name, 'CommandNotFound', f'Command {name} has been disabled')


def require_command(qga, name):
    error = command_unavailable(qga, name)
    if error is not None:
        raise error
