# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the _guest tests share: an in-process stand-in for QGASession."""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._guest import facts as guest_facts
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import classify_command_error


FROZEN_ALLOWED = ('guest-ping', 'guest-info', 'guest-sync', 'guest-sync-delimited',
                  'guest-fsfreeze-status', 'guest-fsfreeze-thaw')


class FakeAgent:
    """Answers like qemu-ga: `replies` maps a command to a value or an exception to raise."""

    timeout = 5.0

    def __init__(self, replies=None, commands=None, frozen=False, blocked=()):
        self.replies = dict(replies or {})
        self.frozen = frozen
        self.blocked = set(blocked)
        self.sent = []
        names = commands if commands is not None else (
            list(FROZEN_ALLOWED) + [entry[1] for entry in guest_facts.FACT_SUBSETS] + [
                'guest-fsfreeze-freeze', 'guest-fsfreeze-freeze-list', 'guest-shutdown', 'guest-suspend-ram'])
        self.commands = list(dict.fromkeys(names))

    def info(self):
        return {'version': '9.9.9', 'supported_commands': [
            {'name': n, 'enabled': self._enabled(n)} for n in self.commands]}

    def _enabled(self, name):
        return name not in self.blocked and (not self.frozen or name in FROZEN_ALLOWED)

    def command_state(self, name):
        if name not in self.commands:
            return 'missing'
        return 'enabled' if self._enabled(name) else 'disabled'

    def execute(self, command, arguments=None, timeout=None):
        self.sent.append((command, arguments))
        if command == 'guest-fsfreeze-status' and command not in self.replies:
            return 'frozen' if self.frozen else 'thawed'
        if command == 'guest-fsfreeze-thaw' and command not in self.replies:
            was, self.frozen = self.frozen, False
            return 1 if was else 0
        if not self._enabled(command):
            suffix = ': the agent is in frozen state' if self.frozen else ''
            raise classify_command_error(command, 'CommandNotFound', f'Command {command} has been disabled{suffix}')
        reply = self.replies.get(command)
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply()
        return reply
