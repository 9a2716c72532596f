# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_guest_file's streaming and decisions against an in-memory agent.

The real agent is exercised in tests/system/test_guest_file.py; this fake covers what
a real guest cannot easily show: every write's size, handles after a failure on any
command, a connection lost mid-transfer, and peak memory.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import posixpath
import tracemalloc

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._guest_file import state as gf
from ansible_collections.qemu.vm.plugins.module_utils._guest_file import files as gfs
from ansible_collections.qemu.vm.plugins.module_utils._guest_file import transfer as gt
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import (
    GuestExecUnavailableError,
    GuestFileError,
    GuestNoSpaceError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.local import Source
from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    ConnectionLostError,
    GuestFrozenError,
)

MIB = 1024 * 1024


class FakeAgent:
    """Enough of qemu-ga for streaming: guest-file-*, no guest-exec (harness.local_guest runs the POSIX tools)."""

    timeout = 30.0

    def __init__(self, files=None, blocked=('guest-exec', 'guest-exec-status'), keep_data=True, fail_on=None):
        self.files = dict((k, bytearray(v)) for k, v in (files or {}).items())
        self.dirs = {'/', '/data'}
        self.modes = {}
        self.owners = {}
        self.blocked = set(blocked)
        self.keep_data = keep_data
        self.fail_on = fail_on or {}  # command -> (call number, desc) or an exception
        self.handles = {}
        self.next_handle = 1000
        self.calls = []
        self.writes = []
        self.reconnects = 0
        self.frozen = False
        self.hashers = {}
        self._exec = {}

    # -- session --------------------------------------------------------------------------

    def close(self):
        pass

    def open(self):
        self.reconnects += 1

    def command_state(self, name):
        return 'disabled' if name in self.blocked else 'enabled'

    def info(self):
        names = ['guest-file-open', 'guest-file-read', 'guest-file-write', 'guest-file-close', 'guest-file-seek',
                 'guest-fsfreeze-status']
        return {'version': '7.2.0', 'supported_commands': [{'name': n, 'enabled': n not in self.blocked} for n in names]}

    def execute(self, command, arguments=None, timeout=None):
        arguments = arguments or {}
        self.calls.append(command)
        if command in self.blocked:
            raise CommandError(command, 'CommandNotFound', f'Command {command} has been disabled')
        failure = self.fail_on.get(command)
        if failure is not None:
            number, error = failure
            if self.calls.count(command) == number:
                if isinstance(error, Exception):
                    raise error
                raise CommandError(command, 'GenericError', error)
        handler = getattr(self, '_' + command.replace('-', '_'))
        return handler(**dict((k.replace('-', '_'), v) for k, v in arguments.items()))

    # -- guest-file-* -----------------------------------------------------------------------

    def _guest_file_open(self, path, mode='r'):
        if path in self.dirs and 'w' in mode:
            raise CommandError('guest-file-open', 'GenericError',
                               f"failed to open file '{path}' (mode: '{mode}'): Is a directory")
        if 'w' in mode:
            if posixpath.dirname(path) not in self.dirs:
                raise CommandError('guest-file-open', 'GenericError',
                                   f"failed to open file '{path}' (mode: '{mode}'): No such file or directory")
            self.files[path] = bytearray()
            self.modes.setdefault(path, 0o666)
            self.hashers[path] = hashlib.sha256()
        elif path not in self.files and path not in self.dirs:
            raise CommandError('guest-file-open', 'GenericError',
                               f"failed to open file '{path}' (mode: '{mode}'): No such file or directory")
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = [path, 0]
        return handle

    def _guest_file_read(self, handle, count=4096):
        path, pos = self.handles[handle]
        if path in self.dirs:
            raise CommandError('guest-file-read', 'GenericError', 'failed to read file: Is a directory')
        data = bytes(self.files[path][pos:pos + count])
        self.handles[handle][1] = pos + len(data)
        return {'count': len(data), 'buf-b64': base64.b64encode(data).decode(), 'eof': len(data) < count}

    def _guest_file_write(self, handle, buf_b64):
        path = self.handles[handle][0]
        data = base64.b64decode(buf_b64)
        self.writes.append(len(data))
        self.hashers[path].update(data)
        if self.keep_data:
            self.files[path] += data
        return {'count': len(data), 'eof': False}

    def _guest_file_seek(self, handle, offset, whence):
        path = self.handles[handle][0]
        size = len(self.files.get(path, b''))
        position = {'set': offset, 'cur': self.handles[handle][1] + offset, 'end': size + offset}[whence]
        self.handles[handle][1] = position
        return {'position': position, 'eof': position >= size}

    def _guest_file_close(self, handle):
        del self.handles[handle]

    def _guest_fsfreeze_status(self):
        return 'frozen' if self.frozen else 'thawed'


def source_file(tmp_path, size, name='src.bin'):
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return Source(path=str(path))


def write(agent, source, chunk):
    guest = gfs.GuestFileSystem(agent, chunk)
    return guest, guest.write_stream('/data/f', source)


# -- streaming ----------------------------------------------------------------------------------


@pytest.mark.parametrize('size', [0, 1, 4095, 4096, 4097, 3 * 4096 + 1])
def test_writes_are_full_chunks_and_byte_exact(tmp_path, size):
    agent = FakeAgent()
    source = source_file(tmp_path, size)
    guest, (digest, written) = write(agent, source, 4096)
    data = (tmp_path / 'src.bin').read_bytes()
    assert (digest, written) == (hashlib.sha256(data).hexdigest(), size)
    assert bytes(agent.files['/data/f']) == data
    assert agent.writes == [4096] * (size // 4096) + ([size % 4096] if size % 4096 else [])
    assert agent.handles == {}
    assert guest.written_bytes == size


@pytest.mark.parametrize('size', [0, 1, 4095, 4096, 4097])
def test_reads_hash_while_streaming(size):
    data = os.urandom(size)
    agent = FakeAgent({'/data/f': data})
    guest = gfs.GuestFileSystem(agent, 4096)
    parts = []
    digest, got = guest.read_stream('/data/f', parts.append)
    assert (digest, got) == (hashlib.sha256(data).hexdigest(), size)
    assert b''.join(parts) == data
    # Up to the size the file reported, then one byte more to see whether it grew (an empty one reports no size).
    assert agent.calls.count('guest-file-read') == (-(-size // 4096) + 1 if size else 1)
    assert agent.handles == {}
    assert guest.read_bytes == size


def test_read_small_stops_past_the_limit():
    agent = FakeAgent({'/data/big': b'x' * 10000, '/data/small': b'y' * 100})
    guest = gfs.GuestFileSystem(agent, 4096)
    assert guest.read_small('/data/big', 1000) is None
    assert guest.read_small('/data/small', 1000) == b'y' * 100
    assert agent.handles == {}


def test_content_source_needs_no_copy():
    data = b'hello'
    agent = FakeAgent()
    guest = gfs.GuestFileSystem(agent, 4096)
    digest, size = guest.write_stream('/data/f', Source(data=data))
    assert bytes(agent.files['/data/f']) == data and size == 5 and digest == hashlib.sha256(data).hexdigest()


def test_write_chunk_stays_under_the_agent_json_limit(tmp_path, monkeypatch):
    # 64 MiB of JSON tokens per request: the base64 text plus the rest of the request must fit.
    assert 4 * math.ceil(gt.MAX_WRITE_CHUNK / 3.0) + 1024 < 64 * MIB
    monkeypatch.setattr(gt, 'MAX_WRITE_CHUNK', 1000)
    agent = FakeAgent()
    write(agent, source_file(tmp_path, 2500), gf.MAX_CHUNK)
    assert agent.writes == [1000, 1000, 500]


def test_memory_is_bounded_by_the_chunk_not_the_file(tmp_path):
    source = source_file(tmp_path, 32 * MIB)
    agent = FakeAgent(keep_data=False)
    tracemalloc.start()
    try:
        write(agent, source, MIB)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert agent.writes == [MIB] * 32
    # One chunk, its base64 text and the fake's decoded copy: a few MiB, not 32.
    assert peak < 6 * MIB, peak


@pytest.mark.parametrize('command', ['guest-file-write', 'guest-file-read'])
def test_handle_closed_when_a_command_fails(tmp_path, command):
    agent = FakeAgent({'/data/g': b'z' * 10000},
                      fail_on={command: (2, 'failed to write to file: No space left on device')})
    guest = gfs.GuestFileSystem(agent, 4096)
    with pytest.raises(GuestFileError) as caught:
        if command == 'guest-file-write':
            guest.write_stream('/data/f', source_file(tmp_path, 10000))
        else:
            guest.read_stream('/data/g')
    assert agent.handles == {}
    if command == 'guest-file-write':
        assert isinstance(caught.value, GuestNoSpaceError) and 'full' in str(caught.value)


def test_handle_closed_after_a_lost_connection(tmp_path):
    agent = FakeAgent(fail_on={'guest-file-write': (1, ConnectionLostError('qga.sock', 'gone'))})
    guest = gfs.GuestFileSystem(agent, 4096)
    # The first close attempt finds the session lost too; the second, after reconnecting, works.
    original = agent._guest_file_close
    attempts = []

    def close(handle):
        attempts.append(handle)
        if len(attempts) == 1:
            raise ConnectionLostError('qga.sock', 'gone')
        return original(handle)

    agent._guest_file_close = close
    with pytest.raises(ConnectionLostError):
        guest.write_stream('/data/f', source_file(tmp_path, 10))
    assert agent.reconnects == 1 and agent.handles == {}


def test_blocked_file_commands_are_named():
    agent = FakeAgent({'/data/g': b'z'}, blocked=gt.FILE_COMMANDS)
    guest = gfs.GuestFileSystem(agent, 4096)
    with pytest.raises(CommandDisabledError) as caught:
        guest.read_stream('/data/g')
    message = str(caught.value)
    assert 'file commands blocked' in message and 'guest-file-read' in message and 'RHEL' in message
    assert [c for c in agent.calls if c.startswith('guest-file')] == []


# -- decisions (the exec path is in test_replace.py, against a real filesystem) -----------------------


def present(agent, data, check_mode=False, **desired):
    guest = gfs.GuestFileSystem(agent, 4096)
    return gf.ensure_present(guest, Source(data=data), gf.Desired('/data/f', **desired), check_mode)


def test_present_without_exec_needs_follow_then_streams_and_writes_in_place():
    agent = FakeAgent({'/data/f': b'old'})
    # Without guest-exec nothing tells a link from a file, and the agent writes through links.
    with pytest.raises(GuestExecUnavailableError) as caught:
        present(agent, b'new')
    assert 'follow=true' in str(caught.value) and agent.writes == []
    same = present(agent, b'old', follow=True)
    assert (same['changed'], same['compared_by']) == (False, 'stream')
    other = present(agent, b'new', follow=True)
    assert (other['changed'], other['atomic']) == (True, False)
    assert bytes(agent.files['/data/f']) == b'new' and agent.handles == {}
    with pytest.raises(GuestExecUnavailableError) as caught:
        present(agent, b'new', mode=0o600, follow=True)
    assert 'guest-exec' in str(caught.value)
    agent.fail_on = {'guest-file-write': (agent.calls.count('guest-file-write') + 1, 'failed to write to file: '
                                          'No space left on device')}
    with pytest.raises(GuestNoSpaceError) as caught:
        present(agent, b'newer', follow=True)
    assert 'may now be incomplete' in str(caught.value) and caught.value.path == '/data/f'
    assert agent.handles == {}


def test_present_check_mode_writes_nothing():
    agent = FakeAgent()
    result = present(agent, b'data', check_mode=True, follow=True)
    assert result['changed'] and result['checksum'] == hashlib.sha256(b'data').hexdigest()
    assert agent.files == {} and 'guest-file-write' not in agent.calls


@pytest.mark.parametrize('state', ['present', 'absent'])
def test_frozen_guest_says_how_to_thaw(state):
    agent = FakeAgent({'/data/f': b'x'}, blocked=gt.FILE_COMMANDS + gfs.EXEC_COMMANDS)
    agent.frozen = True
    guest = gfs.GuestFileSystem(agent, 4096)
    with pytest.raises(GuestFrozenError) as caught:
        if state == 'present':
            gf.ensure_present(guest, Source(data=b'y'), gf.Desired('/data/f'))
        else:
            gf.ensure_absent(guest, '/data/f')
    assert 'thaw' in str(caught.value)


def test_absent_without_exec():
    agent = FakeAgent({'/data/f': b'x'})
    guest = gfs.GuestFileSystem(agent, 4096)
    assert gf.ensure_absent(guest, '/data/missing')['changed'] is False
    with pytest.raises(GuestExecUnavailableError) as caught:
        gf.ensure_absent(guest, '/data/f')
    assert 'guest-exec' in str(caught.value) and 'no delete command' in str(caught.value)
    assert agent.handles == {}


def test_attribute_changes():
    current = gfs.GuestStat(3, 0o644, 1000, 50, 'alice', 'staff', 'file')
    assert gf.Desired('/f', 0o644, 'alice', '50').attribute_changes(current) == {}
    assert gf.Desired('/f', 0o600, '1000', 'root').attribute_changes(current) == {
        'mode': ('0644', '0600'), 'group': ('staff', 'root')}
    assert gf.Desired('/f', 0o600).attribute_changes(None) == {'mode': (None, '0600')}


# -- input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize('value, mode', [('0644', 0o644), ('644', 0o644), ('1777', 0o1777), (0o600, 0o600),
                                         (420, 0o644), (None, None)])
def test_good_modes(value, mode):
    assert gf.parse_mode(value) == mode


@pytest.mark.parametrize('value', ['u+rw', '0888', '99999', True, 0o10000, ''])
def test_bad_modes(value):
    with pytest.raises(ValueError) as caught:
        gf.parse_mode(value)
    assert 'mode' in str(caught.value)


@pytest.mark.parametrize('path', ['/a', '/a/b.txt', 'C:\\Windows\\x.txt', 'c:/x'])
def test_good_paths(path):
    gf.check_guest_path(path)


@pytest.mark.parametrize('path', ['', 'rel/x', './x', '/data/', 'a\0b'])
def test_bad_paths(path):
    with pytest.raises(ValueError) as caught:
        gf.check_guest_path(path)
    assert str(caught.value).startswith('path ')


def test_chunk_size_bounds():
    assert gf.check_chunk_size(None) == MIB  # the default, figure 2 of bench/results.md
    assert gf.check_chunk_size(48 * MIB) == 48 * MIB
    for bad in (0, 1023, 48 * MIB + 1):
        with pytest.raises(ValueError) as caught:
            gf.check_chunk_size(bad)
        assert 'chunk_size' in str(caught.value)


def test_stat_parsing():
    st = gfs.GuestStat.parse('25 644 0 0 1 2049:131:0:81a4 root root regular file\n')
    assert (st.size, st.mode, st.kind, st.user, st.links, st.identity) == (25, 0o644, 'file', 'root', 1, '2049:131:0:81a4')
    assert gfs.GuestStat.parse('0 4755 1 2 3 1:2:1:89ed a b regular empty file').kind == 'file'
    assert gfs.GuestStat.parse('9 777 0 0 1 1:2:0:a1ff root root symbolic link').kind == 'link'
    with pytest.raises(ValueError):
        gfs.GuestStat.parse('9 777 0 0 1 1:2 root root symbolic link')
    with pytest.raises(ValueError):
        gfs.GuestStat.parse('garbage')


def test_throughput():
    assert gf.throughput(0, 100) == 0.0
    assert gf.throughput(10 ** 6, 500) == 2.0
