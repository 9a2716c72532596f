# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figure 1: the backup role's frozen window vs the floor script and the naive three-task play."""

from __future__ import annotations

import figures  # pylint: disable=import-error
from registry import Figure, register  # pylint: disable=import-error
from report import paired, row, samples  # pylint: disable=import-error
from tools import median  # pylint: disable=import-error


def measure(ctx):
    return figures.frozen_window(ctx.vm('small'), ctx.rounds, ctx.output)


def rows(fig):
    role = median(fig['role_frozen_ms'])
    return [
        row('1a', 'Frozen window, backup role (frozen_ms)', role, 'ms',
            'floor: bare freeze/snapshot-save/thaw script', median(fig['floor_tap_ms']), 1.2),
        row('1b', 'Frozen window, backup role (frozen_ms)', role, 'ms',
            'naive play: freeze, snapshot, thaw tasks', median(fig['naive_tap_ms']), 0.1),
        row('1c', 'Frozen window, floor script (the least any freeze/save/thaw can do)',
            median(fig['floor_tap_ms']), 'ms', 'naive play: freeze, snapshot, thaw tasks',
            median(fig['naive_tap_ms'])),
    ]


def details(fig):
    role_rest = [w - d for w, d in zip(fig['role_frozen_ms'], fig['role_downtime_ms'])]
    floor_rest = [w - d for w, d in zip(fig['floor_tap_ms'], fig['floor_downtime_ms'])]
    ratios = paired(fig['role_frozen_ms'], fig['floor_tap_ms'])
    return [
        'Samples (ms, in run order):',
        '',
        '- backup role `frozen_ms`: {0}'.format(samples(fig['role_frozen_ms'])),
        '- backup role, tap (freeze reply to thaw reply): {0}'.format(samples(fig['role_tap_ms'])),
        '- backup role, QEMU downtime of the save (`downtime_ms`, STOP to RESUME): {0}'.format(
            samples(fig['role_downtime_ms'])),
        '- floor, tap: {0}; floor, its own clock: {1}'.format(samples(fig['floor_tap_ms']), samples(fig['floor_ms'])),
        '- floor, QEMU downtime of the save: {0}'.format(samples(fig['floor_downtime_ms'])),
        '- naive play, tap: {0}'.format(samples(fig['naive_tap_ms'])),
        f'- frozen but not stopped (window minus downtime), medians: role {median(role_rest):.0f} ms, floor {median(floor_rest):.0f} ms',
        '- role/floor ratio per round (same round): {0}; median {1:.2f}'.format(
            samples(ratios, '{0:.2f}'), median(ratios)),
        '- whole playbook wall time, role: {0} s; naive: {1} s'.format(
            samples(fig['role_wall_s'], '{0:.1f}'), samples(fig['naive_wall_s'], '{0:.1f}')),
    ]


register(Figure(1, 'frozen window of a quiesced snapshot', measure, rows, details, vms={'small': None},
                rounds=lambda runs: runs * 3))
