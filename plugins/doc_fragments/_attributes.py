# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This doc fragment is PRIVATE to the qemu.vm collection.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying the VM.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice with the same options on an unchanged VM, the second run changes nothing and reports no change.
      - V(partial) and V(none) say which runs always change something (and report changed).
  action_group:
    description: Use C(group/qemu.vm.qemu) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - qemu.vm.qemu
'''

    INFO_MODULE = r'''
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
    details:
      - This action does not modify state.
'''
