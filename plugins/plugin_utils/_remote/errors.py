# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This plugin_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Errors of reaching a hypervisor over SSH, in the QemuVMError family.

  HypervisorError (a SocketError)   the hypervisor cannot be used: unreachable, authentication refused,
                                    unknown host key, no python3 there, or the SSH connection failed

A socket error on the hypervisor itself (missing, not permitted, busy) comes back as the root's own
SocketError class, named by host and path. No Ansible imports here.
"""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.module_utils._errors import SocketError


class HypervisorError(SocketError):
    """`host` (as the user named it) cannot be used over SSH, for `reason`."""

    def details(self):
        return {'hypervisor': str(self.address)}
