# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Discovery for the qemu.vm.qemu inventory: the /proc scan, socket patterns, and the parallel,
bounded queries against fake peers (real VMs are in tests/system/test_inventory.py)."""

from __future__ import annotations

import os
import re
import socket
import threading

import pytest

from harness.fake_peers import FakePeer, serve_qmp_handshake

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.discovery import (
    discover,
    drop_shared_sockets,
    guest_ips,
    query_all,
    trusted_uids,
    user_name,
    vms_from_processes,
    vms_from_sockets,
)
from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.procfs import file_identity
from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import SocketLock, open_runtime_dir

ME = os.geteuid()


def _listen(path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    return server


class Sockets:
    """Real listening sockets in a directory, and the kernel table that says who holds which."""

    def __init__(self, root):
        self.root = root
        self.servers = {}
        self.tables = {'unix': {}, 'tcp': {}}

    def add(self, relative):
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        server = _listen(path)
        inode = os.fstat(server.fileno()).st_ino
        self.servers[str(path)] = server
        self.tables['unix'][inode] = (str(path), file_identity(os.stat(str(path))))
        return str(path), inode

    def close(self):
        for server in self.servers.values():
            server.close()


@pytest.fixture
def sockets(tmp_path):
    made = Sockets(tmp_path)
    yield made
    made.close()


def _process(pid, argv, held=(), uid=ME, cwd='/'):
    return {'pid': pid, 'uids': (uid,) * 4, 'argv': argv, 'cwd': cwd, 'sockets': set(held), 'same_root': True, 'note': None}


def _qemu(name, qmp=None, qga=None):
    argv = ['qemu-system-x86_64', '-name', name]
    if qmp:
        argv += ['-qmp', f'unix:{qmp},server=on']
    if qga:
        argv += ['-chardev', f'socket,id=g,path={qga},server=on', '-device', 'virtserialport,chardev=g,name=org.qemu.guest_agent.0']
    return argv


NOT_HELD = 'it does not hold that socket (the file is another listening socket, or none)'


def test_a_vm_gets_only_the_sockets_its_process_holds(sockets):
    qmp, qmp_inode = sockets.add('a/qmp.sock')
    qga, qga_inode = sockets.add('a/qga.sock')
    _other, other_inode = sockets.add('b/qmp.sock')
    processes = [
        # names a's sockets, holds only its own b/qmp.sock: the command line proves nothing
        _process(5, _qemu('a', qmp, qga), held=[other_inode]),
        _process(10, _qemu('a', qmp, qga) + ['-qmp', 'tcp:127.0.0.1:4444,server=on'], held=[qmp_inode, qga_inode, 555]),
        dict(_process(11, _qemu('c', qmp, qga)), sockets=None, note='pid 11: cannot read its open files'),
    ]
    sockets.tables['tcp'] = {555: 4444}
    vms = vms_from_processes(processes, sockets.tables)
    assert [(vm['pid'], vm['name'], vm['qmp'], vm['qga'], vm['uid']) for vm in vms] == [
        (5, 'a', None, None, ME), (10, 'a', qmp, qga, ME), (11, 'c', None, None, ME)]
    assert vms[0]['notes'] == [f'pid 5 names QMP socket {qmp} but does not own it: {NOT_HELD}',
                               f'pid 5 names agent socket {qga} but does not own it: {NOT_HELD}']
    assert vms[1]['notes'] == [] and vms[1]['_info']['qmp'] == [qmp, '127.0.0.1:4444']
    assert vms[2]['notes'] == ['pid 11: cannot read its open files']


def test_socket_patterns(sockets):
    web1, _inode = sockets.add('web1/qmp.sock')
    web1_qga, _inode = sockets.add('web1/qga.sock')
    web2, web2_inode = sockets.add('web2/qmp.sock')
    agent, agent_inode = sockets.add('elsewhere/ga.sock')
    (sockets.root / 'web3').mkdir()
    (sockets.root / 'web3' / 'qmp.sock').write_text('not a socket')
    processes = [
        # a lower pid whose command line names web2's monitor: not its owner
        _process(7, _qemu('impostor', web2, agent)),
        _process(77, _qemu('two', web2, agent) + ['-uuid', 'U'], held=[web2_inode, agent_inode]),
    ]
    entries = [{'qmp': str(sockets.root / '*' / 'qmp.sock'), 'qga': '{dir}/qga.sock'},
               {'qmp': web1},  # matched already: listed once
               {'qmp': str(sockets.root / 'gone' / 'qmp.sock')},  # nothing there: no VM
               {'qmp': 'hv1.example.com:4444', 'qga': 'hv1.example.com:4445'}]
    warnings = []
    vms = vms_from_sockets(entries, processes, sockets.tables, frozenset([ME]), warnings)
    assert [(vm['qmp'], vm['qga'], vm['pid'], vm['name'], vm['uuid'], vm['uid']) for vm in vms] == [
        (web1, web1_qga, None, None, None, ME),
        # no qga.sock beside it: the agent socket its owning process holds
        (web2, agent, 77, 'two', 'u', ME),
        ('hv1.example.com:4444', 'hv1.example.com:4445', None, None, None, None),
    ]
    assert warnings == []

    # Socket files of users we do not trust are not listed.
    vms = vms_from_sockets(entries[:1], processes, sockets.tables, frozenset([ME + 1]), warnings)
    assert vms == []
    assert warnings == [f'{path} belongs to {user_name(ME)} (uid {ME}), who is not root, you or in owners: not listed'
                        for path in (web1, web2)]

    # An agent socket that the owning process does not hold is not its agent: the one it holds is.
    vms = vms_from_sockets([{'qmp': web2, 'qga': web1_qga}], processes, sockets.tables, frozenset([ME]), [])
    assert vms[0]['pid'] == 77 and vms[0]['qga'] == agent
    assert f'pid 77 names agent socket {web1_qga} but does not own it: {NOT_HELD}' in vms[0]['notes']

    # Two processes holding one socket (an inherited listener): the socket is listed, with neither.
    processes.append(_process(78, _qemu('three', web2), held=[web2_inode]))
    warnings = []
    vms = vms_from_sockets([{'qmp': web2}], processes, sockets.tables, frozenset([ME]), warnings)
    assert [(vm['pid'], vm['name'], vm['qga']) for vm in vms] == [(None, None, None)]
    assert warnings == [f'socket {web2} is held by pids 77, 78: it is listed without any of their names']


def test_a_socket_two_vms_claim_is_used_by_neither():
    vms = [{'pid': 1, 'qmp': '/a/qmp.sock', 'qga': '/shared/qga.sock'},
           {'pid': 2, 'qmp': '/b/qmp.sock', 'qga': '/shared/../shared/qga.sock'},
           {'pid': 3, 'qmp': 'hv:1', 'qga': None}]
    warnings = []
    drop_shared_sockets(vms, warnings)
    assert [(vm['qmp'], vm['qga']) for vm in vms] == [('/a/qmp.sock', None), ('/b/qmp.sock', None), ('hv:1', None)]
    assert warnings == ['agent socket /shared/qga.sock is held by pids 1, 2: used for none of them']


def test_owners():
    me = user_name(ME)
    assert trusted_uids() == frozenset([0, ME])
    assert trusted_uids([me, 4242, '4343']) == frozenset([0, ME, 4242, 4343])
    for bad, message in (('no-such-user-qemu-vm', "there is no user 'no-such-user-qemu-vm' on this host"),
                         ('', "a user name or uid, not ''"), (-1, 'a user name or uid, not -1'),
                         (True, 'a user name or uid, not True'), ({'a': 1}, 'a user name or uid')):
        with pytest.raises(ParameterError) as caught:
            trusted_uids(['root', bad])
        assert caught.value.parameter == 'owners'
        assert f'owners[1]: {message}' in str(caught.value)


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
        assert re.search(r'another qemu.vm task \(pid \d+, [^)]*\) held this socket', vms[0]['notes'][0]), vms[0]['notes']


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


def test_whatever_sits_at_the_lock_path_cannot_hang_the_inventory():
    with FakePeer(_good_monitor) as monitor:
        lock_path = SocketLock(monitor.path).path
        os.close(open_runtime_dir()[0])  # the private directory tasks make
        os.mkfifo(lock_path)  # opening it for reading would wait for a writer forever
        os.chmod(lock_path, 0o600)
        vms = [{'name': None, 'qmp': monitor.path, 'qga': None, 'notes': []}]
        worker = threading.Thread(target=query_all, args=(vms, 2), daemon=True)
        worker.start()
        worker.join(30)
        assert not worker.is_alive(), 'the inventory hung on a FIFO at the lock path'
        assert 'status' not in vms[0]
        assert vms[0]['notes'] == [f'QMP {monitor.path}: {lock_path}: is a FIFO, not a regular file qemu.vm made; '
                                   'nothing was read or written through it: remove it']
        os.unlink(lock_path)
        os.symlink('/etc/passwd', lock_path)
        vms = [{'name': None, 'qmp': monitor.path, 'qga': None, 'notes': []}]
        query_all(vms, 2)
        assert f'{lock_path}: is a symbolic link' in vms[0]['notes'][0] and 'status' not in vms[0]
        os.unlink(lock_path)


def test_discover_a_trusted_process_with_a_fake_proc(tmp_path):
    with FakePeer(_good_monitor) as monitor:
        inode = 4242
        tables = {'unix': {inode: (monitor.path, file_identity(os.stat(monitor.path)))}, 'tcp': {}}
        pid_dir = tmp_path / '10'
        (pid_dir / 'fd').mkdir(parents=True)
        (pid_dir / 'status').write_text(f'Name:\tqemu\nUid:\t{ME}\t{ME}\t{ME}\t{ME}\n')
        (pid_dir / 'cmdline').write_bytes(b'\0'.join(arg.encode() for arg in _qemu('vm-a', monitor.path)))
        os.symlink('/', str(pid_dir / 'root'))
        os.symlink(f'socket:[{inode}]', str(pid_dir / 'fd' / '3'))
        vms, warnings = discover(timeout=5, proc_root=str(tmp_path), tables=tables)
        assert warnings == []
        assert [(vm['pid'], vm['name'], vm['qmp'], vm['status'], vm['user']) for vm in vms] == [
            (10, 'vm-a', monitor.path, 'running', user_name(ME))]
        assert '_info' not in vms[0]
        # nobody trusted holds it any more: listed without its socket
        vms, warnings = discover(timeout=5, proc_root=str(tmp_path), tables={'unix': {}, 'tcp': {}})
        assert [(vm['pid'], vm['qmp'], vm['status']) for vm in vms] == [(10, None, None)]
