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

from ansible_collections.qemu.vm.plugins.module_utils._guest_file import transfer as gt
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import GuestFileError, LocalFileError
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
    with pytest.raises(GuestFileError) as info:
        gt.fetch_file(FakeFiles(), '/g/none', str(tmp_path / 'out'))
    assert info.value.reason == 'missing' and '/g/none does not exist in the guest' in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_local_file():
    with pytest.raises(LocalFileError):
        gt.put_file(FakeFiles(), '/nonexistent/local', '/g/f')


def test_failed_write_closes_the_handle_and_reports_the_write():
    agent = FakeFiles(fail={'guest-file-write': CommandError('guest-file-write', 'GenericError',
                                                             'failed to write: No space left on device')})
    with pytest.raises(GuestFileError) as info:
        gt.upload(agent, io.BytesIO(b'data'), '/g/f')
    assert info.value.reason == 'no_space'
    assert not agent.open_handles


def test_short_write_is_an_error():
    with pytest.raises(GuestFileError) as info:
        gt.upload(FakeFiles(short_write=True), io.BytesIO(b'data'), '/g/f')
    assert 'short write' in str(info.value)


def test_blocked_file_commands_name_the_rpc_and_the_options():
    error = classify_command_error('guest-file-open', 'CommandNotFound', 'Command guest-file-open has been disabled')
    with pytest.raises(CommandDisabledError) as info:
        gt.upload(FakeFiles(fail={'guest-file-open': error}), io.BytesIO(b'x'), '/g/f')
    message = str(info.value)
    assert message.startswith('guest-file-open is blocked by the guest agent configuration')
    assert '--allow-rpcs' in message and '--block-rpcs' in message
