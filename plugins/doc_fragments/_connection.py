# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This doc fragment is PRIVATE to the qemu.vm collection.
# Keep it in sync with COMMON_ARGUMENT_SPEC in plugins/module_utils/_common.py.

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  qmp:
    description:
      - The VM's QMP monitor socket, as started with C(-qmp unix:PATH,server=on,wait=off) or C(-chardev socket,...).
      - A unix socket path, or C(host:port) for a TCP monitor (C([v6addr]:port) for IPv6).
      - Every module of the collection accepts it, so O(qmp) can be set once for the whole
        C(group/qemu.vm.qemu) in C(module_defaults); modules that do not talk to the monitor ignore it.
    type: str
  qga:
    description:
      - The VM's guest agent socket, the host side of the C(org.qemu.guest_agent.0) virtio-serial port.
      - A unix socket path, or C(host:port).
      - Every module of the collection accepts it; modules that do not talk to the agent ignore it.
    type: str
  timeout:
    description:
      - Seconds, the bound on every wait of the task, including waiting for another task that is
        using the same socket (tasks of this collection take a per-socket lock on the host, because
        QEMU serves one client per socket at a time). The lock is a C(flock) on a file named by the
        socket in a private directory (mode 0700) of the user the task runs as (C(/run/qemu-vm) for root,
        else C($XDG_RUNTIME_DIR/qemu-vm), C(/run/user/<uid>/qemu-vm) or C(~/.cache/qemu-vm)). Tasks of
        different users do not share the lock. A symbolic link, FIFO or another user's file in its place
        fails the task, naming the path.
      - The guest agent handshake is bounded by the smaller of O(timeout) and 10 seconds.
      - Freezing guest filesystems may take longer than O(timeout), up to 300 seconds,
        because the guest flushes its dirty data first.
      - File transfers through the agent get O(timeout) plus one second per MiB moved.
    type: float
    default: 30
requirements:
  - Python >= 3.8 on the host that runs QEMU (the managed host).
  - The C(qemu.qmp) Python library on that host, version 0.0.6 exactly (C(qemu.qmp==0.0.6)). The collection
    overrides private parts of it, so it pins the version it was tested with; another version works with a warning.
notes:
  - The modules run on the host that has the sockets (often the hypervisor, or C(localhost)),
    not inside the guest.
'''
