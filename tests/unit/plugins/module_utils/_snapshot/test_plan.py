# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_snapshot.plan, the pure decisions of qemu_snapshot: the request, device choice, idempotency,
retention, and disk-only snapshots."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._snapshot import plan as snap
from ansible_collections.qemu.vm.plugins.module_utils._snapshot import view as snapview

from . import helpers
from .helpers import DAY, NOW, raw_snapshot


def node(name, driver='qcow2', read_only=False, top=True, device=None):
    return {'node_name': name, 'driver': driver, 'file': '/img/{0}'.format(name.replace('-file', '')), 'read_only': read_only,
            'device': device or ('vd-' + name if top else None), 'top': top, 'backing_file': None,
            'virtual_size': 1, 'can_snapshot': driver == 'qcow2' and not read_only, 'snapshots': []}


def view_of(nodes, tables):
    return snapview.SnapshotView(nodes, dict((n, [snapview.snapshot_record(r) for r in recs]) for n, recs in tables.items()))


def two_disks(names_ages, only_disk0=()):
    """disk0 (holds the state) and disk1, both with every (name, age_days) snapshot."""
    d0, d1 = [], []
    for index, (name, age) in enumerate(names_ages, 1):
        d0.append(raw_snapshot(name, age, index, state=1000))
        if name not in only_disk0:
            d1.append(raw_snapshot(name, age, index))
    return view_of([node('disk0'), node('disk1'), node('disk0-file', 'file', top=False)],
                   {'disk0': d0, 'disk1': d1})


@pytest.mark.parametrize('tag', ['a', 'with space', '\u00e9t\u00e9 \u96ea', 'x' * 255, '\u00e9' * 127])
def test_good_tags(tag):
    assert snap.check_tag(tag) == tag


@pytest.mark.parametrize('tag, words', [
    ('', 'non-empty'), (None, 'non-empty'), ('   ', 'whitespace'), ('x' * 256, '256 bytes'),
    ('\u00e9' * 128, '256 bytes'), ('a\nb', 'control character'), ('tab\there', 'control character'),
])
def test_bad_tags_name_the_option(tag, words):
    with pytest.raises(errors.ParameterError) as caught:
        snap.check_tag(tag)
    assert str(caught.value).startswith('name ') and words in str(caught.value)


@pytest.mark.parametrize('prefix', ['', '  ', None])
def test_prefix_is_required(prefix):
    with pytest.raises(errors.ParameterError) as caught:
        snap.check_prefix(prefix)
    assert 'prefix is required' in str(caught.value)


def test_default_devices_are_the_writable_top_nodes():
    view = view_of([node('disk0'), node('disk0-file', 'file', top=False), node('cdrom', 'raw', read_only=True),
                    node('disk1'), node('base', top=False, read_only=True)], {})
    assert snap.choose_devices(view, None, 'write') == ['disk0', 'disk1']


def test_a_writable_raw_disk_is_named_with_the_way_out():
    view = view_of([node('disk0'), node('scratch', 'raw', device='vdc'), node('disk1')], {})
    with pytest.raises(errors.VMStateError) as caught:
        snap.choose_devices(view, None, 'write')
    message = str(caught.value)
    assert "node 'scratch' (device vdc) is a writable disk with driver raw" in message
    assert "devices: ['disk0', 'disk1']" in message
    assert snap.choose_devices(view, None, 'delete') == ['disk0', 'disk1']
    assert snap.choose_devices(view, ['disk1', 'disk0'], 'write') == ['disk1', 'disk0']


@pytest.mark.parametrize('devices, words', [
    (['nope'], "no disk with device id or node name 'nope'; its disks are: vd-disk0 (node disk0), vd-cdrom"),
    (['cdrom'], "'cdrom' is read-only"),
    (['disk0-file'], "did you mean its format node 'disk0'"),
    (['scratch'], "'scratch' (driver raw) cannot hold internal snapshots"),
])
def test_bad_devices(devices, words):
    view = view_of([node('disk0'), node('disk0-file', 'file', top=False), node('cdrom', 'qcow2', read_only=True),
                    node('scratch', 'raw')], {})
    with pytest.raises(errors.ParameterError) as caught:
        snap.choose_devices(view, devices, 'write')
    assert words in str(caught.value)
    assert str(caught.value).startswith('devices: ')


def test_devices_are_device_ids_as_for_backups_and_node_names_still_work():
    view = view_of([node('disk0', device='vda'), node('disk1', device='vdb'), node('disk0-file', 'file', top=False)], {})
    assert snap.choose_devices(view, ['vdb'], 'write') == ['disk1']
    assert snap.choose_devices(view, ['vdb', 'disk0'], 'write') == ['disk1', 'disk0']
    assert snap.choose_devices(view, ['vda', 'disk0'], 'delete') == ['disk0']  # one disk named twice
    assert snap.choose_devices(view, ['vda'], 'list') == ['disk0']
    plan = snap.plan_present(view, 'a', ['vda', 'vdb'], 'vdb', False)
    assert (plan.devices, plan.vmstate) == (['disk0', 'disk1'], 'disk1')


def test_a_name_that_is_one_disk_s_id_and_another_s_node_name_is_refused():
    view = view_of([node('disk0', device='disk1'), node('disk1', device='vdb')], {})
    with pytest.raises(errors.ParameterError) as caught:
        snap.choose_devices(view, ['disk1'], 'write')
    assert str(caught.value) == ("devices: 'disk1' is the device id of node 'disk0' and the name of another node "
                                 "'disk1'; name the node you mean by its node name")
    assert caught.value.parameter == 'devices'


def test_listing_accepts_read_only_nodes_but_not_unknown_ones():
    view = view_of([node('disk0'), node('cdrom', 'qcow2', read_only=True)], {})
    assert snap.choose_devices(view, ['cdrom'], 'list') == ['cdrom']
    with pytest.raises(errors.ParameterError):
        snap.choose_devices(view, ['nope'], 'list')


def test_vmstate_must_be_one_of_the_devices():
    view = two_disks([])
    plan = snap.plan_present(view, 'a', None, None, False)
    assert (plan.action, plan.devices, plan.vmstate) == ('save', ['disk0', 'disk1'], 'disk0')
    assert snap.plan_present(view, 'a', None, 'disk1', False).vmstate == 'disk1'
    with pytest.raises(errors.ParameterError) as caught:
        snap.plan_present(view, 'a', ['disk0'], 'disk1', False)
    assert "vmstate: node 'disk1' must be one of the snapshot devices ['disk0']" == str(caught.value)


def test_present_is_unchanged_when_every_device_has_it():
    plan = snap.plan_present(two_disks([('a', 1)]), 'a', None, None, False)
    assert not plan.changed and plan.snapshot['devices'] == ['disk0', 'disk1']
    assert snap.plan_present(two_disks([('a', 1)]), 'a', None, None, True).action == 'replace'


def test_present_on_some_devices_is_an_error_or_replaced_with_force():
    view = two_disks([('a', 1)], only_disk0=('a',))
    with pytest.raises(errors.VMStateError) as caught:
        snap.plan_present(view, 'a', None, None, False)
    assert "exists on ['disk0'] but not on ['disk1']" in str(caught.value) and 'force' in str(caught.value)
    plan = snap.plan_present(view, 'a', None, None, True)
    assert (plan.action, plan.delete_from) == ('replace', ['disk0'])
    # the subset that has it is consistent on its own
    assert not snap.plan_present(view, 'a', ['disk0'], None, False).changed


def test_absent_deletes_from_the_holders_only():
    assert not snap.plan_absent(two_disks([('a', 1)]), 'b', None).changed
    plan = snap.plan_absent(two_disks([('a', 1)], only_disk0=('a',)), 'a', None)
    assert (plan.action, plan.delete_from) == ('delete', ['disk0'])


def test_restored_checks_the_tag_before_touching_the_vm():
    view = two_disks([('a', 1), ('p', 1)], only_disk0=('p',))
    plan = snap.plan_restored(view, 'a', None, None)
    assert (plan.action, plan.vmstate, plan.changed) == ('load', 'disk0', True)
    with pytest.raises(errors.VMStateError) as caught:
        snap.plan_restored(view, 'nope', None, None)
    assert "snapshot 'nope' does not exist" in str(caught.value) and "['a', 'p']" in str(caught.value)
    with pytest.raises(errors.VMStateError) as caught:
        snap.plan_restored(view, 'p', None, None)
    assert "exists on ['disk0'] but not on ['disk1']" in str(caught.value)
    with pytest.raises(errors.ParameterError) as caught:
        snap.plan_restored(view, 'a', None, 'disk1')
    assert "holds no VM state for snapshot 'a'; it is on 'disk0'" in str(caught.value)


def test_disk_only_snapshot_cannot_be_loaded():
    view = view_of([node('disk0')], {'disk0': [raw_snapshot('d', 1, 1, state=0)]})
    with pytest.raises(errors.VMStateError) as caught:
        snap.plan_restored(view, 'd', None, None)
    assert 'disk-only' in str(caught.value)


@pytest.mark.parametrize('status, action, ok', [
    ('running', 'save', True), ('paused', 'save', True), ('inmigrate', 'save', False),
    ('restore-vm', 'save', False), ('shutdown', 'save', False), ('restore-vm', 'load', True),
    ('inmigrate', 'load', False), ('shutdown', 'delete', True), ('inmigrate', 'delete', False),
])
def test_run_states(status, action, ok):
    if ok:
        snap.check_run_state(status, action)
    else:
        with pytest.raises(errors.VMStateError) as caught:
            snap.check_run_state(status, action)
        assert status in str(caught.value)


RETAINED = [('manual', 40), ('bk-1', 30), ('bk-2', 20), ('bk-3', 10), ('other-bk-4', 5), ('bk-5', 2), ('bk-6', 0.5)]


def prune(keep=None, max_age=None, prefix='bk-', view=None):
    plan = snap.plan_pruned(view or two_disks(RETAINED), prefix, keep, max_age, None, now=NOW)
    return [s['name'] for s in plan.pruned], [s['name'] for s in plan.kept]


def test_keep_n_newest_of_the_prefix_only():
    assert prune(keep=2) == (['bk-1', 'bk-2', 'bk-3'], ['bk-5', 'bk-6'])
    assert prune(keep=10) == ([], ['bk-1', 'bk-2', 'bk-3', 'bk-5', 'bk-6'])
    assert prune(keep=0) == (['bk-1', 'bk-2', 'bk-3', 'bk-5', 'bk-6'], [])


def test_max_age_alone_and_with_keep():
    assert prune(max_age=15 * DAY) == (['bk-1', 'bk-2'], ['bk-3', 'bk-5', 'bk-6'])
    assert prune(max_age=DAY) == (['bk-1', 'bk-2', 'bk-3', 'bk-5'], ['bk-6'])
    # keep protects the newest N whatever their age
    assert prune(max_age=DAY, keep=3) == (['bk-1', 'bk-2'], ['bk-3', 'bk-5', 'bk-6'])
    assert prune(max_age=100 * DAY, keep=0) == ([], ['bk-1', 'bk-2', 'bk-3', 'bk-5', 'bk-6'])


def test_retention_never_sees_other_names():
    pruned, kept = prune(keep=0, prefix='bk-')
    assert 'manual' not in pruned + kept and 'other-bk-4' not in pruned + kept
    assert prune(keep=0, prefix='nothing-') == ([], [])


def test_partial_prefixed_snapshots_are_pruned_from_where_they_are():
    view = two_disks([('bk-1', 3), ('bk-2', 2), ('bk-3', 1)], only_disk0=('bk-1',))
    plan = snap.plan_pruned(view, 'bk-', 1, None, None, now=NOW)
    assert [(s['name'], s['devices']) for s in plan.pruned] == [('bk-1', ['disk0']), ('bk-2', ['disk0', 'disk1'])]


def test_same_second_snapshots_are_ordered_by_id():
    view = view_of([node('disk0')], {'disk0': [raw_snapshot('bk-b', 1, 2), raw_snapshot('bk-a', 1, 1)]})
    assert view.names(['disk0']) == ['bk-a', 'bk-b']
    assert prune(keep=1, view=view) == (['bk-a'], ['bk-b'])


def request_params(**changes):
    params = dict(state='present', name='n', force=False, prefix=None, keep=None, max_age=None, devices=None,
                  vmstate=None, quiesce='off', qga=None, qmp='/run/qmp.sock', ram=True, images=None)
    params.update(changes)
    return params


@pytest.mark.parametrize('changes, parameter', [
    (dict(name=''), 'name'),
    (dict(state='pruned', name=None, prefix='bk-'), 'keep'),
    (dict(state='pruned', name=None, prefix='bk-', keep=-1), 'keep'),
    (dict(state='pruned', name=None, prefix='bk-', max_age='soon'), 'max_age'),
    (dict(keep=1), 'keep'),
    (dict(state='absent', force=True), 'force'),
    (dict(state='absent', vmstate='disk0'), 'vmstate'),
    (dict(quiesce='required'), 'qga'),
    (dict(state='absent', quiesce='required', qga='/q'), 'quiesce'),
    (dict(devices=[]), 'devices'),
])
def test_request_errors_are_parameter_errors_naming_the_option(changes, parameter):
    with pytest.raises(errors.ParameterError) as caught:
        snap.parse_request(request_params(**changes))
    assert isinstance(caught.value, errors.QemuVMError)
    assert caught.value.parameter == parameter and caught.value.details() == {'parameter': parameter}
    assert parameter in str(caught.value)


def test_request_for_pruning():
    request = snap.parse_request(request_params(state='pruned', name=None, prefix='bk-', keep=2, max_age='1d'))
    assert (request.prefix, request.keep, request.max_age, request.name) == ('bk-', 2, DAY, None)


# -- disk-only snapshots ------------------------------------------------------------------

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
        snap.parse_request(helpers.params(**changes))
    assert caught.value.parameter == parameter and parameter in str(caught.value)


def test_images_need_no_qmp():
    request = snap.parse_request(helpers.params(state='restored', images=['/a.qcow2'], qmp=None))
    assert request.images == ['/a.qcow2']


def test_a_disk_only_save_plans_no_state_node():
    plan = snap.plan_present(helpers.view(), 'new', None, None, False, ram=False)
    assert (plan.action, plan.devices, plan.vmstate) == ('save', ['disk0', 'disk1'], None)


def test_loading_a_disk_only_snapshot_names_the_images_and_the_way_out():
    with pytest.raises(errors.VMStateError) as caught:
        snap.plan_restored(helpers.view(), 's', None, None)
    text = str(caught.value)
    assert 'no RAM state' in text and '/img/disk0.qcow2' in text and '/img/disk1.qcow2' in text and 'images' in text


@pytest.mark.parametrize('params, expected', [
    (dict(state='present', ram=False, qga='/q', quiesce=None), 'preferred'),   # as qemu_backup
    (dict(state='present', ram=False, qga=None, quiesce=None), 'off'),
    (dict(state='present', ram=True, qga='/q', quiesce=None), 'off'),   # RAM state: consistent, and loads frozen
    (dict(state='absent', ram=True, qga='/q', quiesce=None), 'off'),    # quiesce is only for taking one
    (dict(state='restored', ram=True, qga='/q', quiesce=None), 'off'),
    (dict(state='present', ram=False, qga='/q', quiesce='off'), 'off'),
    (dict(state='present', ram=True, qga='/q', quiesce='required'), 'required'),
])
def test_quiesce_defaults_like_qemu_backup_for_disk_only_snapshots(params, expected):
    assert snap.default_quiesce(params) == expected
