# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The QEMU command line of a VM, and what the host offers for it.

* `probe_kvm()`: None when /dev/kvm can really create a VM (KVM_CREATE_VM), else why not;
* `resolve_accel(requested, probe)`: the accelerator to use, and the warning for `auto` -> TCG;
* `find_ovmf()`: the UEFI firmware (code, variables template), or ParameterError naming the package;
* `build_argv(request, paths, accel, binary, firmware)`: the argv (pure).

The layout the rest of the collection relies on: qmp.sock is the first QMP monitor (the inventory
takes the first), monitor.sock a second one kept free for the user's tools, qga.sock the agent
port org.qemu.guest_agent.0; disks are -blockdev file + format nodes, the format node named after
the disk's id, which is also the virtio-blk device's id. No -no-shutdown: QEMU exits when the
guest powers off.

No Ansible imports here.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._vm.definition import SEED_ID
from ansible_collections.qemu.vm.plugins.module_utils._vm.errors import MissingProgramError

KVM_DEVICE = '/dev/kvm'
KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO, 0x00)
KVM_CREATE_VM = 0xAE01  # _IO(KVMIO, 0x01)
KVM_API_VERSION = 12
QEMU_BINARY = 'qemu-system-x86_64'
AGENT_PORT = 'org.qemu.guest_agent.0'
#: (code, variables template) pairs, Debian/Ubuntu first, then Fedora/RHEL, then SUSE/Arch.
OVMF_CANDIDATES = (
    ('/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_VARS_4M.fd'),
    ('/usr/share/OVMF/OVMF_CODE.fd', '/usr/share/OVMF/OVMF_VARS.fd'),
    ('/usr/share/edk2/ovmf/OVMF_CODE.fd', '/usr/share/edk2/ovmf/OVMF_VARS.fd'),
    ('/usr/share/qemu/ovmf-x86_64-code.bin', '/usr/share/qemu/ovmf-x86_64-vars.bin'),
    ('/usr/share/edk2/x64/OVMF_CODE.fd', '/usr/share/edk2/x64/OVMF_VARS.fd'),
)


def probe_kvm(device=KVM_DEVICE, opener=os.open, ioctl=fcntl.ioctl):
    """None when `device` can create a KVM VM, else the reason it cannot (for the message).

    Opening /dev/kvm is not enough: a node can exist where the module is not usable (no permission,
    virtualization extensions taken by another hypervisor or disabled), so the probe creates a VM
    and closes it again at once.
    """
    try:
        fd = opener(device, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return f'{device} does not exist (the kvm module is not loaded, or the CPU has no virtualization extensions)'
    except PermissionError:
        return f'no permission to open {device} (run as root or as a member of its group)'
    except OSError as exc:
        return f'{device} cannot be opened: {exc.strerror or exc}'
    try:
        try:
            version = ioctl(fd, KVM_GET_API_VERSION, 0)
        except OSError as exc:
            return f'{device} is not a KVM device (KVM_GET_API_VERSION: {exc.strerror or exc})'
        if version != KVM_API_VERSION:
            return f'{device} speaks KVM API version {version}, not {KVM_API_VERSION}'
        try:
            vm_fd = ioctl(fd, KVM_CREATE_VM, 0)
        except OSError as exc:
            return (f'{device} cannot create a VM (KVM_CREATE_VM: {exc.strerror or exc}); virtualization may be disabled '
                    'or in use by another hypervisor')
        os.close(vm_fd)
        return None
    finally:
        os.close(fd)


def resolve_accel(requested, probe=probe_kvm):
    """(accelerator, warning or None) for `accel`; ParameterError when kvm is asked for and cannot be used."""
    if requested == 'tcg':
        return 'tcg', None
    reason = probe()
    if reason is None:
        return 'kvm', None
    if requested == 'kvm':
        raise ParameterError('accel', f'accel: kvm cannot be used on this host: {reason}. Use accel: tcg (software '
                                      'emulation) or accel: auto')
    return 'tcg', (f'accel: auto chose TCG (software emulation, much slower than KVM) because KVM cannot be used: '
                   f'{reason}')


def find_ovmf(candidates=OVMF_CANDIDATES):
    """(code, vars template) of the first installed OVMF, or ParameterError naming the package."""
    for code, template in candidates:
        if os.path.isfile(code) and os.path.isfile(template):
            return code, template
    raise ParameterError('firmware', 'firmware: uefi needs the OVMF firmware, which is not installed (looked for {0}); '
                                     'install the package ovmf (Debian, Ubuntu) or edk2-ovmf (Fedora, RHEL)'.format(
                                         ', '.join(code for code, _vars in candidates)))


def qemu_binary():
    path = shutil.which(QEMU_BINARY)
    if path is None:
        raise MissingProgramError(QEMU_BINARY, 'qemu-system-x86 (Debian, Ubuntu) or qemu-kvm (Fedora, RHEL)',
                                  'starting a VM')
    return path


def _socket(chardev_id, path):
    # Paths were checked to hold no comma (QemuOpts would split there).
    return ['-chardev', f'socket,id={chardev_id},path={path},server=on,wait=off']


def _blockdev(node, path, fmt, readonly, block_device=False):
    file_node = {'driver': 'host_device' if block_device else 'file', 'filename': path, 'node-name': node + '-file'}
    format_node = {'driver': fmt, 'file': node + '-file', 'node-name': node}
    if readonly:
        file_node['read-only'] = format_node['read-only'] = True
    return ['-blockdev', json.dumps(file_node, sort_keys=True), '-blockdev', json.dumps(format_node, sort_keys=True)]


def build_argv(request, paths, accel, binary, firmware=None, block_devices=()):
    """QEMU's argv for `request` in run directory `paths`; `firmware` is (code, vars) for UEFI."""
    d = request.definition
    argv = [binary, '-name', d['name'], '-uuid', d['uuid'], '-machine', d['machine'], '-accel', accel,
            '-m', f"{d['memory']}M", '-smp', str(d['cpus'])]
    if d['cpu']:
        argv += ['-cpu', d['cpu']]
    argv += ['-nodefaults', '-no-user-config', '-display', 'none', '-daemonize', '-pidfile', paths.pidfile]
    argv += _socket('qmp', paths.qmp) + ['-mon', 'chardev=qmp,mode=control']
    argv += _socket('monitor', paths.monitor) + ['-mon', 'chardev=monitor,mode=control']
    argv += _socket('qga', paths.qga) + ['-device', 'virtio-serial-pci,id=virtio-serial0',
                                         '-device', f'virtserialport,chardev=qga,name={AGENT_PORT}']
    if d['serial_log']:
        argv += ['-chardev', f'file,id=serial0,path={paths.serial_log}', '-serial', 'chardev:serial0']
    if firmware is not None:
        argv += ['-drive', f'if=pflash,format=raw,unit=0,readonly=on,file={firmware[0]}',
                 '-drive', f'if=pflash,format=raw,unit=1,file={firmware[1]}']
    if d['kernel']:
        argv += ['-kernel', d['kernel']]
        if d['initrd']:
            argv += ['-initrd', d['initrd']]
        if d['append']:
            argv += ['-append', d['append']]
    for index, disk in enumerate(request.disks):
        argv += _blockdev(disk.id, disk.path, disk.format, disk.readonly, disk.path in block_devices)
        argv += ['-device', f'virtio-blk-pci,drive={disk.id},id={disk.id},bootindex={index + 1}']
    if request.seed_files is not None:
        argv += _blockdev(SEED_ID, paths.seed, 'raw', True)
        argv += ['-device', f'virtio-blk-pci,drive={SEED_ID},id={SEED_ID}']
    if d['network'] == 'user':
        netdev = 'user,id=net0' + ''.join(f',hostfwd={rule}' for rule in d['hostfwd'])
        argv += ['-netdev', netdev, '-device', f"virtio-net-pci,netdev=net0,id=net0,mac={d['mac']}"]
    if d['user']:
        argv += ['-runas', d['user']]
    return argv + list(d['extra_args'])
