# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_backup.leftovers: one run per dest, and what a killed run left (files, jobs, bitmaps) found and cleared."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._backup import chain
from ansible_collections.qemu.vm.plugins.module_utils._backup import leftovers
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError

from .helpers import RecordingQMP, bitmap, disk, manifest


def test_only_one_run_holds_dest(tmp_path):
    with leftovers.dest_lock(str(tmp_path)):
        with pytest.raises(ParameterError, match='another qemu_backup run is writing into it') as info:
            with leftovers.dest_lock(str(tmp_path)):
                pass
        assert info.value.parameter == 'dest'
    with leftovers.dest_lock(str(tmp_path)):  # released with the run
        pass


def make_chain(dest, chain_id, files, with_manifest=True):
    chain_dir = dest / chain_id
    chain_dir.mkdir()
    for name in files:
        (chain_dir / name).write_bytes(b'x')
    data = manifest(chain_id, disks=(('vda', 1024),)) if with_manifest else None
    if data:
        chain.write_manifest(str(chain_dir), data)
    return {'chain': chain_id, 'dir': str(chain_dir), 'manifest': data}


def test_files_no_manifest_lists_are_a_killed_runs(tmp_path):
    listed = chain.file_name('20261130T000000Z', 'vda')
    clean = make_chain(tmp_path, '20261130T000000Z', [listed])
    killed = make_chain(tmp_path, '20261201T000000Z', [chain.file_name('20261201T000000Z', 'vda'),
                                                       'P.vda.qcow2.partial', 'P2.vda.qcow2', 'notes.txt'])
    make_chain(tmp_path, '20261202T000000Z', ['P.vda.qcow2.partial'], with_manifest=False)
    make_chain(tmp_path, '20261203T000000Z', ['P.vda.qcow2.partial', 'mine.txt'], with_manifest=False)
    (tmp_path / 'not-a-chain').mkdir()
    found = leftovers.find_leftovers(str(tmp_path), [clean, killed])
    assert found == {'unrecorded': {'20261201T000000Z': ['P.vda.qcow2.partial', 'P2.vda.qcow2']},
                     'aborted': ['20261202T000000Z']}  # a directory holding anything else is not ours to remove
    lines = leftovers.describe(found)
    assert 'chain 20261201T000000Z does not list (P.vda.qcow2.partial, P2.vda.qcow2)' in lines[0]
    assert 'chain 20261202T000000Z without a manifest' in lines[1]


class CannedQMP(RecordingQMP):
    def __init__(self, answers):
        super().__init__()
        self.answers = answers

    def execute(self, command, arguments=None):
        self.calls.append((command, arguments))
        replies = self.answers.get(command)  # the replies to this command, in order
        return replies.pop(0) if replies else {}


def test_clearing_leftovers_stops_the_killed_runs_jobs_then_removes_its_files_and_bitmaps(tmp_path):
    killed = make_chain(tmp_path, '20261201T000000Z', ['P.vda.qcow2.partial'])
    make_chain(tmp_path, '20261202T000000Z', ['Q.vda.qcow2.partial'], with_manifest=False)
    found = leftovers.find_leftovers(str(tmp_path), [killed])
    ours, other = 'qemu-vm-backup-0123abcd-0', 'qemu-vm-backup-99999999-0'
    shown = {'backing': None, 'driver': 'qcow2', 'file': {'driver': 'file', 'filename': str(
        tmp_path / '20261202T000000Z' / 'Q.vda.qcow2.partial')}}  # as QEMU shows a target a job used
    nodes = [{'node-name': ours, 'drv': 'qcow2', 'file': 'json:' + json.dumps(shown)},
             {'node-name': other, 'drv': 'qcow2', 'file': '/elsewhere/R.vda.qcow2.partial'}]
    running = [{'id': 'qemu-vm-backup-0123abcd-vda', 'status': 'running'},
               {'id': 'qemu-vm-backup-99999999-vda', 'status': 'running'}]
    cancelled = [{'id': 'qemu-vm-backup-0123abcd-vda', 'status': 'concluded'}, running[1]]
    qmp = CannedQMP({'query-named-block-nodes': [nodes], 'query-jobs': [running, cancelled, cancelled]})
    disks = [dict(disk('vda'), bitmaps=[bitmap('qemu-vm-20261201T000000Z'), bitmap('qemu-vm-20261202T000000Z'),
                                        bitmap('qemu-vm-keep')])]
    warnings = leftovers.drop_stale_targets(qmp, str(tmp_path))
    assert 'left backup jobs (qemu-vm-backup-0123abcd-vda) and target nodes' in warnings[0]
    leftovers.clear_leftovers(qmp, str(tmp_path), found, disks)
    acting = [(c, a) for c, a in qmp.calls if not c.startswith('query-')]
    assert acting == [
        ('job-cancel', {'id': 'qemu-vm-backup-0123abcd-vda'}),  # another dest's run is left alone
        ('job-dismiss', {'id': 'qemu-vm-backup-0123abcd-vda'}),
        ('blockdev-del', {'node-name': ours}),
        ('block-dirty-bitmap-remove', {'node': 'n-vda', 'name': 'qemu-vm-20261201T000000Z'}),
        ('block-dirty-bitmap-remove', {'node': 'n-vda', 'name': 'qemu-vm-20261202T000000Z'}),
    ]
    assert os.listdir(killed['dir']) == ['manifest.json']
    assert sorted(os.listdir(str(tmp_path))) == ['20261201T000000Z']
