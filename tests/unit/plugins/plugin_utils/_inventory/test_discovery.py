# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Discovery for the qemu.vm.qemu inventory: the /proc scan, socket patterns, and the parallel,
bounded queries against fake peers (real VMs are in tests/system/test_inventory.py)."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from harness.fake_peers import FakePeer, serve_qmp_handshake

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.discovery import (
    guest_ips,
    query_all,
    scan_processes,
    vms_from_processes,
    vms_from_sockets,
)
from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import SocketLock


def _fake_proc(root, pid, argv, cwd=None):
    directory = root / str(pid)
    directory.mkdir()
    if argv is not None:
        (directory / 'cmdline').write_bytes(b'\0'.join(a.encode() for a in argv) + b'\0')
    if cwd is not None:
        os.symlink(cwd, str(directory / 'cwd'))


def test_scan_keeps_qemu_processes_and_skips_vanished_ones(tmp_path):
    _fake_proc(tmp_path, 10, ['/usr/bin/qemu-system-x86_64', '-name', 'a', '-qmp', 'unix:q.sock,server=on'], '/vm/a')
    _fake_proc(tmp_path, 11, ['/bin/bash'])
    _fake_proc(tmp_path, 12, None)  # exited between listdir and open: no cmdline any more
    _fake_proc(tmp_path, 13, [])  # a zombie's cmdline is empty
    _fake_proc(tmp_path, 9, ['qemu-system-aarch64', '-name', 'b'])  # cwd not readable
    (tmp_path / 'self').mkdir()
    processes = scan_processes(str(tmp_path))
    assert [pid for pid, _argv, _cwd in processes] == [9, 10]
    vms = vms_from_processes(processes)
    assert [(vm['pid'], vm['name'], vm['qmp']) for vm in vms] == [(9, 'b', None), (10, 'a', '/vm/a/q.sock')]
    assert scan_processes(str(tmp_path / 'missing')) == []


def _listen(path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    return server


def test_socket_patterns(tmp_path):
    servers = []
    for name in ('web1', 'web2'):
        (tmp_path / name).mkdir()
        servers.append(_listen(tmp_path / name / 'qmp.sock'))
    servers.append(_listen(tmp_path / 'web1' / 'qga.sock'))
    (tmp_path / 'web3').mkdir()
    (tmp_path / 'web3' / 'qmp.sock').write_text('not a socket')
    try:
        processes = [(77, ['qemu-system-x86_64', '-name', 'two', '-uuid', 'U',
                           '-qmp', 'unix:{0},server=on'.format(tmp_path / 'web2' / 'qmp.sock'),
                           '-chardev', 'socket,id=g,path=/elsewhere/ga.sock,server=on',
                           '-device', 'virtserialport,chardev=g,name=org.qemu.guest_agent.0'], '/')]
        entries = [{'qmp': str(tmp_path / '*' / 'qmp.sock'), 'qga': '{dir}/qga.sock'},
                   {'qmp': str(tmp_path / 'web1' / 'qmp.sock')},  # matched already: listed once
                   {'qmp': str(tmp_path / 'gone' / 'qmp.sock')},  # nothing there: no VM
                   {'qmp': 'hv1.example.com:4444', 'qga': 'hv1.example.com:4445'}]
        vms = vms_from_sockets(entries, processes)
        assert [(vm['qmp'], vm['qga'], vm['pid'], vm['name'], vm['uuid']) for vm in vms] == [
            (str(tmp_path / 'web1' / 'qmp.sock'), str(tmp_path / 'web1' / 'qga.sock'), None, None, None),
            # no qga.sock beside it: the owning process' agent socket
            (str(tmp_path / 'web2' / 'qmp.sock'), '/elsewhere/ga.sock', 77, 'two', 'u'),
            ('hv1.example.com:4444', 'hv1.example.com:4445', None, None, None),
        ]
    finally:
        for server in servers:
            server.close()


@pytest.mark.parametrize('entry, message', [
    ({'qga': '/x'}, 'qmp (a glob pattern or host:port) is required'),
    ({'qmp': '/x', 'qag': '/y'}, 'unknown key(s) qag'),
    ('/run/vms/*/qmp.sock', 'each entry is a mapping'),
    ({'qmp': 'hv1:99999'}, 'port 99999'),
])
def test_socket_entries_are_checked(entry, message):
    with pytest.raises(ParameterError) as caught:
        vms_from_sockets([entry])
    assert caught.value.parameter == 'sockets'
    assert message in str(caught.value)


def test_guest_ips_leave_out_loopback_and_link_local():
    interfaces = [
        {'name': 'lo', 'ip-addresses': [{'ip-address': '127.0.0.1'}, {'ip-address': '::1'}]},
        {'name': 'eth0', 'ip-addresses': [{'ip-address': '10.0.2.15'}, {'ip-address': 'fe80::1%eth0'},
                                          {'ip-address': '2001:db8::5'}, {'ip-address': 'junk'}]},
        {'name': 'eth1'},
        {'name': 'eth2', 'ip-addresses': [{'ip-address': '10.0.2.15'}]},
    ]
    assert guest_ips(interfaces) == ['10.0.2.15', '2001:db8::5']
    assert guest_ips(None) == []


def _good_monitor(conn):
    serve_qmp_handshake(conn)
    replies = {'query-status': {'status': 'running', 'running': True}, 'query-name': {'name': 'fast'},
               'query-uuid': {'UUID': '00000000-0000-0000-0000-000000000000'}}
    while True:
        request = conn.read_request()
        conn.reply(request, replies[request['execute']])


def _good_agent(conn):
    conn.answer_sync()
    replies = {'guest-get-osinfo': {'id': 'debian', 'pretty-name': 'Debian'},
               'guest-get-host-name': {'host-name': 'fast-guest'}}
    while True:
        request = conn.read_request()
        if request['execute'] in replies:
            conn.reply(request, replies[request['execute']])
        else:
            conn.error(request, 'CommandNotFound', 'Command {0} has been disabled'.format(request['execute']))


def test_silent_peers_cost_the_bound_and_do_not_hold_up_the_others():
    release = threading.Event()

    def silent(conn):
        release.wait(30)  # accepted, never a greeting nor a sync reply

    with FakePeer(_good_monitor) as monitor, FakePeer(_good_agent) as agent, \
            FakePeer(silent) as held_monitor, FakePeer(silent) as dead_agent:
        lock = SocketLock(agent.path)
        vms = [
            {'name': None, 'qmp': monitor.path, 'qga': agent.path, 'notes': []},
            {'name': 'slow', 'qmp': held_monitor.path, 'qga': dead_agent.path, 'notes': []},
        ]
        try:
            query_all(vms, timeout=1.0)
        finally:
            release.set()
        fast, slow = vms
        assert fast['status'] == 'running' and fast['name'] == 'fast' and fast['uuid'] is None
        assert fast['version'] == '7.2.0'
        assert fast['agent_available'] is True
        assert fast['guest_os'] == {'id': 'debian', 'pretty_name': 'Debian'}
        assert fast['guest_hostname'] == 'fast-guest'
        assert 'guest_ips' not in fast  # disabled in the agent: noted, not fatal
        assert any('guest-network-get-interfaces' in note for note in fast['notes'])
        assert slow['name'] == 'slow' and 'status' not in slow and slow['agent_available'] is False
        assert len(slow['notes']) == 2

        # A qemu.vm task holding the agent's lock: the inventory waits only its bound.
        vms = [{'qmp': None, 'qga': agent.path, 'notes': []}]
        lock.acquire(5)
        try:
            query_all(vms, timeout=0.3)
        finally:
            lock.release()
        assert vms[0]['agent_available'] is False
        assert 'another qemu.vm task held this socket' in vms[0]['notes'][0]


def test_an_address_that_cannot_be_used_is_a_note():
    vms = [{'name': 'odd', 'qmp': 'hv1:99999', 'qga': None, 'notes': []}]
    query_all(vms, timeout=1)
    assert 'status' not in vms[0]
    assert 'out of range' in vms[0]['notes'][0]


def test_the_inventory_leaves_no_lock_file_behind():
    with FakePeer(_good_monitor) as monitor:
        vms = [{'name': None, 'qmp': monitor.path, 'qga': None, 'notes': []}]
        query_all(vms, timeout=5)
        assert vms[0]['status'] == 'running'
        assert os.listdir(os.path.dirname(monitor.path)) == ['peer.sock']
