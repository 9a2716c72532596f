# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Disk-only internal snapshots (qemu_snapshot ram=false) and their offline revert (images),
against the real tiny guest. One VM with two qcow2 disks serves the whole file; the last test
stops it to revert its images offline and boots it again."""

from __future__ import annotations

import re

import pytest

from harness.ansible import run_module
from harness.guest import VM


@pytest.fixture(scope='module')
def vm2(guest_images, tmp_path_factory):
    machine = VM(tmp_path_factory.mktemp('diskonly'), images=guest_images, disks=[{'format': 'qcow2', 'size': '16M'}])
    try:
        machine.start()
        yield machine
    finally:
        machine.stop()


def snapshot(vm, check=False, diff=False, **args):
    args.setdefault('qmp', vm.qmp_path)
    return run_module('qemu_snapshot', args, check=check, diff=diff)


def states(vm):
    """{node: {tag: vm-state-size}} for disk0 and disk1, read by the harness."""
    return dict((n['node-name'], dict((s['name'], s['vm-state-size']) for s in n.get('image', {}).get('snapshots', [])))
                for n in vm.qmp('query-named-block-nodes', flat=True) if n['node-name'] in ('disk0', 'disk1'))


def marker(vm):
    code, out, err = vm.guest_exec(['cat', '/data/marker.txt'])
    assert code == 0, err
    return out


def write_marker(vm, text):
    assert vm.guest_exec(['sh', '-c', f'echo {text} > /data/marker.txt && sync'])[0] == 0


def test_quiesced_disk_only_snapshot_keeps_the_vm_running(vm2):
    args = dict(name='disks-only', ram=False, quiesce='required', qga=vm2.qga_path)
    checked = snapshot(vm2, check=True, diff=True, **args)
    assert checked.changed and not checked.failed, checked['output']
    assert '+++ after' in checked['output'] and re.search(r'^\+\s+"disks-only"', checked['output'], re.M)
    assert states(vm2)['disk0'] == {}  # check mode took nothing

    with_stops = vm2.qmp('query-status')
    taken = snapshot(vm2, **args)
    assert taken.changed and not taken.failed, taken['output']
    assert (taken['method'], taken['vmstate'], taken['downtime_ms'], taken['status']) == \
        ('transaction', None, 0, 'running')
    assert taken['quiesced'] is True and taken['frozen_filesystems'] >= 1 and taken['frozen_ms'] >= 0
    assert taken['snapshot']['ram'] is False and taken['snapshot']['vm_state_size'] == 0
    assert taken['snapshot']['devices'] == ['disk0', 'disk1'] and taken['snapshot']['complete']
    assert states(vm2) == {'disk0': {'disks-only': 0}, 'disk1': {'disks-only': 0}}
    assert with_stops['status'] == vm2.status() == 'running'
    assert vm2.qga('guest-fsfreeze-status') == 'thawed'

    again = snapshot(vm2, **args)
    assert not again.changed and not again.failed and again['snapshot']['ram'] is False

    info = run_module('qemu_snapshot_info', {'qmp': vm2.qmp_path, 'name': 'disks-only'})
    assert [(s['name'], s['ram'], s['vmstate']) for s in info['snapshots']] == [('disks-only', False, None)]


def test_loading_it_into_the_running_vm_is_refused_naming_the_way_out(vm2):
    assert snapshot(vm2, name='no-ram', ram=False).changed
    write_marker(vm2, 'still-here')
    refused = snapshot(vm2, name='no-ram', state='restored')
    assert refused.failed and 'no RAM state' in refused['msg'] and 'images' in refused['msg']
    assert 'disk0.qcow2' in refused['msg'] and vm2.status() == 'running'
    assert marker(vm2) == b'still-here\n'


def test_offline_revert_of_the_images_after_the_vm_stopped(vm2):
    write_marker(vm2, 'before')
    assert snapshot(vm2, name='revert-me', ram=False).changed
    write_marker(vm2, 'after')
    images = [disk['path'] for disk in vm2.disks]

    in_use = run_module('qemu_snapshot', {'name': 'revert-me', 'state': 'restored', 'images': images})
    assert in_use.failed and in_use['error_type'] == 'ImageInUseError' and 'shut the VM down' in in_use['msg']
    assert marker(vm2) == b'after\n'

    vm2.stop()
    checked = run_module('qemu_snapshot', {'name': 'revert-me', 'state': 'restored', 'images': images}, check=True)
    assert checked.changed and not checked.failed and checked['images'] == images
    done = run_module('qemu_snapshot', {'name': 'revert-me', 'state': 'restored', 'images': images}, diff=True)
    assert done.changed and not done.failed, done['output']
    assert (done['method'], done['status'], done['snapshot']['ram']) == ('qemu-img', None, False)
    assert '"revert-me"' in done['output']  # the diff lists the snapshots, unchanged by a revert
    vm2.start()
    assert marker(vm2) == b'before\n'
