# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Guest control through the guest agent: what the agent offers, filesystem freeze, facts.

No Ansible imports: the modules qemu_guest_fsfreeze and qemu_guest_facts are thin
wrappers around what is here; power transitions live in _power.py.
"""

from __future__ import annotations

import datetime
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    GuestFrozenError,
    QemuTimeoutError,
    QemuVMError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._transport import classify_command_error

# -- what the agent offers --------------------------------------------------------------


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
            message='the guest agent (qemu-ga {0}) does not offer {1}: the agent is too old, or was '
                    'built without it for this guest OS'.format(agent_version(qga), name))
    if is_frozen(qga):
        return classify_command_error(
            name, 'CommandNotFound', 'Command {0} has been disabled: the agent is in frozen state'.format(name))
    return classify_command_error(name, 'CommandNotFound', 'Command {0} has been disabled'.format(name))


def require_command(qga, name):
    error = command_unavailable(qga, name)
    if error is not None:
        raise error


def _dashes_to_underscores(value):
    """Agent replies use dashed keys; Ansible facts use underscores."""
    if isinstance(value, dict):
        return dict((str(k).replace('-', '_'), _dashes_to_underscores(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_dashes_to_underscores(v) for v in value]
    return value


# -- filesystem freeze ------------------------------------------------------------------


def normalize_mountpoints(mountpoints):
    """Absolute paths without trailing slashes, duplicates dropped (the agent matches exactly).

    Raises ValueError naming the bad entry.
    """
    result = []
    for entry in mountpoints or ():
        if not isinstance(entry, str) or not entry.startswith('/'):
            raise ValueError('mountpoints: {0!r} is not an absolute path in the guest'.format(entry))
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
        raise QemuTimeoutError(exc.what, exc.seconds, 'then {0}'.format(_thaw_after_failure(qga)))
    except (GuestFrozenError, CommandNotFoundError, CommandDisabledError):
        raise
    except CommandError as exc:
        raise CommandError(
            command, exc.error_class, exc.desc,
            message='{0} failed in the guest: {1} ({2}); {3}'.format(
                command, exc.desc, exc.error_class, _thaw_after_failure(qga)))
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
        return 'guest-fsfreeze-thaw was sent and thawed {0} filesystem(s)'.format(thawed)
    except QemuVMError as exc:
        return ('COULD NOT CONFIRM THE GUEST IS THAWED ({0}): run qemu.vm.qemu_guest_fsfreeze '
                'state=thawed'.format(exc))


def thaw(qga):
    """Thaw the guest filesystems; return how many were thawed."""
    return qga.execute('guest-fsfreeze-thaw')


# -- facts ------------------------------------------------------------------------------

#: gather_subset name -> (agent command, fact name). 'agent' (guest-info) is always read.
FACT_SUBSETS = (
    ('os', 'guest-get-osinfo', 'os'),
    ('hostname', 'guest-get-host-name', 'hostname'),
    ('network', 'guest-network-get-interfaces', 'network_interfaces'),
    ('filesystems', 'guest-get-fsinfo', 'filesystems'),
    ('disks', 'guest-get-disks', 'disks'),
    ('users', 'guest-get-users', 'users'),
    ('timezone', 'guest-get-timezone', 'timezone'),
    ('time', 'guest-get-time', 'time'),
    ('vcpus', 'guest-get-vcpus', 'vcpus'),
    ('fsfreeze', 'guest-fsfreeze-status', 'fsfreeze_status'),
)
SUBSET_NAMES = ('agent',) + tuple(s[0] for s in FACT_SUBSETS)
MIN_SUBSETS = ('agent', 'os', 'hostname', 'fsfreeze')


def resolve_gather_subset(requested):
    """The subsets to gather, in a stable order, from gather_subset as Ansible's setup reads it.

    `all`, `min`, subset names, and `!name` to leave one out. A list of only
    exclusions starts from `all`; `!all` starts from `min`. `agent` is always
    gathered. Raises ValueError naming an unknown entry.
    """
    valid = set(SUBSET_NAMES) | set(['all', 'min'])
    include, exclude = set(), set()
    exclude_all = False
    for raw in requested or ['all']:
        entry = str(raw).strip()
        negate = entry.startswith('!')
        name = entry[1:] if negate else entry
        if name not in valid:
            raise ValueError('gather_subset: unknown subset {0!r}; valid: {1}'.format(
                entry, ', '.join(['all', 'min'] + list(SUBSET_NAMES))))
        if negate:
            if name == 'all':
                exclude_all = True
            else:
                exclude.update(MIN_SUBSETS if name == 'min' else [name])
        else:
            include.update(SUBSET_NAMES if name == 'all' else MIN_SUBSETS if name == 'min' else [name])
    if exclude_all:
        include.update(MIN_SUBSETS)
    elif not include:
        include.update(SUBSET_NAMES)
    selected = (include - exclude) | set(['agent'])
    return [name for name in SUBSET_NAMES if name in selected]


def _transform(subset, reply):
    if subset == 'hostname':
        return reply.get('host-name')
    if subset == 'time':
        # guest-get-time: nanoseconds since the epoch, by the guest's clock.
        host_ns = time.time_ns()
        stamp = datetime.datetime.fromtimestamp(reply // 10 ** 9, tz=datetime.timezone.utc)
        return {
            'epoch_ns': reply,
            'iso8601': stamp.strftime('%Y-%m-%dT%H:%M:%SZ'),
            'offset_from_host_ms': int(round((reply - host_ns) / 1e6)),
        }
    return _dashes_to_underscores(reply)


def _skip_reason(error):
    if isinstance(error, GuestFrozenError):
        return 'frozen'
    if isinstance(error, CommandDisabledError):
        return 'disabled'
    if isinstance(error, CommandNotFoundError):
        return 'missing'
    return 'failed'


def gather_facts(qga, subsets):
    """The qemu_guest facts for `subsets` (from resolve_gather_subset).

    A command the agent lacks, has disabled, or refuses because the guest is
    frozen (or that fails in the guest) is skipped and listed in `skipped`.
    """
    info = qga.info()
    commands = info.get('supported_commands', [])
    facts = {
        'agent': {
            'version': info.get('version'),
            'enabled_commands': sorted(c['name'] for c in commands if c.get('enabled', True)),
            'disabled_commands': sorted(c['name'] for c in commands if not c.get('enabled', True)),
        },
        'gather_subset': list(subsets),
        'skipped': [],
    }
    for subset, command, fact in FACT_SUBSETS:
        if subset not in subsets:
            continue
        error = command_unavailable(qga, command)
        if error is None:
            try:
                facts[fact] = _transform(subset, qga.execute(command))
                continue
            except CommandError as exc:
                error = exc
        facts['skipped'].append({'subset': subset, 'command': command, 'reason': _skip_reason(error), 'msg': str(error)})
    return facts
