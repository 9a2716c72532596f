# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Checks of module options that more than one concern takes (snapshots and backups):
`parse_age` (max_age) and `check_devices` (devices). Pure; they raise ParameterError
naming the option.

No Ansible imports here.
"""

from __future__ import annotations

import re

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError

_AGE_PART = re.compile(r'([0-9]+)([smhdw])')
_AGE_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}


def parse_age(text: str | None, option: str = 'max_age') -> int:
    """'14d', '12h', '1d12h', '90m', '2w', '30s' -> seconds."""
    raw = (text or '').strip().lower()
    parts = _AGE_PART.findall(raw)
    if not raw or ''.join(n + u for n, u in parts) != raw:
        raise ParameterError(
            option, f'{option} {text!r} is not an age: use a number with a unit s, m, h, d or w, for example 14d, 12h or '
            '1d12h')
    seconds = sum(int(n) * _AGE_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ParameterError(option, f'{option} must be longer than zero, got {text!r}')
    return seconds


def check_devices(devices: list | None, option: str = 'devices') -> list | None:
    """Disk names (device ids or node names) as given: non-empty, no duplicates kept, order preserved."""
    if devices is None:
        return None
    result = []
    for name in devices:
        if not name:
            raise ParameterError(option, f'{option} must not contain empty names')
        if name not in result:
            result.append(name)
    if not result:
        raise ParameterError(
            option, f'{option} must name at least one disk; omit it to use every writable disk')
    return result
