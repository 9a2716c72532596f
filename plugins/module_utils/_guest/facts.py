# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Guest facts through the guest agent: which subsets, gathered command by command; what the
agent cannot give (missing, disabled, frozen) is listed, not fatal. No Ansible imports.
"""

from __future__ import annotations

import datetime
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    GuestFrozenError,
    ParameterError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import command_unavailable


def _dashes_to_underscores(value):
    """Agent replies use dashed keys; Ansible facts use underscores."""
    if isinstance(value, dict):
        return dict((str(k).replace('-', '_'), _dashes_to_underscores(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_dashes_to_underscores(v) for v in value]
    return value


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
    gathered. Raises ParameterError naming an unknown entry.
    """
    valid = set(SUBSET_NAMES) | set(['all', 'min'])
    include, exclude = set(), set()
    exclude_all = False
    for raw in requested or ['all']:
        entry = str(raw).strip()
        negate = entry.startswith('!')
        name = entry[1:] if negate else entry
        if name not in valid:
            raise ParameterError('gather_subset', 'gather_subset: unknown subset {0!r}; valid: {1}'.format(
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
