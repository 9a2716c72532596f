# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Option checks shared by snapshots and backups: ages and device lists."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._util.params import check_devices, parse_age

DAY = 86400


@pytest.mark.parametrize('text, seconds', [('14d', 14 * DAY), ('12h', 43200), ('1d12h', DAY + 43200),
                                           ('90m', 5400), ('2w', 14 * DAY), ('30s', 30), ('1D', DAY)])
def test_ages(text, seconds):
    assert parse_age(text) == seconds


@pytest.mark.parametrize('text', ['', '14', 'd', '14 days', '-1d', '1.5d', '0d', '1d 2h', 'h12', None])
def test_bad_ages(text):
    with pytest.raises(ParameterError) as caught:
        parse_age(text)
    assert 'max_age' in str(caught.value) and caught.value.parameter == 'max_age'


def test_a_bad_age_names_the_option_it_came_from():
    with pytest.raises(ParameterError) as caught:
        parse_age('soon', option='older_than')
    assert str(caught.value).startswith("older_than 'soon' is not an age")
    assert caught.value.details() == {'parameter': 'older_than'}


def test_devices_are_deduplicated_and_not_empty():
    assert check_devices(['b', 'a', 'b']) == ['b', 'a']
    assert check_devices(None) is None
    for bad in ([], ['']):
        with pytest.raises(ParameterError) as caught:
            check_devices(bad)
        assert caught.value.parameter == 'devices'
