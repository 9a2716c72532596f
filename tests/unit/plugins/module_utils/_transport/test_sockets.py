# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_transport.sockets: socket addresses, the classified connection errors, and the qemu.qmp pin.

_Client overrides private qemu.qmp methods (_get_greeting, _cb_inbound, _cb_outbound). They were
tested with the versions requirements.txt pins; the pin's tests fail when the installed qemu.qmp is
outside that pin, when the pin is written differently where it is stated, or when qemu.qmp no longer
has (or no longer calls) the methods we override with the signatures we expect.
"""

from __future__ import annotations

import inspect
import os
import pathlib
import socket
import subprocess
import sys
import textwrap
from importlib.metadata import version

import pytest
from packaging.specifiers import SpecifierSet
from qemu.qmp import QMPError
from qemu.qmp.models import Greeting
from qemu.qmp.protocol import AsyncProtocol
from qemu.qmp.qmp_client import GreetingError, QMPClient

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import QMP_TESTED_VERSION, _Client, connect_socket, parse_address, qmp_version_warning


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


# -- the qemu.qmp pin ---------------------------------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parents[5]

#: What _Client overrides: name -> (coroutine?, parameter names of qemu.qmp's method).
OVERRIDDEN = {
    '_get_greeting': (True, ['self']),
    '_cb_outbound': (False, ['self', 'msg']),
    '_cb_inbound': (False, ['self', 'msg']),
}


def pin(path):
    """The qemu.qmp requirement of a requirements file, as a SpecifierSet."""
    for line in path.read_text(encoding='utf-8').splitlines():
        line = line.split('#', 1)[0].strip()
        if line.startswith('qemu.qmp'):
            return SpecifierSet(line[len('qemu.qmp'):])
    raise AssertionError(f'{path} does not name qemu.qmp')


def pinned_versions():
    spec = pin(ROOT / 'requirements.txt')
    assert spec and all(s.operator == '==' for s in spec), \
        f'requirements.txt must pin qemu.qmp to the tested versions (==), found {str(spec)!r}'
    return [s.version for s in spec]


def test_installed_qemu_qmp_is_the_pinned_one():
    installed = version('qemu.qmp')
    assert installed in pinned_versions(), (
        f'qemu.qmp {installed} is installed, but _transport overrides its private methods and was tested with {pinned_versions()} '
        '(requirements.txt): check the overrides against this version, then move the pin')


def test_pin_is_the_same_wherever_it_is_stated():
    assert pin(ROOT / 'requirements-dev.txt') == pin(ROOT / 'requirements.txt')
    assert pinned_versions() == [QMP_TESTED_VERSION], 'sockets.QMP_TESTED_VERSION differs from requirements.txt'
    for doc in ('README.md', 'plugins/doc_fragments/_connection.py', 'plugins/connection/qga.py',
                'plugins/inventory/qemu.py'):
        text = (ROOT / doc).read_text(encoding='utf-8')
        for pinned in pinned_versions():
            assert f'qemu.qmp=={pinned}' in text, f'{doc} does not state the qemu.qmp pin {pinned}'


def test_another_qemu_qmp_version_gets_a_warning_naming_both():
    assert qmp_version_warning(QMP_TESTED_VERSION) is None
    assert qmp_version_warning() is None  # the installed one is the pinned one (test above)
    warning = qmp_version_warning('0.0.7')
    assert '0.0.7' in warning and f'qemu.qmp=={QMP_TESTED_VERSION}' in warning


def test_overridden_methods_exist_with_the_signatures_we_expect():
    ours = sorted(name for name in vars(_Client) if name.startswith('_') and not name.startswith('__'))
    assert ours == sorted(OVERRIDDEN), 'a new override of a qemu.qmp method: add it to OVERRIDDEN and the pin'
    for name, (coroutine, parameters) in OVERRIDDEN.items():
        theirs = getattr(QMPClient, name)
        assert inspect.iscoroutinefunction(theirs) is coroutine, name
        assert list(inspect.signature(theirs).parameters) == parameters, name
        assert inspect.iscoroutinefunction(getattr(_Client, name)) is coroutine, name
        assert list(inspect.signature(getattr(_Client, name)).parameters) == parameters, name
    # what our _get_greeting uses
    assert inspect.iscoroutinefunction(QMPClient._recv)
    assert list(inspect.signature(QMPClient._recv).parameters) == ['self']


def test_qemu_qmp_still_calls_the_overridden_methods():
    # An override qemu.qmp no longer calls would silently stop working.
    assert 'self._get_greeting()' in inspect.getsource(QMPClient._establish_session)
    assert 'self._cb_inbound(' in inspect.getsource(AsyncProtocol._recv)
    assert 'self._cb_outbound(' in inspect.getsource(AsyncProtocol._send)


def test_greeting_types_our_override_builds():
    greeting = Greeting({'QMP': {'version': {'qemu': {'major': 7, 'minor': 2, 'micro': 0}, 'package': ''},
                                 'capabilities': []}})
    assert greeting.QMP.version['qemu']['major'] == 7
    for bad in ({'event': 'JOB_STATUS_CHANGE'}, {'QMP': []}):  # what our override hands on as GreetingError
        try:
            Greeting(bad)
        except (QMPError, KeyError, TypeError):
            pass
        else:
            raise AssertionError(f'Greeting accepted {bad!r}')
    error = GreetingError('Did not understand Greeting', KeyError('QMP'))
    assert isinstance(error, QMPError) and 'Did not understand Greeting' in str(error)
