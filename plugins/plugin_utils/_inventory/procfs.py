# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This plugin_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Which processes may be trusted, and which listening sockets each one really holds.

Used by the qemu.vm.qemu inventory (discovery.py). A command line is text its process chose: it proves
nothing about a socket. A process is read only when all its user ids (real, effective, saved, filesystem)
are trusted (root, the user running the inventory, the `owners` option); anything else is never opened
beyond /proc/<pid>/status. A socket is a process' own when the process holds the listening socket bound
at that very file (its fds against the kernel's socket table) and the file belongs to the process' user.

The socket table comes from the kernel's sock_diag netlink interface, which names, for each listening
unix socket, the device and inode of the file it is bound to: exact, and nothing another user writes can
forge it. Only when sock_diag is unavailable is /proc/net/unix read instead: there a socket is known only
by the path it was bound with (another user can forge whole lines with a newline in a socket's path), so
the fallback matches paths, drops any socket listed twice, and accepts no root-owned file for a non-root
process (see `holds`).

Every file is opened relative to the process' /proc directory, opened once (a pid reused meanwhile cannot
answer for the old process), with O_NONBLOCK and checked to be a regular file: nothing planted can hang us.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import struct
import time

from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.cmdline import is_qemu_argv

_STATUS_LIMIT = 1 << 16
_CMDLINE_LIMIT = 1 << 22
_TABLE_LIMIT = 1 << 26
_SOCKET_LINK = re.compile(r'^socket:\[([0-9]+)\]$')
# /proc/net/unix: Num RefCount Protocol Flags Type St Inode Path (Flags 0x10000: listening; St 01: unconnected)
_NET_UNIX_LINE = re.compile(r'^[0-9a-fA-F]+: [0-9A-F]{8} [0-9A-F]{8} ([0-9A-F]{8}) [0-9A-F]{4} ([0-9A-F]{2}) +([0-9]+)(?: (.*))?$')
_SO_ACCEPTCON = 0x10000
# sock_diag (linux/sock_diag.h, linux/unix_diag.h, linux/netlink.h)
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_UDIAG_SHOW_NAME, _UDIAG_SHOW_VFS = 0x1, 0x2
_UNIX_DIAG_NAME, _UNIX_DIAG_VFS = 0, 1
_TCP_LISTEN = 10
_KERNEL_MINOR_BITS = 20


# -- pure: what the kernel's text and messages say ----------------------------------

def parse_uids(status):
    """(real, effective, saved, filesystem) uids from /proc/<pid>/status text, or None."""
    for line in status.splitlines():
        if line.startswith('Uid:'):
            try:
                uids = tuple(int(field) for field in line.split()[1:])
            except ValueError:
                return None
            return uids or None
    return None


def socket_inodes(links):
    """Socket inode numbers from /proc/<pid>/fd link targets ('socket:[1234]')."""
    inodes = set()
    for link in links:
        match = _SOCKET_LINK.match(link)
        if match:
            inodes.add(int(match.group(1)))
    return inodes


def parse_net_unix(text):
    """{inode: (path, None)} of the listening unix sockets bound to a file, from /proc/net/unix text.

    A path may hold a newline, so another user can make the kernel print whole lines of her choice:
    an inode listed twice is dropped, and a path is only ever taken as a claim (see `holds`).
    """
    table = {}
    repeated = set()
    for line in text.splitlines()[1:]:
        match = _NET_UNIX_LINE.match(line)
        if not match:
            continue
        flags, state, inode, path = match.groups()
        inode = int(inode)
        if inode in table or inode in repeated:
            table.pop(inode, None)
            repeated.add(inode)
            continue
        if int(flags, 16) & _SO_ACCEPTCON and state == '01' and path and not path.startswith('@'):
            table[inode] = (path, None)
    return table


def parse_net_tcp(text):
    """{inode: port} of the listening TCP sockets, from /proc/net/tcp or tcp6 text (numbers only)."""
    table = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != '0A':
            continue
        try:
            table[int(fields[9])] = int(fields[1].rpartition(':')[2], 16)
        except ValueError:
            continue
    return table


def diag_request():
    """A sock_diag dump request for the listening unix sockets, with their names and bound files."""
    body = struct.pack('=BBHIIIII', socket.AF_UNIX, 0, 0, 1 << _TCP_LISTEN, 0,
                       _UDIAG_SHOW_NAME | _UDIAG_SHOW_VFS, 0xffffffff, 0xffffffff)
    return struct.pack('=IHHII', 16 + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0) + body


def parse_diag(data, table):
    """Add the sockets of one sock_diag reply buffer to `table` ({inode: (path, (major, minor, ino))}).

    Returns True once the dump is complete; an error reply raises OSError.
    """
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from('=IH', data, offset)
        if length < 16 or offset + length > len(data):
            raise OSError(0, 'truncated sock_diag reply')
        if kind == _NLMSG_DONE:
            return True
        if kind == _NLMSG_ERROR:
            code = -struct.unpack_from('=i', data, offset + 16)[0]
            raise OSError(code, os.strerror(code) if code else 'sock_diag error')
        body = data[offset + 16:offset + length]
        offset += (length + 3) & ~3
        if len(body) < 16:
            continue
        inode = struct.unpack_from('=I', body, 4)[0]
        name = vfs = None
        cursor = 16
        while cursor + 4 <= len(body):
            size, attr = struct.unpack_from('=HH', body, cursor)
            if size < 4:
                break
            payload = body[cursor + 4:cursor + size]
            if attr == _UNIX_DIAG_NAME:
                name = payload
            elif attr == _UNIX_DIAG_VFS and len(payload) >= 8:
                ino, dev = struct.unpack_from('=II', payload)
                vfs = (dev >> _KERNEL_MINOR_BITS, dev & ((1 << _KERNEL_MINOR_BITS) - 1), ino)
            cursor += (size + 3) & ~3
        if name and vfs and not name.startswith(b'\0'):
            table[inode] = (name.rstrip(b'\0').decode('utf-8', 'surrogateescape'), vfs)
    return False


def file_identity(st):
    """A file's (major, minor, inode) as sock_diag reports a bound socket's file (inode truncated to 32 bits)."""
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino & 0xffffffff)


def owner_allowed(file_uid, process, exact):
    """Whether a socket file owned by `file_uid` may be the process' own.

    The file must belong to one of the process' uids. QEMU told to switch user (-runas, -run-with user=)
    creates its sockets as root before it drops root, so its files are root's: accepted, but only when the
    socket table is exact (bound file identity); a path-only match is a claim another user can forge.
    """
    if file_uid in process['uids']:
        return True
    return file_uid == 0 and bool(process.get('drops_root')) and exact


def _resolve(path, cwd):
    return os.path.normpath(path if os.path.isabs(path) or not cwd else os.path.join(cwd, path))


def holds(process, address, tables, stat_fn=os.stat):
    """(True, None) when `process` itself listens on `address`, else (False, why not)."""
    if process.get('sockets') is None:
        return False, 'its open files cannot be read'
    if '/' not in address:  # host:port
        port = address.rpartition(':')[2]
        if any(str(tables['tcp'].get(inode)) == port for inode in process['sockets']):
            return True, None
        return False, 'it does not listen on that port'
    try:
        st = stat_fn(address)
    except OSError as exc:
        return False, exc.strerror or str(exc)
    if not stat.S_ISSOCK(st.st_mode):
        return False, 'not a socket'
    exact = False
    for inode in process['sockets']:
        name, vfs = tables['unix'].get(inode, (None, None))
        if vfs is not None and vfs == file_identity(st):
            exact = True
            break
        if vfs is None and name and process.get('same_root') and _resolve(name, process.get('cwd')) == os.path.normpath(address):
            break
    else:
        return False, 'it does not hold that socket (the file is another listening socket, or none)'
    if not owner_allowed(st.st_uid, process, exact):
        return False, f"the socket file belongs to uid {st.st_uid}, not to the process' user"
    return True, None


# -- reading the kernel ---------------------------------------------------------------

def _read_at(dirfd, name, limit):
    """Up to `limit` bytes of a regular file under `dirfd`; never blocks on a FIFO or follows a link."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, f'{name} is not a regular file')
        chunks = []
        size = 0
        while size < limit:
            chunk = os.read(fd, min(1 << 16, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b''.join(chunks)
    finally:
        os.close(fd)


def _fd_sockets(dirfd):
    """Socket inodes among the process' open files; OSError when we may not read them."""
    fd_dir = os.open('fd', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        links = []
        for entry in os.listdir(fd_dir):
            try:
                links.append(os.readlink(entry, dir_fd=fd_dir))
            except OSError:
                continue  # closed meanwhile
        return socket_inodes(links)
    finally:
        os.close(fd_dir)


def _same_root(dirfd):
    try:
        theirs = os.stat('root', dir_fd=dirfd)
        ours = os.stat('/')
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def read_process(proc_root, pid, trusted):
    """{'pid', 'uids', 'argv', 'cwd', 'sockets', 'same_root', 'note'} of a trusted QEMU process, else None.

    'sockets' is None (and 'note' says why) when we may not read its open files.
    """
    try:
        dirfd = os.open(os.path.join(proc_root, str(pid)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        uids = parse_uids(_read_at(dirfd, 'status', _STATUS_LIMIT).decode('ascii', 'replace'))
        if not uids or not set(uids) <= trusted:
            return None  # another user's process: not read at all
        argv = [part.decode('utf-8', 'surrogateescape') for part in _read_at(dirfd, 'cmdline', _CMDLINE_LIMIT).split(b'\0')]
        if argv and argv[-1] == '':
            argv.pop()
        if not is_qemu_argv(argv):
            return None
        process = {'pid': pid, 'uids': uids, 'argv': argv, 'cwd': None, 'sockets': None, 'note': None,
                   'same_root': _same_root(dirfd)}
        try:
            process['cwd'] = os.readlink('cwd', dir_fd=dirfd)
        except OSError:
            pass
        try:
            process['sockets'] = _fd_sockets(dirfd)
        except OSError as exc:
            process['note'] = (f'pid {pid}: cannot read its open files as uid {os.geteuid()} ({exc.strerror or exc}): '
                               'no socket can be proven to be its own, so none is used')
        return process
    except OSError:
        return None  # gone (ENOENT, ESRCH), hidden (EACCES) or not what /proc holds
    finally:
        os.close(dirfd)


def scan_processes(proc_root='/proc', trusted=frozenset([0])):
    """Every trusted QEMU process (see read_process), by pid."""
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return []
    found = []
    for entry in entries:
        if entry.isdigit():
            process = read_process(proc_root, int(entry), trusted)
            if process is not None:
                found.append(process)
    return sorted(found, key=lambda process: process['pid'])


def _diag_table(timeout):
    table = {}
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_SOCK_DIAG)
    try:
        deadline = time.monotonic() + timeout
        sock.settimeout(timeout)
        sock.sendto(diag_request(), (0, 0))
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OSError(0, f'sock_diag did not finish within {timeout:g} s')
            sock.settimeout(remaining)
            if parse_diag(sock.recv(1 << 16), table):
                return table
    finally:
        sock.close()


def _read_table(path):
    dirfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _read_at(dirfd, os.path.basename(path), _TABLE_LIMIT).decode('utf-8', 'surrogateescape')
    finally:
        os.close(dirfd)


def read_socket_tables(timeout, proc_root='/proc'):
    """{'unix': {inode: (path, vfs or None)}, 'tcp': {inode: port}, 'note': why inexact or None}."""
    tables = {'unix': {}, 'tcp': {}, 'note': None}
    try:
        tables['unix'] = _diag_table(timeout)
    except (OSError, socket.timeout) as exc:
        try:
            tables['unix'] = parse_net_unix(_read_table(os.path.join(proc_root, 'net', 'unix')))
            tables['note'] = (f'sock_diag is not available ({exc}): unix sockets are matched by path from '
                              '/proc/net/unix, and a root-owned socket of a QEMU run with -runas is not used')
        except OSError as second:
            tables['note'] = f'no table of unix sockets (sock_diag: {exc}; /proc/net/unix: {second}): no unix socket is used'
    for name in ('tcp', 'tcp6'):
        try:
            tables['tcp'].update(parse_net_tcp(_read_table(os.path.join(proc_root, 'net', name))))
        except OSError:
            continue
    return tables
