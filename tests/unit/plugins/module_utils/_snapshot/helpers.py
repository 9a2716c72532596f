# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the _snapshot tests share: qemu_snapshot's parameters, block nodes, snapshot records and a view
of two disks, as QEMU and the module describe them."""

from __future__ import annotations


from ansible_collections.qemu.vm.plugins.module_utils._snapshot import view as snapview


def params(**changes):
    base = dict(state='present', name='n', force=False, prefix=None, keep=None, max_age=None, devices=None,
                vmstate=None, quiesce='off', qga=None, qmp='/run/qmp.sock', ram=True, images=None, timeout=30.0)
    base.update(changes)
    return base


def node(name):
    return {'node_name': name, 'driver': 'qcow2', 'file': f'/img/{name}.qcow2', 'read_only': False,
            'device': 'vd-' + name, 'top': True, 'backing_file': None, 'virtual_size': 1, 'can_snapshot': True,
            'snapshots': []}


def record(name, state):
    return snapview.snapshot_record({'id': '1', 'name': name, 'vm-state-size': state, 'date-sec': 1700000000,
                                     'date-nsec': 0, 'vm-clock-sec': 1, 'vm-clock-nsec': 0})


def view(state=0):
    return snapview.SnapshotView([node('disk0'), node('disk1')],
                                 {'disk0': [record('s', state)], 'disk1': [record('s', 0)]})


DAY = 86400


NOW = 1700000000


def raw_snapshot(name, age_days, snapshot_id, state=0):
    date = NOW - int(age_days * DAY)
    return {'id': str(snapshot_id), 'name': name, 'vm-state-size': state, 'date-sec': date, 'date-nsec': 0,
            'vm-clock-sec': 1, 'vm-clock-nsec': 250000000}
