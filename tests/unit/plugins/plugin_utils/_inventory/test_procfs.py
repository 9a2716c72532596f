# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whom the qemu.vm.qemu inventory trusts and which sockets a process really holds: the kernel's tables
(sock_diag messages, /proc/net/unix, /proc/net/tcp) and /proc/<pid>/fd links, canned; a fake /proc tree;
real socket files for the file identities (real processes of other users are in tests/system/test_inventory.py)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import types

import pytest

from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.procfs import (
    file_identity,
    holds,
    parse_diag,
    parse_net_tcp,
    parse_net_unix,
    parse_uids,
    read_process,
    scan_processes,
    socket_inodes,
)

ME = os.geteuid()
HEADER = 'Num       RefCount Protocol Flags    Type St Inode Path\n'


def _unix_line(inode, path=None, flags='00010000', state='01'):
    return f'0000000000000000: 00000002 00000000 {flags} 0001 {state} {inode}' + (f' {path}' if path else '') + '\n'


def test_uids_and_fd_links():
    status = 'Name:\tqemu-system-x86\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n'
    assert parse_uids(status) == (1000, 0, 0, 0)
    assert parse_uids('Name:\tx\n') is None
    assert parse_uids('Uid:\tx\ty\n') is None
    links = ['/dev/null', 'socket:[64232]', 'pipe:[12]', 'anon_inode:[eventfd]', 'socket:[7]', 'socket:[x]']
    assert socket_inodes(links) == {64232, 7}


def test_net_unix_keeps_listening_files_and_drops_forged_lines():
    text = HEADER + ''.join([
        _unix_line(100, '/run/vms/web1/qmp.sock'),
        _unix_line(101, '/run/vms/web1/qmp.sock', flags='00000000', state='03'),  # an accepted connection
        _unix_line(102, '@abstract'),
        _unix_line(103),  # listening, bound to no name
        _unix_line(104, 'relative.sock'),
        # Another user bound a socket whose path holds a newline: the kernel prints her text as a line of
        # its own, here claiming that inode 100 (web1's monitor) listens somewhere else.
        _unix_line(200, '/tmp/n'),
        _unix_line(100, '/tmp/evil/qmp.sock'),
        _unix_line(300, '/tmp/x/with space.sock'),
        'garbage\n',
    ])
    assert parse_net_unix(text) == {104: ('relative.sock', None), 200: ('/tmp/n', None),
                                    300: ('/tmp/x/with space.sock', None)}


def test_net_tcp_listeners():
    text = ('  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n'
            '   0: 0100007F:115C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 555 1 0 100 0 0 10 0\n'
            '   1: 020200C0:B6D4 507100CB:0050 01 00000000:00000000 00:00000000 00000000     0        0 556 1 0 100 0 0 10 0\n'
            '   2: short\n')
    assert parse_net_tcp(text) == {555: 4444}


def _diag_message(inode, name=None, vfs=None):
    attrs = b''
    if name is not None:
        attrs += struct.pack('=HH', 4 + len(name), 0) + name + b'\0' * (-len(name) % 4)
    if vfs is not None:
        attrs += struct.pack('=HHII', 12, 1, *vfs)
    body = struct.pack('=BBBBIII', socket.AF_UNIX, socket.SOCK_STREAM, 10, 0, inode, 0, 0) + attrs
    return struct.pack('=IHHII', 16 + len(body), 20, 2, 1, 0) + body


def test_sock_diag_replies():
    dev = (254 << 20) | 3
    table = {}
    first = _diag_message(10, b'/run/vms/a/qmp.sock\0', (2146327, dev)) + _diag_message(11, b'\0abstract', (1, dev))
    assert parse_diag(first, table) is False  # more to come
    done = _diag_message(12, b'/x.sock\0') + struct.pack('=IHHII', 20, 3, 2, 1, 0) + b'\0' * 4
    assert parse_diag(done, table) is True
    assert table == {10: ('/run/vms/a/qmp.sock', (254, 3, 2146327))}  # no file (11, 12): nothing to match
    with pytest.raises(OSError) as caught:
        parse_diag(struct.pack('=IHHIIi', 36, 2, 0, 1, 0, -13) + b'\0' * 16, {})
    assert caught.value.errno == 13
    with pytest.raises(OSError):
        parse_diag(struct.pack('=IHHII', 64, 20, 2, 1, 0), {})  # says 64 bytes, holds 16


@pytest.fixture
def sockets(tmp_path):
    """Two real listening sockets, a.sock and b.sock, and their socket inodes."""
    servers = {}
    for name in ('a', 'b'):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(tmp_path / f'{name}.sock'))
        server.listen(1)
        servers[name] = server
    yield dict((name, (str(tmp_path / f'{name}.sock'), os.fstat(server.fileno()).st_ino)) for name, server in servers.items())
    for server in servers.values():
        server.close()


def _process(uid=ME, held=(), drops_root=False, cwd='/', same_root=True):
    return {'pid': 42, 'uids': (uid,) * 4, 'sockets': set(held), 'drops_root': drops_root, 'cwd': cwd, 'same_root': same_root}


def _exact(sockets):
    return {'unix': dict((inode, (path, file_identity(os.stat(path)))) for path, inode in sockets.values()), 'tcp': {}}


def _owned_by(uid):
    def fake_stat(path):
        st = os.stat(path)
        return types.SimpleNamespace(st_mode=st.st_mode, st_dev=st.st_dev, st_ino=st.st_ino, st_uid=uid)
    return fake_stat


def test_a_process_holds_the_socket_bound_at_that_very_file(sockets):
    (a_path, a_inode), (b_path, b_inode) = sockets['a'], sockets['b']
    tables = _exact(sockets)
    assert holds(_process(held=[a_inode]), a_path, tables) == (True, None)
    # naming a path is nothing: the process holds b, not a
    held, why = holds(_process(held=[b_inode]), a_path, tables)
    assert not held and 'does not hold that socket' in why
    # a socket once bound at a's path, the file since replaced: same name, other file
    stale = {'unix': {77: (a_path, file_identity(os.stat(b_path)))}, 'tcp': {}}
    assert holds(_process(held=[77]), a_path, stale)[0] is False
    # the file belongs to another user than the process'
    held, why = holds(_process(uid=ME + 1, held=[a_inode]), a_path, tables)
    assert not held and f'belongs to uid {ME}' in why
    # we may not read its fds
    assert holds(dict(_process(), sockets=None), a_path, tables) == (False, 'its open files cannot be read')
    assert holds(_process(held=[a_inode]), a_path + '.missing', tables)[0] is False


def test_root_owned_sockets_of_a_qemu_that_drops_root(sockets):
    a_path, a_inode = sockets['a']
    exact = _exact(sockets)
    by_path = {'unix': {a_inode: (a_path, None)}, 'tcp': {}}
    root_owned = _owned_by(0)
    # QEMU -runas: the process is the user's, its sockets root's (created before it dropped root)
    assert holds(_process(uid=1000, held=[a_inode], drops_root=True), a_path, exact, root_owned) == (True, None)
    assert holds(_process(uid=1000, held=[a_inode]), a_path, exact, root_owned)[0] is False
    # from /proc/net/unix a path is a claim anyone can forge: no root-owned file for a non-root process
    assert holds(_process(uid=1000, held=[a_inode], drops_root=True), a_path, by_path, root_owned)[0] is False
    assert holds(_process(uid=1000, held=[a_inode], drops_root=True), a_path, by_path, _owned_by(1000)) == (True, None)
    # and a path means ours only when the process sees our root directory
    assert holds(_process(held=[a_inode]), a_path, by_path) == (True, None)
    assert holds(_process(held=[a_inode], same_root=False), a_path, by_path)[0] is False
    relative = {'unix': {a_inode: (os.path.basename(a_path), None)}, 'tcp': {}}
    assert holds(_process(held=[a_inode], cwd=os.path.dirname(a_path)), a_path, relative) == (True, None)


def test_tcp_monitors():
    tables = {'unix': {}, 'tcp': {555: 4444}}
    assert holds(_process(held=[555]), 'localhost:4444', tables) == (True, None)
    assert holds(_process(held=[555]), 'localhost:4445', tables)[0] is False
    assert holds(_process(held=[556]), 'localhost:4444', tables)[0] is False


def _fake_proc(root, pid, argv, uids=(0, 0, 0, 0), cwd='/', fds=(), status=True):
    directory = root / str(pid)
    directory.mkdir()
    if status:
        (directory / 'status').write_text('Name:\tqemu\nUid:\t{0}\nGid:\t0\t0\t0\t0\n'.format('\t'.join(map(str, uids))))
    if argv is not None:
        (directory / 'cmdline').write_bytes(b'\0'.join(a.encode() for a in argv) + b'\0')
    if cwd is not None:
        os.symlink(cwd, str(directory / 'cwd'))
    os.symlink('/', str(directory / 'root'))
    if fds is not None:
        (directory / 'fd').mkdir()
        for number, link in enumerate(fds):
            os.symlink(link, str(directory / 'fd' / str(number)))
    return directory


def test_only_trusted_qemu_processes_are_read(tmp_path):
    qemu = ['/usr/bin/qemu-system-x86_64', '-name', 'a']
    _fake_proc(tmp_path, 10, qemu, fds=['/dev/null', 'socket:[5]', 'socket:[6]'])
    _fake_proc(tmp_path, 11, ['/bin/bash'])
    _fake_proc(tmp_path, 12, qemu, uids=(1234, 1234, 1234, 1234))  # another user's
    _fake_proc(tmp_path, 13, qemu, uids=(1234, 0, 0, 0))  # a set-uid program another user started
    _fake_proc(tmp_path, 14, qemu, fds=None, cwd=None)  # fds not readable, cwd not readable
    _fake_proc(tmp_path, 15, None, status=False)  # exited between listdir and open
    _fake_proc(tmp_path, 16, [])  # a zombie's cmdline is empty
    _fake_proc(tmp_path, 17, qemu, uids=(ME, ME, ME, ME))
    os.mkfifo(str(_fake_proc(tmp_path, 18, None) / 'cmdline'))  # nothing /proc holds: never waited on
    (tmp_path / 'self').mkdir()
    trusted = frozenset([0, 5000])
    done = []
    worker = threading.Thread(target=lambda: done.append(scan_processes(str(tmp_path), trusted)), daemon=True)
    worker.start()
    worker.join(30)
    assert done, 'the scan hung'
    processes = done[0]
    assert [process['pid'] for process in processes] == [10, 14] + ([17] if ME in trusted else [])
    first, second = processes[:2]
    assert first['uids'] == (0, 0, 0, 0) and first['argv'] == qemu and first['cwd'] == '/'
    assert first['sockets'] == {5, 6} and first['same_root'] and first['note'] is None
    assert second['sockets'] is None and second['cwd'] is None
    assert 'pid 14: cannot read its open files' in second['note']
    assert scan_processes(str(tmp_path), frozenset([ME]))[-1]['pid'] == 17
    assert read_process(str(tmp_path), 99, trusted) is None
    assert scan_processes(str(tmp_path / 'missing')) == []
