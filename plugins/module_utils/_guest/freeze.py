# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Filesystem freeze through the guest agent: checks before freezing, freeze that never leaves
the guest frozen on failure, thaw. No Ansible imports; qemu_guest_fsfreeze and _quiesce use it.
"""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    GuestFrozenError,
    ParameterError,
    QemuTimeoutError,
    QemuVMError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import fsfreeze_status, require_command


def normalize_mountpoints(mountpoints):
    """Absolute paths without trailing slashes, duplicates dropped (the agent matches exactly).

    Raises ParameterError naming the bad entry.
    """
    result = []
    for entry in mountpoints or ():
        if not isinstance(entry, str) or not entry.startswith('/'):
            raise ParameterError('mountpoints', f'mountpoints: {entry!r} is not an absolute path in the guest')
        path = entry.rstrip('/') or '/'
        if path not in result:
            result.append(path)
    return result


def guest_mountpoints(qga):
    """The guest's mounted filesystems (guest-get-fsinfo), or None when the agent cannot say."""
    if qga.command_state('guest-get-fsinfo') != 'enabled':
        return None
    try:
        return sorted(set(fs.get('mountpoint') for fs in qga.execute('guest-get-fsinfo') if fs.get('mountpoint')))
    except CommandError:
        return None


def check_mountpoints(qga, mountpoints):
    """Fail before freezing when a requested mountpoint is not mounted in the guest."""
    mounted = guest_mountpoints(qga)
    if mounted is None:
        return
    missing = [m for m in mountpoints if m not in mounted]
    if missing:
        raise VMStateError(
            'mountpoints: {0} {1} not a mounted filesystem in the guest (mounted: {2}); nothing was frozen'.format(
                ', '.join(missing), 'is' if len(missing) == 1 else 'are', ', '.join(mounted) or 'none'))


def require_freeze_support(qga, mountpoints):
    require_command(qga, 'guest-fsfreeze-status')
    require_command(qga, 'guest-fsfreeze-thaw')
    require_command(qga, 'guest-fsfreeze-freeze-list' if mountpoints else 'guest-fsfreeze-freeze')


def freeze(qga, mountpoints=None):
    """Freeze the guest filesystems (or only `mountpoints`); return how many were frozen.

    The agent thaws everything itself when freezing fails; this checks that it
    did (and thaws if not) before raising, so a failed freeze never leaves the
    guest frozen. A freeze that outlives our bound is followed by a thaw too.
    """
    command = 'guest-fsfreeze-freeze-list' if mountpoints else 'guest-fsfreeze-freeze'
    arguments = {'mountpoints': list(mountpoints)} if mountpoints else None
    try:
        count = qga.execute(command, arguments)
    except QemuTimeoutError as exc:
        raise QemuTimeoutError(exc.what, exc.seconds, f'then {_thaw_after_failure(qga)}')
    except (GuestFrozenError, CommandNotFoundError, CommandDisabledError):
        raise
    except CommandError as exc:
        raise CommandError(
            command, exc.error_class, exc.desc,
            message=f'{command} failed in the guest: {exc.desc} ({exc.error_class}); {_thaw_after_failure(qga)}')
    if mountpoints and count == 0:
        # Nothing matched: the agent did not enter frozen state, but make sure.
        raise VMStateError('mountpoints: none of {0} could be frozen (the agent froze 0 filesystems: not '
                           'mounted, or not freezable); {1}'.format(', '.join(mountpoints), _thaw_after_failure(qga)))
    return count


def _thaw_after_failure(qga):
    """Make sure the guest is not left frozen; say what was found, for the error message."""
    try:
        status = fsfreeze_status(qga)
        if status == 'thawed':
            return 'the guest filesystems are thawed (guest-fsfreeze-status: thawed)'
        thawed = qga.execute('guest-fsfreeze-thaw', timeout=qga.timeout)
        return f'guest-fsfreeze-thaw was sent and thawed {thawed} filesystem(s)'
    except QemuVMError as exc:
        return (f'COULD NOT CONFIRM THE GUEST IS THAWED ({exc}): run qemu.vm.qemu_guest_fsfreeze '
                'state=thawed')


def thaw(qga):
    """Thaw the guest filesystems; return how many were thawed."""
    return qga.execute('guest-fsfreeze-thaw')
