# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest_file.local: files on the managed host."""

from __future__ import annotations

import os

from ansible_collections.qemu.vm.plugins.module_utils._guest_file.local import fetched_mode


def test_fetched_mode_is_the_guest_mode_minus_the_umask():
    old = os.umask(0o027)
    try:
        assert fetched_mode(0o4755) == 0o750
        assert fetched_mode(0o600) == 0o600
        assert fetched_mode(None) == 0o600
    finally:
        os.umask(old)
