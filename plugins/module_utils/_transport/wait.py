# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Bounded waiting: one Deadline type and one poll helper, instead of hand-written loops.

No Ansible imports.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional, TypeVar

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, QemuTimeoutError

T = TypeVar('T')

#: The longest bound any option may ask for (one day): longer is a typo, not a plan.
MAX_SECONDS = 86400.0


def check_seconds(name: str, value, maximum: float = MAX_SECONDS) -> float:
    """`value` as a finite, positive number of seconds no larger than `maximum`, or ParameterError naming `name`."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ParameterError(name, f'{name} must be a number of seconds, got {value!r}') from None
    if not math.isfinite(seconds) or seconds <= 0 or seconds > maximum:
        raise ParameterError(name, f'{name} must be a finite number of seconds greater than 0 and at most {maximum:g}, '
                                   f'got {value!r}')
    return seconds


class Deadline:
    """One bound shared by several waits."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._end


_RAISE = object()


def wait_until(predicate: Callable[[], Optional[T]], deadline: Deadline, what: str,
               hint=None, interval: float = 0.25, max_interval: Optional[float] = None,
               sleep: Callable[[float], object] = time.sleep, default=_RAISE) -> T:
    """Call predicate() until it returns something truthy, and return that.

    Between calls, sleep `interval` (0 when the predicate blocks for its own slice),
    doubling up to `max_interval` when one is given (fast first, then calmer).
    When `deadline` passes first: `default` if one is given, else QemuTimeoutError for
    `what`, with `hint` (a string, or a function giving one) appended.
    Exceptions from the predicate propagate: they are answers, not reasons to retry.
    """
    delay = interval
    while True:
        result = predicate()
        if result:
            return result
        if deadline.expired:
            if default is not _RAISE:
                return default
            raise QemuTimeoutError(what, deadline.seconds, hint() if callable(hint) else hint)
        if delay > 0:
            sleep(min(delay, max(deadline.remaining(), 0.001)))
        if max_interval is not None:
            delay = min(delay * 2, max_interval)
