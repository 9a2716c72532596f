# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Internal VM snapshots as read from QEMU: one view across devices, grouped by tag.

`read_view(qmp)` asks QEMU (query-block and query-named-block-nodes, once each) and
returns a `SnapshotView`; everything else here is pure. Decisions are in
_snapshot_plan, actions in _snapshot.

No Ansible imports here.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from ansible_collections.qemu.vm.plugins.module_utils._qemu.block import describe_nodes

if TYPE_CHECKING:  # pragma: no cover
    from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession


def iso_utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(int(seconds), tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def snapshot_record(raw: dict) -> dict:
    """One entry of image.snapshots as the modules return it."""
    date_sec = int(raw.get('date-sec', 0))
    return {
        'name': raw.get('name'),
        'id': raw.get('id'),
        'vm_state_size': int(raw.get('vm-state-size', 0)),
        'ram': int(raw.get('vm-state-size', 0)) > 0,
        'date': iso_utc(date_sec),
        'date_epoch': date_sec,
        'vm_clock': round(int(raw.get('vm-clock-sec', 0)) + int(raw.get('vm-clock-nsec', 0)) / 1e9, 3),
        '_order': (date_sec, int(raw.get('date-nsec', 0)), _id_number(raw.get('id'))),
    }


def _id_number(snapshot_id):
    try:
        return int(snapshot_id)
    except (TypeError, ValueError):
        return 0


def public(record: dict | None) -> dict | None:
    """A record without its private sort key."""
    if record is None:
        return None
    return dict((k, v) for k, v in record.items() if not k.startswith('_'))


class SnapshotView:
    """The VM's block nodes and their snapshot tables, grouped by tag."""

    def __init__(self, nodes: list, tables: dict):
        self.nodes = nodes
        self.by_name = dict((n['node_name'], n) for n in nodes)
        self.tables = tables  # node name -> [record]

    # which nodes a snapshot of "the VM" covers by default
    def writable_top(self) -> list:
        return [n for n in self.nodes if n['top'] and not n['read_only']]

    def default_scope(self) -> list:
        """Writable top-of-device nodes that can hold snapshots (what listing and deleting cover)."""
        return [n['node_name'] for n in self.writable_top() if n['can_snapshot']]

    def holders(self, tag: str, scope: list) -> list:
        """Nodes of `scope` whose image has `tag`, in scope order."""
        return [node for node in scope if self.record(tag, node) is not None]

    def record(self, tag: str, node: str) -> dict | None:
        for record in self.tables.get(node, []):
            if record['name'] == tag:
                return record
        return None

    def names(self, scope: list) -> list:
        """Every tag on any node of `scope`, oldest first."""
        found = {}
        for node in scope:
            for record in self.tables.get(node, []):
                best = found.get(record['name'])
                if best is None or record['_order'] > best:
                    found[record['name']] = record['_order']
        return [item[0] for item in sorted(found.items(), key=lambda item: (item[1], item[0]))]

    def state_node(self, tag: str, scope: list) -> str | None:
        """The node of `scope` that holds the RAM state of `tag`, or None."""
        for node in scope:
            record = self.record(tag, node)
            if record is not None and record['vm_state_size'] > 0:
                return node
        return None

    def summary(self, tag: str, scope: list) -> dict | None:
        """One snapshot across `scope`: the record of its state node (else the first holder),
        plus where it is and is not."""
        holders = self.holders(tag, scope)
        if not holders:
            return None
        vmstate = self.state_node(tag, scope)
        result = public(self.record(tag, vmstate or holders[0]))
        result['vmstate'] = vmstate
        result['devices'] = holders
        result['missing_devices'] = [node for node in scope if node not in holders]
        result['complete'] = not result['missing_devices']
        return result

    def summaries(self, scope: list) -> list:
        return [self.summary(tag, scope) for tag in self.names(scope)]


def read_view(qmp: QMPSession) -> SnapshotView:
    """Read the block graph and every node's snapshot table (two read-only queries, each sent once)."""
    devices = qmp.execute('query-block')
    named = qmp.execute('query-named-block-nodes', {'flat': True})
    tables = {}
    for raw in named:
        image = raw.get('image') or {}
        tables[raw.get('node-name')] = [snapshot_record(s) for s in image.get('snapshots', [])]
    return SnapshotView(describe_nodes(devices, named), tables)
