# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the _backup tests share: a manifest, a dirty bitmap and a disk as QEMU and qemu_backup
describe them, and a QMP stand-in that records what it is sent."""

from __future__ import annotations

import datetime

from ansible_collections.qemu.vm.plugins.module_utils._backup import chain


NOW = datetime.datetime(2026, 12, 1, 0, 45, 12, tzinfo=datetime.timezone.utc)
BITMAP = 'qemu-vm-20261130T000000Z'


def manifest(chain_id='20261130T000000Z', disks=(('vda', 1024), ('vdb', 2048)), points=1, vm=None, last=None):
    data = chain.new_manifest(chain_id, '2026-11-30T00:00:00Z', vm or {'uuid': None, 'name': 'web1'},
                              [{'device': d, 'node': 'n-' + d, 'virtual_size': s} for d, s in disks])
    for index in range(points):
        point = chain_id if index == 0 else f'{chain_id}-{index + 1}'
        data['points'].append({'point': point, 'mode': 'full' if index == 0 else 'incremental',
                               'parent': None if index == 0 else data['points'][-1]['point'],
                               'time': last if (last and index == points - 1) else '2026-11-30T00:00:00Z',
                               'files': [{'device': d, 'path': chain.file_name(point, d), 'bytes': 10}
                                         for d, _s in disks]})
    return data


def bitmap(name=BITMAP, **flags):
    entry = {'name': name, 'recording': True, 'busy': False, 'persistent': True, 'count': 0}
    entry.update(flags)
    return entry


def disk(device, driver='qcow2', read_only=False, size=1024, bitmaps=()):
    return {'device': device, 'node': 'n-' + device, 'driver': driver, 'read_only': read_only,
            'virtual_size': size, 'bitmaps': list(bitmaps)}


class RecordingQMP:
    def __init__(self):
        self.calls = []

    def execute(self, command, arguments=None):
        self.calls.append((command, arguments))
        return {}

    def version_at_least(self, major, minor):
        return True
