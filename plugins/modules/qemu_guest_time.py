#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_guest_time
short_description: Set a guest's clock to the host's (or to a given moment) through the QEMU guest agent
version_added: 0.2.0
description:
  - Reads the guest clock (C(guest-get-time)) with the host clock read around it, and when the guest is more than
    O(max_drift) seconds off, sets it (C(guest-set-time) with an explicit time) and reads it again.
    This fixes a clock that jumped or stood still across a suspend, a snapshot load or a migration.
  - By default the target is the host's clock (of the host that runs the module, where QEMU runs), corrected for
    half the measured agent round trip. With O(time) it is that moment instead.
  - The agent's C(guest-set-time) without a time only reloads the guest clock from its hardware clock, which is not
    the host's time; this module never does that.
  - The agent also writes the new time to the guest's hardware clock (C(hwclock -w)). When only that step fails, the
    guest clock is set anyway and the task succeeds with a warning.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  max_drift:
    description:
      - Seconds the guest clock may be off its target before it is set. V(0) sets it on every run.
      - The measurement includes the agent round trip (milliseconds, more under software emulation).
    type: float
    default: 1.0
  time:
    description:
      - Set the guest clock to this moment instead of the host's time. Seconds since the epoch, or an ISO 8601 date
        and time with a UTC offset, such as V(2026-01-01T02:00:00Z). The agent accepts the years 1970 to 2069.
      - The guest clock keeps running from there, so a later run with the same O(time) sets it again once more than
        O(max_drift) has passed.
    type: str
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
attributes:
  idempotent:
    support: full
    details:
      - A clock within O(max_drift) is unchanged.
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Shows the guest time before and after.
notes:
  - Sockets - requires O(qga); O(qmp) is optional, used only to tell a silent agent from a VM that is not running.
  - Only the O(qga) socket is used; O(qmp) is accepted and ignored.
  - The guest clock's drift is also in the facts of M(qemu.vm.qemu_guest_facts) (C(time.offset_from_host_ms)).
  - A guest that runs NTP may move its clock again afterwards.
seealso:
  - module: qemu.vm.qemu_guest_facts
'''

EXAMPLES = r'''
- name: Fix the guest clock after loading a snapshot
  qemu.vm.qemu_guest_time:
    qga: /run/qemu/web1/qga.sock

- name: Only when it is more than a minute off
  qemu.vm.qemu_guest_time:
    qga: /run/qemu/web1/qga.sock
    max_drift: 60

- name: Travel in time to test certificate expiry
  qemu.vm.qemu_guest_time:
    qga: /run/qemu/web1/qga.sock
    time: "2030-01-01T00:00:00Z"
'''

RETURN = r'''
drift_before:
  description: Seconds the guest clock was off its target before the task (guest minus target; positive when ahead).
  returned: always
  type: float
  sample: -3600.012
drift_after:
  description:
    - Seconds the guest clock is off its target after the task (measured again when it was set).
    - In check mode, or when nothing was set, the same as RV(drift_before).
  returned: always
  type: float
  sample: 0.004
guest_time:
  description: The guest clock after the task, ISO 8601 in UTC (in check mode, the one read before).
  returned: always
  type: str
  sample: '2026-11-30T21:30:00.123Z'
target:
  description: V(host), or the O(time) given, as ISO 8601 in UTC.
  returned: always
  type: str
  sample: host
round_trip_ms:
  description: The agent round trip of the first reading, in milliseconds (the drift is accurate to about half of it).
  returned: always
  type: int
  sample: 12
'''

import time
from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._common import build_module, qga_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, GuestFrozenError
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import require_command
from ansible_collections.qemu.vm.plugins.module_utils._guest_admin.clock import (
    check_max_drift,
    expected_guest_ns,
    explain_time_error,
    hwclock_failed,
    iso8601,
    needs_time_set,
    parse_time,
    read_clock,
    seconds,
)

ARGUMENT_SPEC = dict(
    max_drift=dict(type='float', default=1.0),
    time=dict(type='str'),
)


class TimeRequest(NamedTuple):
    max_drift: float  # seconds
    target: int | None  # ns since the epoch; None: the host's clock


def parse_request(params):
    return TimeRequest(check_max_drift(params['max_drift']), parse_time(params['time']))


def set_time(module, qga, before, target):
    """guest-set-time to the target (the host's clock when None); returns (moment, sent) in ns."""
    sent = time.time_ns() + before.round_trip_ns // 2  # when the agent will set it, about
    moment = sent if target is None else target
    try:
        qga.execute('guest-set-time', {'time': moment})
    except GuestFrozenError:
        raise
    except CommandError as exc:
        if not hwclock_failed(exc.desc):
            raise explain_time_error(exc)
        module.warn('the guest clock was set, but the agent could not write it to the guest\'s hardware '
                    f'clock ({exc.desc}): it may be off again after the next guest reboot')
    return moment, sent


def run(module):
    # parse
    request = parse_request(module.params)
    max_drift, target = request.max_drift, request.target
    with qga_session(module) as qga:
        # ask
        require_command(qga, 'guest-get-time')
        before = read_clock(qga)
        drift = before.drift(target)
        # decide
        result = {
            'changed': needs_time_set(drift, max_drift),
            'drift_before': seconds(drift),
            'drift_after': seconds(drift),
            'guest_time': iso8601(before.guest_ns),
            'target': 'host' if target is None else iso8601(target),
            'round_trip_ms': int(round(before.round_trip_ns / 1e6)),
        }
        if not result['changed']:
            return result
        require_command(qga, 'guest-set-time')
        wanted = before.host_ns if target is None else target
        result['diff'] = {'before': {'guest_time': iso8601(before.guest_ns)}, 'after': {'guest_time': iso8601(wanted)}}
        if module.check_mode:
            return result
        # act
        moment, sent = set_time(module, qga, before, target)
        after = read_clock(qga)
    # report
    drift_after = after.drift(expected_guest_ns(moment, sent, after.host_ns))
    result['drift_after'] = seconds(drift_after)
    result['guest_time'] = iso8601(after.guest_ns)
    result['diff']['after'] = {'guest_time': iso8601(after.guest_ns)}
    if needs_time_set(drift_after, max_drift):
        module.warn(f'after setting it, the guest clock is still {seconds(drift_after):g} s off its target (more than max_drift {max_drift:g} s); '
                    f'the agent round trip was {int(round(after.round_trip_ns / 1e6))} ms')
    return result


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qga',), supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
