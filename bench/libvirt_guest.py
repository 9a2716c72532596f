# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The test guest as a libvirt domain, for the anchors of figures 6 and 7 (issue 18).

The domain boots the same kernel, initrd and disks as the harness VM (tests/harness/guest.py)
under TCG (`type='qemu'`), with the guest agent on a `<channel type='unix'>` that libvirtd
connects to, no NIC and no graphics. QEMU runs as root without relabelling (a static DAC label),
so libvirt does not chown the shared guest cache. bench/anchors.sh must have run (libvirtd up,
libvirt-python in the bench venv): virsh is used here, so this file imports no libvirt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from xml.sax.saxutils import escape, quoteattr

URI = 'qemu:///system'
QEMU_IMG = shutil.which('qemu-img') or '/usr/bin/qemu-img'


def virsh(*args, check=True, timeout=120):
    res = subprocess.run(['virsh', '-q', '-c', URI] + [str(a) for a in args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise RuntimeError('virsh {0} failed: {1}'.format(' '.join(str(a) for a in args), res.stdout.strip()))
    return res.stdout


def _disk(path, target, fmt='qcow2', readonly=False):
    return ("<disk type='file' device='disk'><driver name='qemu' type={0}/><source file={1}/>"
            "<target dev={2} bus='virtio'/>{3}</disk>").format(
                quoteattr(fmt), quoteattr(path), quoteattr(target), '<readonly/>' if readonly else '')


class LibvirtGuest:
    """One libvirt domain of the test guest; `disks` are (path, format, readonly) after the python disk."""

    def __init__(self, name, workdir, images, memory=512, python=True, disks=()):
        self.name = name
        self.workdir = os.path.abspath(workdir)
        self.images = images
        self.memory = memory
        self.python = python
        self.disk0 = os.path.join(self.workdir, 'disk0.qcow2')
        self.extra_disks = list(disks)
        self.agent_path = os.path.join(self.workdir, 'agent.sock')
        self.console_log = os.path.join(self.workdir, 'console.log')

    def cmdline(self):
        return 'console=ttyS0 quiet panic=-1' + (' qemu_vm.python=1' if self.python else '')

    def disks(self):
        """(path, target, format, readonly) in the order the guest sees them: vda, vdb, ..."""
        out = [(self.disk0, 'vda', 'qcow2', False)]
        for path, fmt, readonly in self.extra_disks:
            out.append((path, 'vd' + chr(ord('a') + len(out)), fmt, readonly))
        if self.python:
            out.append((os.path.join(self.images.cache_dir, 'python.qcow2'), 'vd' + chr(ord('a') + len(out)),
                        'qcow2', True))
        return out

    def xml(self):
        disks = ''.join(_disk(path, target, fmt, readonly) for path, target, fmt, readonly in self.disks())
        return f"""<domain type='qemu'>
  <name>{escape(self.name)}</name>
  <memory unit='MiB'>{self.memory}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(self.images.kernel)}</kernel><initrd>{escape(self.images.initrd)}</initrd><cmdline>{escape(self.cmdline())}</cmdline></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    {disks}
    <serial type='file'><source path={quoteattr(self.console_log)}/><target port='0'/></serial>
    <channel type='unix'><source mode='bind' path={quoteattr(self.agent_path)}/>
      <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
</domain>
"""

    def create_disk(self):
        if not os.path.exists(self.disk0):
            subprocess.run([QEMU_IMG, 'create', '-q', '-f', 'qcow2', '-b', self.images.data_disk, '-F', 'qcow2',
                            self.disk0], check=True)

    def start(self, timeout=180, wait=True):
        """Define and start the domain (undefining any leftover of the same name); wait for the agent."""
        self.destroy()
        os.makedirs(self.workdir, exist_ok=True)
        self.create_disk()
        path = os.path.join(self.workdir, 'domain.xml')
        with open(path, 'w') as handle:
            handle.write(self.xml())
        virsh('define', path)
        virsh('start', self.name)
        return self.wait_agent(timeout) if wait else self

    def wait_agent(self, timeout=180):
        deadline = time.monotonic() + timeout
        last = ''
        while time.monotonic() < deadline:
            res = subprocess.run(['virsh', '-q', '-c', URI, 'qemu-agent-command', self.name,
                                  '{"execute":"guest-ping"}', '--timeout', '5'], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, check=False)
            if res.returncode == 0:
                return self
            last = res.stdout.strip()
            time.sleep(0.5)
        raise RuntimeError(f'the agent of libvirt domain {self.name} did not answer in {timeout} s: {last}')

    def destroy(self):
        """Stop and undefine the domain if it exists (idempotent)."""
        if self.name in virsh('list', '--all', '--name', check=False).split():
            virsh('destroy', self.name, check=False)
            virsh('undefine', self.name, '--checkpoints-metadata', check=False)
            if self.name in virsh('list', '--all', '--name', check=False).split():
                virsh('undefine', self.name, check=False)

    def qemu_pid(self):
        path = f'/run/libvirt/qemu/{self.name}.pid'
        with open(path) as handle:
            return int(handle.read().strip())
