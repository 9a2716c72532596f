# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""QEMU command lines, host names and socket patterns for the qemu.vm.qemu inventory (pure functions)."""

from __future__ import annotations

import hashlib
import json

import pytest

from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.cmdline import (
    agent_address,
    assign_host_names,
    base_name,
    describe_conflict,
    glob_regex,
    is_qemu_argv,
    normalize_uuid,
    parse_cmdline,
    qemu_vm_run_dir,
    parse_opts,
    socket_label,
    split_opts,
)
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError

QEMU = '/usr/bin/qemu-system-x86_64'


def test_qemu_programs_are_recognised():
    assert is_qemu_argv([QEMU, '-m', '256'])
    assert is_qemu_argv(['qemu-system-aarch64'])
    assert is_qemu_argv(['/usr/libexec/qemu-kvm'])
    assert not is_qemu_argv(['/usr/bin/qemu-img', 'info', 'x'])
    assert not is_qemu_argv(['/usr/bin/qemu-ga'])
    assert not is_qemu_argv([])
    assert not is_qemu_argv([''])


def test_doubled_commas_are_literal():
    assert split_opts('a,,b,c=d,,e,f') == ['a,b', 'c=d,e', 'f']
    assert parse_opts('web,,1,process=qemu-web', implied='guest') == {'guest': 'web,1', 'process': 'qemu-web'}
    assert parse_opts('unix:/x,server,nowait', implied='backend') == {
        'backend': 'unix:/x', 'server': 'on', 'nowait': 'on'}


def test_json_device_form():
    opts = parse_opts(json.dumps({'driver': 'virtserialport', 'chardev': 'ga', 'name': 'n', 'x': True}))
    assert opts == {'driver': 'virtserialport', 'chardev': 'ga', 'name': 'n', 'x': 'on'}
    assert parse_opts('{not json') == {}


@pytest.mark.parametrize('value, name', [
    ('web1', 'web1'),
    ('guest=web1', 'web1'),
    ('web1,process=qemu-web1', 'web1'),
    ('guest=web1,debug-threads=on', 'web1'),
    ('process=only', None),
    ('guest=a,,b', 'a,b'),
])
def test_name_forms(value, name):
    assert parse_cmdline([QEMU, '-name', value])['name'] == name


def test_harness_style_command_line():
    argv = [QEMU, '-machine', 'pc', '-append', 'console=ttyS0 quiet',
            '-qmp', 'unix:/run/vm/qmp.sock,server=on,wait=off',
            '-chardev', 'socket,id=hmon0,path=/run/vm/qmp-harness.sock,server=on,wait=off',
            '-mon', 'chardev=hmon0,mode=control',
            '-chardev', 'socket,path=/run/vm/qga.sock,server=on,wait=off,id=qga0',
            '-device', 'virtio-serial-pci',
            '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
            '-name', 'web1', '-uuid', '5B0F4B6A-0000-4000-8000-000000000001']
    assert parse_cmdline(argv) == {
        'name': 'web1',
        'uuid': '5b0f4b6a-0000-4000-8000-000000000001',
        'qmp': ['/run/vm/qmp.sock', '/run/vm/qmp-harness.sock'],
        'qga': '/run/vm/qga.sock',
        'drops_root': False,
        'pidfile': None,
    }
    assert qemu_vm_run_dir(parse_cmdline(argv)) is None


def test_the_run_dir_of_a_qemu_vm_started_vm():
    layout = [QEMU, '-qmp', 'unix:/run/qemu-vm/web1/qmp.sock,server=on,wait=off',
              '-chardev', 'socket,id=mon1,path=/run/qemu-vm/web1/monitor.sock,server=on,wait=off',
              '-mon', 'chardev=mon1,mode=control', '-daemonize']
    assert qemu_vm_run_dir(parse_cmdline(layout + ['-pidfile', '/run/qemu-vm/web1/qemu.pid'])) == '/run/qemu-vm/web1'
    # relative to QEMU's working directory, as QEMU resolves it
    assert qemu_vm_run_dir(parse_cmdline(layout + ['-pidfile', 'web1/qemu.pid'], cwd='/run/qemu-vm')) == '/run/qemu-vm/web1'
    # not the layout: another pid file name, or a pid file beside a monitor elsewhere
    assert qemu_vm_run_dir(parse_cmdline(layout + ['-pidfile', '/run/qemu-vm/web1/vm.pid'])) is None
    assert qemu_vm_run_dir(parse_cmdline(layout + ['-pidfile', '/tmp/qemu.pid'])) is None
    assert qemu_vm_run_dir(parse_cmdline(layout)) is None


def test_libvirt_style_command_line():
    argv = ['/usr/bin/qemu-system-x86_64', '-name', 'guest=db,debug-threads=on',
            '-chardev', 'socket,id=charmonitor,fd=31,server=on,wait=off',
            '-mon', 'chardev=charmonitor,id=monitor,mode=control',
            '-chardev', 'socket,id=charchannel0,path=/var/lib/libvirt/qemu/channel/target/db/org.qemu.guest_agent.0,'
                        'server=on,wait=off',
            '-device', json.dumps({'driver': 'virtserialport', 'bus': 'virtio-serial0.0', 'nr': 1,
                                   'chardev': 'charchannel0', 'id': 'channel0', 'name': 'org.qemu.guest_agent.0'})]
    info = parse_cmdline(argv)
    assert info['name'] == 'db'
    assert info['qmp'] == []  # an inherited fd is nothing we can connect to
    assert info['qga'] == '/var/lib/libvirt/qemu/channel/target/db/org.qemu.guest_agent.0'


def test_monitor_forms():
    argv = [QEMU, '--qmp-pretty', 'unix:/a/pretty.sock,server,nowait',
            '-mon', 'hmp0', '-chardev', 'socket,id=hmp0,path=/a/hmp.sock,server=on',  # readline: not QMP
            '-chardev', 'socket,id=m,host=127.0.0.1,port=4444,server=on', '-mon', 'chardev=m,mode=control',
            '-qmp', 'tcp::4445,server=on', '-qmp', 'unix:/a/client.sock',  # client mode: not ours
            '-qmp', 'stdio']
    assert parse_cmdline(argv)['qmp'] == ['/a/pretty.sock', '127.0.0.1:4444', 'localhost:4445']


def test_relative_paths_resolve_against_qemu_cwd():
    argv = [QEMU, '-qmp', 'unix:qmp.sock,server=on', '-chardev', 'socket,id=g,path=../ga.sock,server=on',
            '-device', 'virtserialport,name=org.qemu.guest_agent.0,chardev=g']
    assert parse_cmdline(argv, cwd='/srv/vms/web1') == {
        'name': None, 'uuid': None, 'qmp': ['/srv/vms/web1/qmp.sock'], 'qga': '/srv/vms/ga.sock', 'drops_root': False,
        'pidfile': None}


@pytest.mark.parametrize('options, drops', [
    (['-runas', 'qemu'], True),
    (['-run-with', 'user=qemu,chroot=/srv/jail'], True),
    (['-run-with', 'chroot=/srv/jail'], False),
    (['-run-with', 'async-teardown=on'], False),
    ([], False),
])
def test_a_command_line_that_drops_root(options, drops):
    assert parse_cmdline([QEMU, '-name', 'a'] + options)['drops_root'] is drops


def test_other_ports_and_values_that_look_like_options():
    argv = [QEMU, '-append', 'console=ttyS0', '-chardev', 'socket,id=c,path=/x/other.sock,server=on',
            '-device', 'virtserialport,chardev=c,name=org.example.other', '-name']
    info = parse_cmdline(argv)
    assert info['qga'] is None
    assert info['name'] is None  # a trailing -name with no value


def test_nil_uuid_is_no_uuid():
    assert normalize_uuid('00000000-0000-0000-0000-000000000000') is None
    assert normalize_uuid('') is None
    assert normalize_uuid('ABC') == 'abc'


def test_base_names():
    assert base_name({'name': 'web1', 'qmp': '/run/vms/x/qmp.sock'}) == 'web1'
    assert base_name({'name': None, 'qmp': '/run/vms/db2/qmp.sock'}) == 'db2'
    assert base_name({'qmp': 'hv1.example.com:4444'}) == 'hv1.example.com_4444'
    assert base_name({'qmp': '[::1]:4444'}) == '::1_4444'
    assert base_name({'qmp': None, 'pid': 4242}) == 'qemu-4242'
    assert socket_label(None) is None


def test_a_name_claimed_twice_belongs_to_none():
    vms = [
        {'name': 'web', 'pid': 300, 'qmp': '/c/qmp.sock', 'user': 'alice', 'qga': '/c/qga.sock'},
        {'name': 'web', 'pid': 100, 'qmp': '/a/qmp.sock', 'user': 'root', 'qga': None},
        {'name': 'web-pid300', 'pid': 50, 'qmp': '/z/qmp.sock'},  # a VM really named like a marked name
        {'name': None, 'pid': None, 'qmp': '/x/db/qmp.sock'},  # sockets option, no visible process
        {'name': 'db', 'pid': None, 'qmp': '/y/qmp.sock'},
        {'name': 'solo', 'pid': 400, 'qmp': '/d/qmp.sock'},
    ]
    names, conflicts = assign_host_names(vms)
    digest = {path: hashlib.sha256(path.encode()).hexdigest()[:8] for path in ('/x/db/qmp.sock', '/y/qmp.sock')}
    assert names == ['web-pid300-2', 'web-pid100', 'web-pid300', 'db-' + digest['/x/db/qmp.sock'],
                     'db-' + digest['/y/qmp.sock'], 'solo']
    assert conflicts == [('db', [3, 4]), ('web', [1, 0])]
    # the same whatever the order (pids decide nothing but the order within the warning)
    assert assign_host_names(list(reversed(vms)))[0] == list(reversed(names))
    assert assign_host_names([]) == ([], [])

    message = describe_conflict('web', [vms[1], vms[0]], [names[1], names[0]])
    assert message.startswith('2 VMs claim the name web, so none of them is web and a play for web matches no host: ')
    assert 'web-pid100 (pid 100, user root, QMP /a/qmp.sock, agent none)' in message
    assert 'web-pid300-2 (pid 300, user alice, QMP /c/qmp.sock, agent /c/qga.sock)' in message
    message = describe_conflict('db', vms[3:5], names[3:5])
    assert '(pid not visible, user unknown, QMP /x/db/qmp.sock' in message


def test_glob_groups_and_agent_templates():
    assert glob_regex('/run/vms/*/qmp.sock').match('/run/vms/web1/qmp.sock').groups() == ('web1',)
    assert glob_regex('/run/vms/*/qmp.sock').match('/run/vms/a/b/qmp.sock') is None
    assert glob_regex('/r/vm[0-9]?-*.sock').match('/r/vm1x-qmp.sock').groups() == ('1', 'x', 'qmp')
    assert glob_regex('/r/[!a]*.sock').match('/r/bc.sock').groups() == ('b', 'c')
    assert agent_address('{dir}/qga.sock', '/run/vms/web1/qmp.sock', '/run/vms/*/qmp.sock') == '/run/vms/web1/qga.sock'
    assert agent_address('/run/qga/{dirname}.sock', '/run/vms/web1/qmp.sock', '/run/vms/*/qmp.sock') == '/run/qga/web1.sock'
    assert agent_address('/r/{0}-qga.sock', '/r/web1-qmp.sock', '/r/*-qmp.sock') == '/r/web1-qga.sock'
    assert agent_address('{dir}/{stem}.qga', '/r/web1.qmp', '/r/*.qmp') == '/r/web1.qga'
    assert agent_address('{dir}/{file}.ga', '/r/a.qmp', '/r/a.qmp') == '/r/a.qmp.ga'
    assert agent_address(None, '/r/a', '/r/a') is None
    with pytest.raises(ParameterError) as caught:
        agent_address('{dir}/{1}.sock', '/r/a.qmp', '/r/*.qmp')
    assert caught.value.parameter == 'sockets'
    with pytest.raises(ParameterError):
        agent_address('{nope}', '/r/a.qmp', '/r/*.qmp')
