# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest.clock decisions, without a guest: pure functions only.
The real agent's behaviour is covered in tests/system/test_guest_admin.py."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._guest_admin import clock

NS = 10 ** 9


@pytest.mark.parametrize('value, expected', [
    (None, None),
    ('0', 0),
    ('1700000000.5', 1700000000 * NS + NS // 2),
    ('2026-01-01T02:00:00Z', 1767232800 * NS),
    ('2026-01-01T03:00:00+01:00', 1767232800 * NS),
    ('2026-01-01 02:00:00.250000+00:00', 1767232800 * NS + NS // 4),
])
def test_parse_time(value, expected):
    assert clock.parse_time(value) == expected


@pytest.mark.parametrize('value, match', [
    ('yesterday', 'neither'),
    ('2026-01-01T02:00:00', 'no UTC offset'),
    ('2070-01-01T00:00:00Z', 'outside the years'),
    ('-5', 'outside the years'),
    ('nan', 'outside the years'),
    ('1e300', 'outside the years'),
    ('9999999999', 'outside the years'),
    ('-9999999999', 'outside the years'),
])
def test_parse_time_errors_name_time(value, match):
    with pytest.raises(ParameterError, match=match) as info:
        clock.parse_time(value)
    assert info.value.parameter == 'time'


def test_needs_time_set_is_strictly_beyond_max_drift():
    assert not clock.needs_time_set(0, 1.0)
    assert not clock.needs_time_set(NS, 1.0)
    assert clock.needs_time_set(NS + 1, 1.0)
    assert clock.needs_time_set(-3600 * NS, 1.0)
    assert clock.needs_time_set(1, 0)
    with pytest.raises(ParameterError):
        clock.check_max_drift(-1)


def test_clock_reading_uses_the_host_midpoint():
    reading = clock.ClockReading(guest_ns=1000 * NS, host_before_ns=1100 * NS, host_after_ns=1100 * NS + 20)
    assert reading.host_ns == 1100 * NS + 10
    assert reading.round_trip_ns == 20
    assert reading.drift() == -100 * NS - 10
    assert reading.drift(1000 * NS) == 0


def test_expected_guest_ns_runs_on_from_the_moment_set():
    assert clock.expected_guest_ns(500, 1000, 1300) == 800


def test_time_error_readers():
    assert clock.hwclock_failed('hwclock failed to set hardware clock to system time')
    unsupported = CommandError('guest-set-time', 'GenericError', 'this feature or command is not currently supported')
    assert '/sbin/hwclock' in str(clock.explain_time_error(unsupported))
    other = CommandError('guest-set-time', 'GenericError', 'Invalid time')
    assert clock.explain_time_error(other) is other


def test_iso8601_and_seconds():
    assert clock.iso8601(1767232800 * NS + 5 * 10 ** 6) == '2026-01-01T02:00:00.005Z'
    assert clock.seconds(-3600 * NS - 12345678) == -3600.012
