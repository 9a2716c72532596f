# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figure 3: peak RSS of the qemu_guest_file module process for a 1 GiB put and fetch."""

from __future__ import annotations

import figures  # pylint: disable=import-error
from registry import Figure, register  # pylint: disable=import-error
from report import row  # pylint: disable=import-error


def measure(ctx):
    # The peer is qemu-ga on this host (figures.peak_rss); --big-peer guest uses the figure-2 VM.
    if getattr(ctx, 'big_peer', 'host') == 'guest':
        return figures.peak_rss(ctx.output, vm=ctx.vm('files'))
    return figures.peak_rss(ctx.output)


def rows(fig):
    size = fig['size']
    size = f'{size >> 30} GiB' if size >= (1 << 30) else f'{size >> 20} MiB'
    return [row('3' + way, f'Peak RSS of the module process, {way} {size}',
                fig[f'{way}_rss_kib'] / 1024.0, 'MiB', '-', None, 256, ratio=False)
            for way in ('put', 'get')]


def details(fig):
    return [
        'Peer: {0}.'.format(fig['peer']),
        '',
        '- put: peak RSS {0:.1f} MiB, {1:.1f} MB/s, process wall time {2:.1f} s{3}'.format(
            fig['put_rss_kib'] / 1024.0, fig['put_mbps'], fig['put_wall_s'], _chunk(fig)),
        '- get: peak RSS {0:.1f} MiB, {1:.1f} MB/s, process wall time {2:.1f} s'.format(
            fig['get_rss_kib'] / 1024.0, fig['get_mbps'], fig['get_wall_s']),
    ]


def _chunk(fig):
    return '; module default chunk {0} KiB'.format(fig['chunk'] >> 10) if fig.get('chunk') else ''


register(Figure(3, 'peak memory of a 1 GiB transfer', measure, rows, details, rounds=lambda runs: 1))
