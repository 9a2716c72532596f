# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The VM's block graph as users need it: which format nodes sit on devices,
which are writable, which can hold internal snapshots."""

from __future__ import annotations

#: Format drivers whose images hold internal snapshots (savevm / snapshot-save).
SNAPSHOT_CAPABLE_DRIVERS = frozenset(['qcow2'])
_PERIPHERAL = '/machine/peripheral/'


def _device_id(device):
    """The device a user named (-device ...,id=X), else the legacy drive id."""
    qdev = device.get('qdev') or ''
    if qdev.startswith(_PERIPHERAL):
        return qdev[len(_PERIPHERAL):].split('/', 1)[0]
    return device.get('device') or qdev or None


def block_nodes(qmp) -> list:
    """Every named block node, top-of-device nodes first, in the order QEMU lists devices."""
    return describe_nodes(qmp.execute('query-block'), qmp.execute('query-named-block-nodes', {'flat': True}))


def describe_nodes(devices: list, named_nodes: list) -> list:
    """block_nodes() from the replies of query-block and query-named-block-nodes (flat)."""
    attached = {}
    for device in devices:
        inserted = device.get('inserted')
        if inserted and inserted.get('node-name'):
            attached[inserted['node-name']] = _device_id(device)
    nodes = []
    for raw in named_nodes:
        image = raw.get('image') or {}
        name = raw.get('node-name')
        read_only = bool(raw.get('ro'))
        nodes.append({
            'node_name': name,
            'driver': raw.get('drv'),
            'file': raw.get('file'),
            'read_only': read_only,
            'device': attached.get(name),
            'top': name in attached,
            'backing_file': raw.get('backing_file'),
            'virtual_size': image.get('virtual-size'),
            'can_snapshot': raw.get('drv') in SNAPSHOT_CAPABLE_DRIVERS and not read_only,
            'snapshots': [s.get('name') for s in image.get('snapshots', [])],
        })
    order = list(attached)
    nodes.sort(key=lambda n: (order.index(n['node_name']) if n['top'] else len(order)))
    return nodes


def nodes_named(nodes: list, name: str) -> list:
    """The nodes a user's disk name can mean, each once: the top node of the device with
    that id (the -device ...,id=, what backups and qemu_vm call a disk), and the node with
    that node name (how snapshots named disks first)."""
    found = [n for n in nodes if n['top'] and n['device'] == name]
    found += [n for n in nodes if n['node_name'] == name and n not in found]
    return found


def describe_disks(nodes: list) -> str:
    """The VM's disks as a user can name them, for error messages: 'vda (node disk0), ...'."""
    named = ['{0} (node {1})'.format(n['device'], n['node_name']) if n['device'] and n['device'] != n['node_name']
             else n['node_name'] for n in nodes if n['top'] and n['node_name']]
    return ', '.join(named) or 'none'
