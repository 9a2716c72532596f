# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest.agent: a command the agent lacks, has disabled, or refuses while frozen (an in-process
stand-in for QGASession)."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._guest import freeze as freezing
from ansible_collections.qemu.vm.plugins.module_utils._guest import agent as guest
from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandNotFoundError,
    GuestFrozenError,
)

from .helpers import FROZEN_ALLOWED, FakeAgent


def test_command_missing_disabled_or_frozen():
    agent = FakeAgent(commands=list(FROZEN_ALLOWED))
    with pytest.raises(CommandNotFoundError) as caught:
        freezing.require_freeze_support(agent, [])
    assert 'qemu-ga 9.9.9' in str(caught.value) and 'does not offer guest-fsfreeze-freeze' in str(caught.value)
    agent = FakeAgent(frozen=True)
    with pytest.raises(GuestFrozenError) as caught:
        guest.require_command(agent, 'guest-shutdown')
    assert 'qemu.vm.qemu_guest_fsfreeze state=thawed' in str(caught.value)
    agent = FakeAgent(blocked=['guest-shutdown'])
    error = guest.command_unavailable(agent, 'guest-shutdown')
    assert type(error).__name__ == 'CommandDisabledError' and 'blocked by the agent configuration' in str(error)
