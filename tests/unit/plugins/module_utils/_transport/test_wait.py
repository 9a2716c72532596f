# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounds and the one wait helper."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, QemuTimeoutError
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import MAX_SECONDS, Deadline, check_seconds, wait_until


@pytest.mark.parametrize('value', [float('nan'), float('inf'), float('-inf'), 0, -1, MAX_SECONDS + 1, 'abc', None, 1e308])
def test_bad_durations_name_the_option(value):
    with pytest.raises(ParameterError) as caught:
        check_seconds('freeze_timeout', value)
    assert str(caught.value).startswith('freeze_timeout must be')
    assert caught.value.details() == {'parameter': 'freeze_timeout'}


@pytest.mark.parametrize('value, expected', [(0.001, 0.001), ('30', 30.0), (MAX_SECONDS, MAX_SECONDS), (5, 5.0)])
def test_good_durations(value, expected):
    assert check_seconds('timeout', value) == expected


def test_wait_until_returns_the_first_truthy_answer():
    answers = iter([None, 0, '', 'yes', 'late'])
    assert wait_until(lambda: next(answers), Deadline(5), 'x', interval=0) == 'yes'


def test_wait_until_times_out_with_the_hint():
    calls = []
    with pytest.raises(QemuTimeoutError) as caught:
        wait_until(lambda: calls.append(1), Deadline(0.05), 'the thing', hint=lambda: 'still not', interval=0.01)
    assert str(caught.value) == 'the thing did not complete within 0.05 s; still not'
    assert len(calls) >= 2  # polled until the deadline, and once more at it


def test_wait_until_lets_the_predicates_errors_through():
    def broken():
        raise ParameterError('x', 'boom')
    with pytest.raises(ParameterError):
        wait_until(broken, Deadline(5), 'x')
