# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tiny test guest started by the collection's own qemu.vm.qemu_vm, as a user would start it.

Tests whose VM needs nothing the module cannot give (an agent, a disk overlay of the guest image)
use this instead of the harness's hand-written QEMU command line, so the module proves itself in
every run. The VM is removed (state=absent, remove_disks) at the end; a VM the module could not
stop is killed through its pid file, so no QEMU outlives the test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid

from harness.ansible import run_module
from harness.guest import qga_command, qmp_command

APPEND = 'console=ttyS0 panic=-1 qemu_vm.acpid=1'  # the guest powers off on the ACPI button


class ManagedVM:
    """A VM that qemu.vm.qemu_vm started: `qmp_path`, `qga_path`, `monitor_path`, `qmp()`, `qga()`."""

    def __init__(self, images, home, name=None, **overrides):
        home = str(home)  # short: the sockets' paths must fit in 107 bytes
        self.name = name or f'qvm-{uuid.uuid4().hex[:8]}'
        self.args = dict(name=self.name, run_dir=os.path.join(home, 'run'), accel='tcg', machine='pc', memory='256M',
                         kernel=images.kernel, initrd=images.initrd, append=APPEND,
                         disks=[{'path': os.path.join(home, 'disk0.qcow2'), 'backing': images.data_disk}],
                         wait='agent', wait_timeout=120)
        self.args.update(overrides)
        self.result = None

    def start(self):
        self.result = run_module('qemu_vm', self.args)
        if self.result.failed:
            self.kill()
            raise AssertionError(f'qemu_vm could not start {self.name}:\n{self.result["output"]}')
        return self

    @property
    def qmp_path(self):
        return self.result['qmp']

    @property
    def qga_path(self):
        return self.result['qga']

    @property
    def monitor_path(self):
        return self.result['monitor']

    def qmp(self, cmd, **args):
        return qmp_command(self.monitor_path, cmd, args or None)

    def qga(self, cmd, args=None, timeout=30):
        return qga_command(self.qga_path, cmd, args, timeout=timeout)

    def remove(self):
        result = run_module('qemu_vm', dict(self.args, state='absent', remove_disks=True, stop_timeout=30))
        self.kill()  # whatever the module did, nothing of ours stays running
        if result.failed:
            raise AssertionError(f'qemu_vm could not remove {self.name}:\n{result["output"]}')

    def kill(self):
        pidfile = os.path.join(self.args['run_dir'], 'qemu.pid')
        with contextlib.suppress(OSError, ValueError):
            with open(pidfile, encoding='ascii') as handle:
                pid = int(handle.read().strip())
            with open(f'/proc/{pid}/cmdline', 'rb') as handle:
                if pidfile.encode() in handle.read().split(b'\0'):
                    os.kill(pid, signal.SIGKILL)
