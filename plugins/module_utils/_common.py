# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Ansible side of the transport: the common options, building the module, and the
single place where transport errors become fail_json.

Keep COMMON_ARGUMENT_SPEC in sync with plugins/doc_fragments/_connection.py.
"""

from __future__ import annotations

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    AgentNotRespondingError,
    ParameterError,
    QemuTimeoutError,
    QemuVMError,
    SocketPermissionError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest.session import AgentSession
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession, run_state_of
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import QMP_IMPORT_ERROR, parse_address, qmp_version_warning
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import check_seconds

# Every module of the action group accepts both sockets, so that
# module_defaults: {group/qemu.vm.qemu: {qmp: ..., qga: ...}} works for all of them.
COMMON_ARGUMENT_SPEC = dict(
    qmp=dict(type='str'),
    qga=dict(type='str'),
    timeout=dict(type='float', default=30.0),
)


def build_module(argument_spec=None, requires=(), durations=(), **kwargs):
    """An AnsibleModule with the common options merged in and validated.

    `requires` names the sockets ('qmp', 'qga') this module cannot work without;
    `durations` names the module's own options that are seconds (checked like `timeout`).
    """
    spec = dict(COMMON_ARGUMENT_SPEC)
    spec.update(argument_spec or {})
    module = AnsibleModule(argument_spec=spec, **kwargs)
    require_library(module, 'qemu.qmp', QMP_IMPORT_ERROR)
    if qmp_version_warning():
        module.warn(qmp_version_warning())
    for name in ('timeout',) + tuple(durations):
        if module.params.get(name) is not None:
            try:
                module.params[name] = check_seconds(name, module.params[name])
            except ParameterError as exc:
                module.fail_json(msg=str(exc), parameter=name)
    for name in requires:
        if not module.params.get(name):
            module.fail_json(msg='{0} is required: the path of the VM\'s {1} socket (or host:port)'.format(
                name, 'QMP monitor' if name == 'qmp' else 'guest agent'))
    for name in ('qmp', 'qga'):
        if module.params.get(name) is not None:
            try:
                parse_address(module.params[name])
            except ValueError as exc:
                module.fail_json(msg=f'{name}: {exc}')
    return module


def require_library(module, name, import_error, reason=None):
    """Fail the task when the Python library `name` could not be imported (import_error: its traceback)."""
    if import_error is not None:
        module.fail_json(msg=missing_required_lib(name, reason=reason), exception=import_error)


def qmp_session(module, timeout=None):
    return QMPSession(module.params['qmp'], timeout=timeout or module.params['timeout'])


def qga_session(module, timeout=None):
    """The module's agent session: opening it thaws a freeze an interrupted run of ours left."""
    return AgentSession(module.params['qga'], timeout=timeout or module.params['timeout'])


def run_module(module, run):
    """Call run(module) -> result dict and exit; every transport error fails the task here."""
    try:
        result = run(module)
    except QemuVMError as exc:
        exc = explain_silent_agent(module.params, exc)
        msg = str(exc)
        if isinstance(exc, SocketPermissionError):
            msg += ' (run the task as a user allowed to use it on the host that has it, for example with become: true)'
        module.fail_json(msg=msg, error_type=type(exc).__name__, **exc.details())
    module.exit_json(**result)


def explain_silent_agent(params, exc):
    """An agent that did not answer while QMP can be asked: when the VM is not running, say that."""
    if not isinstance(exc, (AgentNotRespondingError, QemuTimeoutError)) or not params.get('qmp') or not params.get('qga'):
        return exc
    state = run_state_of(params['qmp'], timeout=min(params['timeout'], 5.0))
    if state in (None, 'running', 'gone'):
        return exc
    return VMStateError('the VM is not running (QEMU run state {0!r}), so its guest agent cannot answer until it runs '
                        'again (QMP cont{1}): {2}'.format(
                            state, '; for an I/O error, fix its cause first' if state == 'io-error' else '', exc))


class Stopwatch:
    """Milliseconds since creation, for duration_ms style results."""

    def __init__(self):
        self._start = time.monotonic()

    @property
    def ms(self):
        return int(round((time.monotonic() - self._start) * 1000))
