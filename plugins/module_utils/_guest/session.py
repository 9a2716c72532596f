# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The agent session guest operations open: it first thaws a freeze of ours never confirmed thawed.

A quiesced snapshot or backup (quiesce.py) writes a marker before it freezes the guest and removes
it once guest-fsfreeze-status confirmed the thaw. When that run was interrupted (the VM paused,
the host rebooted, the guard gave up), the marker stays, and the next AgentSession on that agent
socket, in any process of the same user, thaws before anything else: modules (through _common),
the qga connection plugin, the inventory and power's probes open this session. The transport's
QGASession does no guest operation itself.

The marker is a file in the transport's private runtime directory (_transport/lock.py), named by
the socket: never beside the socket, never written through a link, a FIFO or another user's file;
such a thing in its place is a RuntimeFileError naming the path.
"""

from __future__ import annotations

import os

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import fsfreeze_status
from ansible_collections.qemu.vm.plugins.module_utils._guest.freeze import thaw
from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import (
    remove_runtime_file, runtime_file_exists, runtime_path, write_runtime_file,
)
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import QGASession
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import parse_address

FROZEN_SUFFIX = '.frozen'


def freeze_marker_path(address):
    """The file that says "a freeze of ours through this agent socket may not have been thawed yet"."""
    return runtime_path(parse_address(address), FROZEN_SUFFIX)


def remember_freeze(address):
    """Write the marker (before freezing): the next session on this socket thaws first."""
    write_runtime_file(parse_address(address), FROZEN_SUFFIX, f'{os.getpid()}\n'.encode('ascii'))


def forget_freeze(address):
    remove_runtime_file(parse_address(address), FROZEN_SUFFIX)


def freeze_remembered(address):
    return runtime_file_exists(parse_address(address), FROZEN_SUFFIX)


def thaw_interrupted_freeze(qga):
    """Thaw when the marker says a freeze of ours was never confirmed thawed; True when it thawed one.

    The marker is removed once guest-fsfreeze-status says 'thawed'; it stays otherwise. Through a
    connector (the socket is on another host, so is its marker) the connector says whether the marker
    is there; it is left for that host's next local session, which finds the guest thawed and removes it.
    """
    connector = getattr(qga, 'connector', None)
    remote = connector is not None
    if not (connector.freeze_remembered if remote else freeze_remembered(qga.address)):
        return False
    thawed = False
    try:
        if fsfreeze_status(qga) == 'frozen':
            thaw(qga)
            thawed = True
        if fsfreeze_status(qga) != 'thawed':
            return thawed
    except CommandError:
        return thawed  # an agent without freeze commands cannot be frozen by us either
    if not remote:
        forget_freeze(qga.address)
    return thawed


class AgentSession(QGASession):
    """A QGASession that, once open, thaws a freeze an interrupted run of ours left (see above)."""

    #: True when opening this session thawed a freeze an interrupted run of ours left.
    thawed_interrupted_freeze = False

    def _open(self, deadline):
        super()._open(deadline)
        self.thawed_interrupted_freeze = thaw_interrupted_freeze(self)
