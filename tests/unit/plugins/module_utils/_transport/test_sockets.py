# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Socket addresses and the classified connection errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import connect_socket, parse_address


@pytest.mark.parametrize('text, expected', [
    ('/run/qemu/vm1/qmp.sock', '/run/qemu/vm1/qmp.sock'),
    ('qmp.sock', 'qmp.sock'),
    ('127.0.0.1:4444', ('127.0.0.1', 4444)),
    ('localhost:4444', ('localhost', 4444)),
    ('[::1]:4444', ('::1', 4444)),
    ('./host:4444', './host:4444'),
])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize('text', ['', 'host:70000'])
def test_parse_address_rejects(text):
    with pytest.raises(ValueError):
        parse_address(text)


def test_missing_socket(tmp_path):
    path = str(tmp_path / 'absent.sock')
    with pytest.raises(errors.SocketMissingError) as caught:
        connect_socket(path, 1)
    assert path in str(caught.value)


def test_regular_file_is_not_a_socket(tmp_path):
    path = tmp_path / 'file'
    path.write_text('x')
    with pytest.raises(errors.SocketError) as caught:
        connect_socket(str(path), 1)
    assert 'not a unix socket' in str(caught.value)


def test_stale_socket_is_refused(tmp_path):
    path = str(tmp_path / 'stale.sock')
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.close()  # the file stays, nobody listens: QEMU died
    with pytest.raises(errors.SocketRefusedError) as caught:
        connect_socket(path, 1)
    assert 'QEMU is not running' in str(caught.value)


def test_tcp_refused():
    probe = socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(errors.SocketRefusedError):
        connect_socket(('127.0.0.1', port), 1)


CONNECT_AS_NOBODY = textwrap.dedent('''
    import os, sys
    os.setgid(65534)
    os.setuid(65534)
    from ansible_collections.qemu.vm.plugins.module_utils import _errors
    from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import connect_socket
    try:
        connect_socket(sys.argv[1], 1)
    except _errors.SocketPermissionError as exc:
        print('permission:', exc)
''')


def test_permission_denied(tmp_path):
    os.chmod(str(tmp_path), 0o755)
    path = str(tmp_path / 'private.sock')
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    os.chmod(path, 0o600)
    try:
        if os.geteuid() == 0:
            # The system interpreter: a venv's base may sit where nobody cannot read it.
            python = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable
            out = subprocess.run([python, '-c', CONNECT_AS_NOBODY, path], stdout=subprocess.PIPE,
                                 text=True, check=True).stdout
            assert out.startswith('permission: ' + path)
        else:
            os.chmod(path, 0)
            with pytest.raises(errors.SocketPermissionError):
                connect_socket(path, 1)
    finally:
        server.close()
