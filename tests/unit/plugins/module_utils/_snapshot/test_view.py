# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_snapshot.view: the snapshot table read from QEMU, and what it reports."""

from __future__ import annotations


from ansible_collections.qemu.vm.plugins.module_utils._snapshot import view as snapview

from .helpers import raw_snapshot, view


def test_ram_is_reported_per_snapshot():
    assert view(state=1000).summary('s', ['disk0', 'disk1'])['ram'] is True
    assert view(state=0).summary('s', ['disk0', 'disk1'])['ram'] is False


def test_iso_date_is_utc():
    assert snapview.iso_utc(0) == '1970-01-01T00:00:00Z'
    assert snapview.snapshot_record(raw_snapshot('a', 0, 1))['vm_clock'] == 1.25


class CountingQMP:
    """Answers the two block queries of a one-disk VM and counts what it was sent."""

    def __init__(self):
        self.sent = []

    def execute(self, command, arguments=None):
        self.sent.append(command)
        if command == 'query-block':
            return [{'device': '', 'qdev': '/machine/peripheral/vda/virtio-backend',
                     'inserted': {'node-name': 'disk0'}}]
        assert command == 'query-named-block-nodes' and arguments == {'flat': True}
        return [{'node-name': 'disk0', 'drv': 'qcow2', 'file': '/img/disk0', 'ro': False,
                 'image': {'virtual-size': 1, 'snapshots': [raw_snapshot('bk-1', 1, 1, state=10)]}},
                {'node-name': 'disk0-file', 'drv': 'file', 'file': '/img/disk0', 'ro': False, 'image': {}}]


def test_read_view_asks_each_block_query_once():
    qmp = CountingQMP()
    view = snapview.read_view(qmp)
    assert sorted(qmp.sent) == ['query-block', 'query-named-block-nodes']
    assert view.default_scope() == ['disk0'] and view.by_name['disk0']['device'] == 'vda'
    assert view.summary('bk-1', ['disk0'])['vmstate'] == 'disk0'
    assert view.by_name['disk0']['snapshots'] == ['bk-1']
