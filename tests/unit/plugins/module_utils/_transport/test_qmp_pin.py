# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The qemu.qmp pin.

_transport._Client overrides private qemu.qmp methods (_get_greeting, _cb_inbound,
_cb_outbound). They were tested with the versions requirements.txt pins; these tests
fail when the installed qemu.qmp is outside that pin, when the pin is written differently
where it is stated, or when qemu.qmp no longer has (or no longer calls) the methods we
override with the signatures we expect.
"""

from __future__ import annotations

import inspect
import pathlib
from importlib.metadata import version

from packaging.specifiers import SpecifierSet

from qemu.qmp import QMPError
from qemu.qmp.models import Greeting
from qemu.qmp.protocol import AsyncProtocol
from qemu.qmp.qmp_client import GreetingError, QMPClient

from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import _Client

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
    for doc in ('README.md', 'plugins/doc_fragments/_connection.py'):
        text = (ROOT / doc).read_text(encoding='utf-8')
        for pinned in pinned_versions():
            assert pinned in text, f'{doc} does not state the qemu.qmp pin {pinned}'


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
