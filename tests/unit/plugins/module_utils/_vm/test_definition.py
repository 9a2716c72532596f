# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_vm's parameters read into a definition: every bad value is a ParameterError naming its option."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._vm.definition import (
    default_mac,
    default_uuid,
    differences,
    parse_memory,
    parse_request,
    parse_size,
)


def params(**overrides):
    base = dict(name='web1', state='running', memory=1024, cpus=1, machine='q35', accel='auto', cpu=None, firmware='bios',
                kernel=None, initrd=None, append=None, uuid=None, disks=[], network='none', hostfwd=[], mac=None,
                cloud_init=None, extra_args=[], serial_log=True, run_dir=None, user=None, wait='qmp', wait_timeout=300.0,
                stop_timeout=60.0, timeout=30.0, restart=False, remove_disks=False)
    base.update(overrides)
    return base


def error_of(**overrides):
    with pytest.raises(ParameterError) as info:
        parse_request(params(**overrides))
    return info.value


def test_defaults():
    request = parse_request(params())
    assert request.run_dir == '/run/qemu-vm/web1'
    assert request.definition['uuid'] == default_uuid('web1') == parse_request(params()).definition['uuid']
    assert request.definition['memory'] == 1024 and request.seed_files is None and request.starts


@pytest.mark.parametrize('value, mib', [(512, 512), ('512', 512), ('512M', 512), ('2G', 2048), ('2GiB', 2048),
                                        ('1t', 1024 * 1024), ('4096K', 4)])
def test_memory(value, mib):
    assert parse_memory(value) == mib


@pytest.mark.parametrize('value', ['12X', '', '1.5G', '-1', '0', True, '1000K', [1]])
def test_bad_memory_names_memory(value):
    error = error_of(memory=value)
    assert error.parameter == 'memory' and 'memory' in str(error)


def test_disk_size_bare_number_is_bytes():
    assert parse_size('10G', 'size') == 10 << 30 and parse_size(1048576, 'size') == 1 << 20


@pytest.mark.parametrize('name', ['a/b', '..', '.hidden', '', 'x' * 65, 'a b', '../etc', '-rf'])
def test_bad_names(name):
    error = error_of(name=name)
    assert error.parameter == 'name' and 'no "/", no ".."' in str(error)


@pytest.mark.parametrize('run_dir, fragment', [
    ('relative/dir', 'not an absolute path'),
    ('/tmp/a,b', 'comma'),
    ('/tmp/' + 'x' * 100, 'too long for unix sockets'),
])
def test_bad_run_dir(run_dir, fragment):
    error = error_of(run_dir=run_dir)
    assert error.parameter == 'run_dir' and fragment in str(error)


@pytest.mark.parametrize('disks, fragment', [
    ([{'path': 'rel.qcow2'}], 'disks[0].path'),
    ([{'path': '/a.qcow2'}, {'path': '/a.qcow2'}], 'attached twice'),
    ([{'path': '/a.qcow2', 'id': 'x'}, {'path': '/b.qcow2', 'id': 'x'}], 'used twice'),
    ([{'path': '/a.qcow2', 'id': 'x'}, {'path': '/b.qcow2', 'id': 'x-file'}], 'used twice'),
    ([{'path': '/a.qcow2', 'id': 'cloud-init'}], 'used twice'),
    ([{'path': '/a.qcow2', 'id': '9lives'}], 'not a device id'),
    ([{'path': '/a.qcow2', 'id': 'a,b'}], 'not a device id'),
    ([{'path': '/a.raw', 'format': 'raw', 'backing': '/base.qcow2'}], 'an overlay is a qcow2 image'),
    ([{'path': '/a.qcow2', 'size': '12X'}], 'disks[0].size'),
])
def test_bad_disks(disks, fragment):
    assert fragment in str(error_of(disks=disks))


def test_disk_ids_default_by_position_and_only_creation_details_stay_out_of_the_definition():
    disks = [{'path': '/a.qcow2', 'backing': '/base.qcow2'}, {'path': '/b.raw', 'format': 'raw', 'size': '1G', 'id': 'data'}]
    request = parse_request(params(disks=disks))
    assert [d.id for d in request.disks] == ['disk0', 'data']
    assert request.disks[1].size == 1 << 30 and request.disks[0].backing == '/base.qcow2'
    assert request.definition['disks'] == [
        {'id': 'disk0', 'path': '/a.qcow2', 'format': 'qcow2', 'readonly': False},
        {'id': 'data', 'path': '/b.raw', 'format': 'raw', 'readonly': False}]


@pytest.mark.parametrize('overrides, option', [
    (dict(hostfwd=['tcp::2222-:22']), 'network'),
    (dict(network='user', hostfwd=['tcp:127.0.0.1:2222']), 'hostfwd'),
    (dict(network='user', hostfwd=['tcp:127.0.0.1:2222-:22,guestfwd=x']), 'hostfwd'),
    (dict(network='user', hostfwd=['tcp::70000-:22']), 'hostfwd'),
    (dict(network='user', hostfwd=['tcp::2222-:22', ':2222-:23']), 'hostfwd'),
    (dict(network='user', mac='01:00:00:00:00:01'), 'mac'),
    (dict(network='user', mac='52:54:00:zz:00:01'), 'mac'),
    (dict(uuid='not-a-uuid'), 'uuid'),
    (dict(cpus=0), 'cpus'),
    (dict(initrd='/boot/initrd'), 'initrd'),
    (dict(append='console=ttyS0'), 'append'),
    (dict(kernel='vmlinuz'), 'kernel'),
    (dict(machine='q35,smm=off'), 'machine'),
    (dict(user='no-such-user-qemu-vm'), 'user'),
])
def test_bad_values_name_their_option(overrides, option):
    assert error_of(**overrides).parameter == option


def test_network_defaults_and_forwarding():
    request = parse_request(params(network='user', hostfwd=['tcp:127.0.0.1:2222-:22', 'udp::5353-:53']))
    assert request.definition['mac'] == default_mac('web1') and request.definition['mac'].startswith('52:54:00:')
    assert request.definition['hostfwd'] == ['tcp:127.0.0.1:2222-:22', 'udp::5353-:53']


def test_cloud_init_seed_and_its_digest():
    first = parse_request(params(cloud_init={'user_data': '#cloud-config\n'}))
    assert first.seed_files['user-data'] == '#cloud-config\n'
    assert f"instance-id: {first.definition['uuid']}" in first.seed_files['meta-data']
    assert 'network-config' not in first.seed_files
    second = parse_request(params(cloud_init={'user_data': '#cloud-config\npackages: [htop]\n'}))
    assert first.definition['cloud_init'].startswith('sha256:')
    assert differences(first.definition, second.definition) == ['cloud_init']


def test_differences():
    old = parse_request(params()).definition
    assert differences(old, parse_request(params()).definition) == []
    assert differences(old, parse_request(params(memory='2G', cpus=2)).definition) == ['cpus', 'memory']
    assert differences(None, old) == sorted(old)
