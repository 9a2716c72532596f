# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest_transfer against an in-process stand-in for the agent's guest-file-* commands:
chunking, hashing, closing on every path, error wording. Real transfers are covered by
tests/system/test_connection_qga.py."""

from __future__ import annotations

import base64
import hashlib
import io
import os

import pytest

from harness.local_guest import LocalAgent

from ansible_collections.qemu.vm.plugins.module_utils._guest_file import transfer as gt
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import (
    GuestFileMissingError,
    GuestFileTimeoutError,
    GuestFileTooLargeError,
    GuestIsADirectoryError,
    GuestNoSpaceError,
    GuestNotAFileError,
    LocalFileError,
    LocalNoSpaceError,
)
from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandDisabledError, CommandError
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import classify_command_error


class FakeFiles:
    """guest-file-* over a dict of path -> bytearray; `fail` maps a command to the error it raises."""

    def __init__(self, files=None, fail=None, short_write=False):
        self.files = dict((k, bytearray(v)) for k, v in (files or {}).items())
        self.fail = dict(fail or {})
        self.short_write = short_write
        self.open_handles = {}
        self.sent = []

    def execute(self, command, arguments=None, timeout=None):
        self.sent.append((command, dict(arguments or {})))
        if command in self.fail:
            raise self.fail[command]
        if command == 'guest-file-open':
            path, mode = arguments['path'], arguments['mode']
            if 'w' in mode:
                self.files[path] = bytearray()
            elif path not in self.files:
                raise CommandError(command, 'GenericError', f'failed to open file \'{path}\' (mode: \'r\'): '
                                                            'No such file or directory')
            handle = 1000 + len(self.sent)
            self.open_handles[handle] = [path, 0]
            return handle
        if command == 'guest-file-close':
            del self.open_handles[arguments['handle']]
            return {}
        path, pos = self.open_handles[arguments['handle']]
        if command == 'guest-file-seek':
            size = len(self.files[path])
            position = {'set': 0, 'cur': pos, 'end': size}[arguments['whence']] + arguments['offset']
            self.open_handles[arguments['handle']][1] = position
            return {'position': position, 'eof': position >= size}
        if command == 'guest-file-read':
            data = bytes(self.files[path][pos:pos + arguments['count']])
            self.open_handles[arguments['handle']][1] += len(data)
            return {'count': len(data), 'buf-b64': base64.b64encode(data).decode(), 'eof': len(data) == 0}
        if command == 'guest-file-write':
            data = base64.b64decode(arguments['buf-b64'])
            if self.short_write:
                data = data[:-1]
            self.files[path] += data
            return {'count': len(data), 'eof': False}
        raise AssertionError(command)


@pytest.mark.parametrize('size', [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
def test_round_trip_in_small_chunks(size):
    data = os.urandom(size)
    agent = FakeFiles()
    digest, written = gt.upload(agent, io.BytesIO(data), '/g/f', chunk_size=4096)
    assert (digest, written) == (hashlib.sha256(data).hexdigest(), size)
    assert bytes(agent.files['/g/f']) == data
    writes = [args for command, args in agent.sent if command == 'guest-file-write']
    assert all(len(base64.b64decode(w['buf-b64'])) <= 4096 for w in writes)
    parts = []
    assert gt.download(agent, '/g/f', parts.append, chunk_size=4096) == (digest, size)
    assert b''.join(parts) == data
    assert not agent.open_handles


def test_put_and_fetch_files(tmp_path):
    src = tmp_path / 'src.bin'
    src.write_bytes(b'x' * 10000)
    agent = FakeFiles()
    gt.put_file(agent, str(src), '/g/copy', chunk_size=4096)
    dest = tmp_path / 'dest.bin'
    gt.fetch_file(agent, '/g/copy', str(dest).encode(), chunk_size=4096)
    assert dest.read_bytes() == b'x' * 10000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.qemu-vm-')] == []


def test_fetch_of_a_missing_file_leaves_nothing_behind(tmp_path):
    with pytest.raises(GuestFileMissingError) as info:
        gt.fetch_file(FakeFiles(), '/g/none', str(tmp_path / 'out'))
    assert '/g/none does not exist in the guest' in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_local_file():
    with pytest.raises(LocalFileError):
        gt.put_file(FakeFiles(), '/nonexistent/local', '/g/f')


def test_failed_write_closes_the_handle_and_reports_the_write():
    agent = FakeFiles(fail={'guest-file-write': CommandError('guest-file-write', 'GenericError',
                                                             'failed to write: No space left on device')})
    with pytest.raises(GuestNoSpaceError):
        gt.upload(agent, io.BytesIO(b'data'), '/g/f')
    assert not agent.open_handles


def test_short_write_is_an_error():
    with pytest.raises(GuestNoSpaceError) as info:
        gt.upload(FakeFiles(short_write=True), io.BytesIO(b'data'), '/g/f')
    assert 'short write' in str(info.value)


def test_blocked_file_commands_name_the_rpc_and_the_options():
    error = classify_command_error('guest-file-open', 'CommandNotFound', 'Command guest-file-open has been disabled')
    with pytest.raises(CommandDisabledError) as info:
        gt.upload(FakeFiles(fail={'guest-file-open': error}), io.BytesIO(b'x'), '/g/f')
    message = str(info.value)
    assert message.startswith('guest-file-open is blocked by the guest agent configuration')
    assert '--allow-rpcs' in message and '--block-rpcs' in message


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize('source', ['/dev/zero', 'link'])
def test_a_path_without_size_is_read_up_to_its_bound_and_leaves_nothing(tmp_path, source):
    """/dev/zero (or a link a guest user made to it) reports size 0 and never ends: the read stops at
    UNSIZED_LIMIT (or max_size) and no local file is left."""
    path = '/dev/zero'
    if source == 'link':
        path = str(tmp_path / 'innocent.log')
        os.symlink('/dev/zero', path)
    out = tmp_path / 'out'
    out.mkdir()
    agent = LocalAgent()
    with pytest.raises(GuestFileTooLargeError) as info:
        gt.fetch_file(agent, path, str(out / 'copy'))
    assert info.value.size_limit == gt.UNSIZED_LIMIT and 'reports no size' in str(info.value)
    assert leftovers(out) == [] and agent.handles == {}
    read = agent.calls.count('guest-file-read')
    assert read <= gt.UNSIZED_LIMIT // gt.DEFAULT_CHUNK + 1  # the bound, then one byte to see there is more
    with pytest.raises(GuestFileTooLargeError) as info:
        gt.download(agent, path, None, chunk_size=4096, max_size=10000)
    assert info.value.size_limit == 10000


def test_a_pseudo_file_within_the_bound_is_read_whole(tmp_path):
    data = gt.download(LocalAgent(), '/proc/self/status', None)
    assert data[0] is not None and data[1] > 0


def test_a_file_over_max_size_is_refused_before_any_read(tmp_path):
    big = tmp_path / 'big'
    big.write_bytes(b'x' * 5000)
    agent = LocalAgent()
    with pytest.raises(GuestFileTooLargeError) as info:
        gt.download(agent, str(big), None, max_size=4999)
    assert 'more than max_size (4999 bytes)' in str(info.value)
    assert 'guest-file-read' not in agent.calls and agent.handles == {}
    assert gt.download(agent, str(big), None, max_size=5000)[1] == 5000


def test_a_growing_file_is_cut_at_its_size_when_the_read_began(tmp_path):
    log = tmp_path / 'app.log'
    log.write_bytes(b'a' * 10000)
    agent = LocalAgent()

    def append(_arguments):
        with open(log, 'ab') as handle:
            handle.write(b'b' * 10000)
    agent.hooks['guest-file-read'] = append  # it grows while we read
    warnings, parts = [], []
    digest, size = gt.download(agent, str(log), parts.append, chunk_size=4096, warn=warnings.append)
    assert size == 10000 and b''.join(parts) == b'a' * 10000 and digest == hashlib.sha256(b'a' * 10000).hexdigest()
    assert len(warnings) == 1 and 'grew while it was read' in warnings[0]


def test_a_pipe_is_refused(tmp_path):
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # so that opening it for reading does not block
    try:
        with pytest.raises(GuestNotAFileError):
            gt.download(LocalAgent(), str(fifo), None)
    finally:
        os.close(writer)


def test_the_whole_read_has_one_deadline(tmp_path, monkeypatch):
    data = tmp_path / 'data'
    data.write_bytes(b'x' * 20000)
    agent = LocalAgent()
    agent.timeout = 0.0
    monkeypatch.setattr(gt, 'SLOWEST_BYTES_PER_SECOND', 10 ** 12)  # a bound of ~0 s: expired at the second chunk
    clock = iter(range(1000))
    monkeypatch.setattr(gt.Deadline, 'expired', property(lambda self: next(clock) > 0))
    out = tmp_path / 'out'
    out.mkdir()
    with pytest.raises(GuestFileTimeoutError) as info:
        gt.fetch_file(agent, str(data), str(out / 'copy'), chunk_size=4096)
    assert '4096 of 20000 bytes' in str(info.value)
    assert leftovers(out) == [] and agent.handles == {}


def test_free_space_is_checked_before_anything_is_written(tmp_path, monkeypatch):
    data = tmp_path / 'data'
    data.write_bytes(b'x' * 20000)
    out = tmp_path / 'out'
    out.mkdir()
    real = os.statvfs(str(out))

    class Full:
        f_bavail, f_frsize = 1, 4096
    monkeypatch.setattr(os, 'statvfs', lambda path: Full if path == str(out) else real)
    agent = LocalAgent()
    with pytest.raises(LocalNoSpaceError) as info:
        gt.fetch_file(agent, str(data), str(out / 'copy'))
    assert (info.value.bytes_needed, info.value.bytes_free) == (20000, 4096)
    assert leftovers(out) == [] and agent.calls.count('guest-file-read') == 1  # into memory, before the check


def test_a_directory_is_named_as_such_whatever_size_it_reports(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    with pytest.raises(GuestIsADirectoryError):
        gt.fetch_file(LocalAgent(), str(tmp_path), str(out / 'copy'))
    assert leftovers(out) == []


@pytest.mark.parametrize('mode', [0o600, 0o640])
def test_the_fetched_file_is_private_until_it_gets_its_mode_and_is_renamed(tmp_path, mode):
    data = tmp_path / 'data'
    data.write_bytes(b'secret' * 1000)
    out = tmp_path / 'out'
    out.mkdir()
    seen = []
    agent = LocalAgent()

    def look(_arguments):
        seen.extend((p.name, p.stat().st_mode & 0o777) for p in out.iterdir())
    agent.hooks['guest-file-read'] = look
    gt.fetch_file(agent, str(data), str(out / 'copy'), chunk_size=1024, mode=mode)
    assert seen and all(name.startswith('.qemu-vm-') and perms == 0o600 for name, perms in seen), seen
    assert leftovers(out) == ['copy'] and (out / 'copy').stat().st_mode & 0o777 == mode
    assert (out / 'copy').read_bytes() == data.read_bytes()
