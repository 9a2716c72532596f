# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The guest clock through the guest agent (the logic of qemu_guest_time).

The decisions are pure functions without I/O (parse_time, needs_time_set, ClockReading.drift,
expected_guest_ns), unit-tested on their own; read_clock asks the agent. No Ansible imports.
"""

from __future__ import annotations

import datetime
import decimal
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, ParameterError

NS = 10 ** 9
#: guest-set-time refuses moments outside these years.
TIME_YEARS = (1970, 2069)


def parse_time(value):
    """Nanoseconds since the epoch from `time`: epoch seconds, or ISO 8601 with a UTC offset or Z."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        number = decimal.Decimal(text)
    except decimal.InvalidOperation:
        number = None
    if number is not None:
        stamp = int(number * NS) if number.is_finite() and abs(number) < 10 ** 10 else None
    else:
        iso = text[:-1] + '+00:00' if text[-1:] in ('Z', 'z') else text
        try:
            moment = datetime.datetime.fromisoformat(iso)
        except ValueError:
            raise ParameterError('time', f'time: {text!r} is neither seconds since the epoch nor an ISO 8601 date '
                                         'and time such as 2026-01-01T02:00:00Z')
        if moment.tzinfo is None:
            raise ParameterError('time', f'time: {text!r} has no UTC offset; add Z or +HH:MM')
        delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        stamp = (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000
    year = None if stamp is None else datetime.datetime.fromtimestamp(stamp // NS, tz=datetime.timezone.utc).year
    if year is None or not TIME_YEARS[0] <= year <= TIME_YEARS[1]:
        raise ParameterError('time', f'time: {text!r} is outside the years {TIME_YEARS[0]}-{TIME_YEARS[1]} the guest agent accepts')
    return stamp


def check_max_drift(value):
    if value < 0:
        raise ParameterError('max_drift', f'max_drift must be 0 or more seconds, got {value:g}')
    return value


def needs_time_set(drift_ns, max_drift):
    """Whether a guest clock `drift_ns` off its target must be set (more than `max_drift` seconds)."""
    return abs(drift_ns) > max_drift * NS


class ClockReading:
    """One guest-get-time, with the host clock read around it."""

    def __init__(self, guest_ns, host_before_ns, host_after_ns):
        self.guest_ns = guest_ns
        self.host_ns = (host_before_ns + host_after_ns) // 2
        self.round_trip_ns = host_after_ns - host_before_ns

    def drift(self, target_ns=None):
        """Guest minus target (the host clock by default), in ns; positive when the guest is ahead."""
        return self.guest_ns - (self.host_ns if target_ns is None else target_ns)


def read_clock(qga):
    before = time.time_ns()
    guest = qga.execute('guest-get-time')
    return ClockReading(guest, before, time.time_ns())


def expected_guest_ns(moment_ns, set_at_ns, host_ns):
    """Where a guest clock set to `moment_ns` at host time `set_at_ns` should be at host time `host_ns`."""
    return moment_ns + (host_ns - set_at_ns)


def explain_time_error(exc):
    """The agent's reason for a failed guest-set-time, with what it means for the guest."""
    if 'not currently supported' in (exc.desc or ''):
        return CommandError(exc.command, exc.error_class, exc.desc, message=(
            f'{exc.command} failed in the guest: {exc.desc} ({exc.error_class}): on Linux the agent needs /sbin/hwclock in the guest to set the '
            'clock (install util-linux or busybox\'s hwclock)'))
    return exc


def hwclock_failed(desc):
    """guest-set-time set the clock, then `hwclock -w` failed (the hardware clock was not written)."""
    return 'hwclock' in (desc or '')


def seconds(ns):
    return round(ns / NS, 3)


def iso8601(ns):
    stamp = datetime.datetime.fromtimestamp(ns // NS, tz=datetime.timezone.utc)
    return stamp.strftime('%Y-%m-%dT%H:%M:%S') + f'.{(ns % NS) // 10 ** 6:03d}Z'
