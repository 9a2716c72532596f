# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk-only snapshots: request checks, the plan, the QMP transaction, and the offline revert
(real qemu-img on files made here; no VM)."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._qemu import qemu_img
from ansible_collections.qemu.vm.plugins.module_utils._qemu.errors import ImageInUseError
from ansible_collections.qemu.vm.plugins.module_utils._snapshot import jobs as snapshot_actions
from ansible_collections.qemu.vm.plugins.module_utils._snapshot import offline
from ansible_collections.qemu.vm.plugins.module_utils._snapshot import plan as snap
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


@pytest.mark.parametrize('changes, parameter', [
    (dict(state='absent', ram=False), 'ram'),
    (dict(ram=False, vmstate='disk0'), 'vmstate'),
    (dict(images=['/a.qcow2']), 'images'),
    (dict(state='restored', images=['/a.qcow2'], devices=['disk0']), 'devices'),
    (dict(state='restored', images=['/a.qcow2'], vmstate='disk0'), 'vmstate'),
    (dict(qmp=None), 'qmp'),
])
def test_disk_only_request_errors_name_the_option(changes, parameter):
    with pytest.raises(errors.ParameterError) as caught:
        snap.parse_request(params(**changes))
    assert caught.value.parameter == parameter and parameter in str(caught.value)


def test_images_need_no_qmp():
    request = snap.parse_request(params(state='restored', images=['/a.qcow2'], qmp=None))
    assert request.images == ['/a.qcow2']


def test_a_disk_only_save_plans_no_state_node():
    plan = snap.plan_present(view(), 'new', None, None, False, ram=False)
    assert (plan.action, plan.devices, plan.vmstate) == ('save', ['disk0', 'disk1'], None)


def test_ram_is_reported_per_snapshot():
    assert view(state=1000).summary('s', ['disk0', 'disk1'])['ram'] is True
    assert view(state=0).summary('s', ['disk0', 'disk1'])['ram'] is False


def test_loading_a_disk_only_snapshot_names_the_images_and_the_way_out():
    with pytest.raises(errors.VMStateError) as caught:
        snap.plan_restored(view(), 's', None, None)
    text = str(caught.value)
    assert 'no RAM state' in text and '/img/disk0.qcow2' in text and '/img/disk1.qcow2' in text and 'images' in text


class TransactionQMP:
    def __init__(self):
        self.sent = []

    def execute(self, command, arguments=None, timeout=None):
        self.sent.append((command, arguments))
        return {}


def test_the_disk_only_save_is_one_transaction():
    qmp = TransactionQMP()
    assert snapshot_actions.save_disk_snapshot(qmp, 'tag', ['disk0', 'disk1'], 5) == {
        'method': 'transaction', 'downtime_ms': 0}
    assert qmp.sent == [('transaction', {'actions': [
        {'type': 'blockdev-snapshot-internal-sync', 'data': {'device': 'disk0', 'name': 'tag'}},
        {'type': 'blockdev-snapshot-internal-sync', 'data': {'device': 'disk1', 'name': 'tag'}}]})]


# -- offline revert with the real qemu-img ------------------------------------------------

def make_image(path, fmt='qcow2', snapshot=None):
    subprocess.run(['qemu-img', 'create', '-q', '-f', fmt, str(path), '1M'], check=True)
    if snapshot:
        subprocess.run(['qemu-img', 'snapshot', '-c', snapshot, str(path)], check=True)
    return str(path)


def write_byte(path, value):
    """Write one guest byte at offset 0 through qemu-io, so the image content changes."""
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', f'write -P {value} 0 4k', path], check=True,
                   stdout=subprocess.DEVNULL)


def read_byte(path):
    out = subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'read -v 0 1', path], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return int(out.split(':', 1)[1].split()[0], 16)


def test_image_paths_must_be_absolute_and_exist(tmp_path):
    with pytest.raises(errors.ParameterError, match='not an absolute path'):
        offline.check_images(['disk.qcow2'])
    with pytest.raises(errors.ParameterError, match='does not exist'):
        offline.check_images([str(tmp_path / 'nope.qcow2')])
    with pytest.raises(errors.ParameterError, match='at least one'):
        offline.check_images([])


def test_offline_revert_checks_every_image_before_changing_one(tmp_path):
    good = make_image(tmp_path / 'a.qcow2', snapshot='s')
    lacking = make_image(tmp_path / 'b.qcow2')
    write_byte(good, 7)
    with pytest.raises(errors.VMStateError, match='is not in'):
        offline.restore_offline(params(state='restored', name='s', images=[good, lacking]), False, False, print)
    assert read_byte(good) == 7
    raw = make_image(tmp_path / 'c.raw', fmt='raw')
    with pytest.raises(errors.ParameterError, match='raw image'):
        offline.restore_offline(params(state='restored', name='s', images=[good, raw]), False, False, print)


def test_offline_revert_check_mode_then_real(tmp_path):
    first = make_image(tmp_path / 'a.qcow2', snapshot='s')
    second = make_image(tmp_path / 'b.qcow2', snapshot='s')
    write_byte(first, 7)
    write_byte(second, 9)
    warnings = []
    checked = offline.restore_offline(params(state='restored', name='s', images=[first, second]), True, True,
                                      warnings.append)
    assert checked['changed'] and read_byte(first) == 7
    assert checked['diff'] == {'before': {'snapshots': ['s']}, 'after': {'snapshots': ['s']}}
    done = offline.restore_offline(params(state='restored', name='s', images=[first, second]), False, False,
                                   warnings.append)
    assert done['changed'] and done['method'] == 'qemu-img' and done['images'] == [first, second]
    assert done['snapshot']['ram'] is False and done['snapshot']['devices'] == [first, second]
    assert read_byte(first) == 0 and read_byte(second) == 0
    assert warnings == []


def test_a_lock_failure_is_an_image_in_use_error(monkeypatch, tmp_path):
    image = make_image(tmp_path / 'a.qcow2')

    def locked(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 1, '', f"qemu-img: Could not open '{image}': Failed to get \"write\" "
                                                        f"lock\nIs another process using the image [{image}]?\n")
    monkeypatch.setattr(qemu_img.subprocess, 'run', locked)
    with pytest.raises(ImageInUseError) as caught:
        qemu_img.run_qemu_img(['snapshot', '-a', 's', image], 5, 'reverting', image=image)
    assert image in str(caught.value) and 'shut the VM down' in str(caught.value)
    assert caught.value.details() == {'image': image}


def test_an_image_with_a_persistent_bitmap_is_refused_before_any_revert(tmp_path):
    first = make_image(tmp_path / 'a.qcow2', snapshot='s')
    second = make_image(tmp_path / 'b.qcow2', snapshot='s')
    subprocess.run(['qemu-img', 'bitmap', '--add', second, 'qemu-vm-chain'], check=True)
    write_byte(first, 7)
    with pytest.raises(errors.VMStateError) as caught:
        offline.restore_offline(params(state='restored', name='s', images=[first, second]), False, False, print)
    assert second in str(caught.value) and 'qemu-vm-chain' in str(caught.value) and 'bitmap --remove' in str(caught.value)
    assert read_byte(first) == 7
