# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The KVM probe's outcomes, the accelerator choice, OVMF lookup and the argv's layout."""

from __future__ import annotations

import errno
import json
import os

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._vm.argv import (
    KVM_CREATE_VM,
    KVM_GET_API_VERSION,
    build_argv,
    find_ovmf,
    probe_kvm,
    resolve_accel,
)
from ansible_collections.qemu.vm.plugins.module_utils._vm.definition import parse_request
from ansible_collections.qemu.vm.plugins.module_utils._vm.rundir import RunDir

from .test_definition import params


class FakeKVM:
    """/dev/kvm as the ioctls see it: an API version, and KVM_CREATE_VM that works or fails with `create_errno`."""

    def __init__(self, create_errno=None, version=12):
        self.create_errno = create_errno
        self.version = version
        self.closed = []

    def ioctl(self, fd, request, arg=0):
        if request == KVM_GET_API_VERSION:
            return self.version
        assert request == KVM_CREATE_VM
        if self.create_errno:
            raise OSError(self.create_errno, os.strerror(self.create_errno))
        return os.open(os.devnull, os.O_RDONLY)  # a real fd, which the probe must close


def test_probe_kvm_that_can_create_a_vm_gives_kvm():
    fake = FakeKVM()
    assert probe_kvm(os.devnull, ioctl=fake.ioctl) is None
    assert resolve_accel('auto', lambda: probe_kvm(os.devnull, ioctl=fake.ioctl)) == ('kvm', None)


def test_probe_kvm_whose_create_vm_fails_gives_tcg_with_the_reason():
    fake = FakeKVM(create_errno=errno.EBUSY)
    reason = probe_kvm(os.devnull, ioctl=fake.ioctl)
    assert 'KVM_CREATE_VM' in reason and os.strerror(errno.EBUSY) in reason
    accel, warning = resolve_accel('auto', lambda: reason)
    assert accel == 'tcg' and 'chose TCG' in warning and reason in warning


def test_probe_of_a_device_that_is_no_kvm():
    # /dev/null answers the KVM ioctls with ENOTTY: a real device that is not KVM
    assert 'is not a KVM device' in probe_kvm(os.devnull)
    assert 'does not exist' in probe_kvm('/nonexistent/kvm')
    assert 'API version 11' in probe_kvm(os.devnull, ioctl=FakeKVM(version=11).ioctl)


def test_kvm_required_but_unusable_is_a_parameter_error_saying_why():
    with pytest.raises(ParameterError) as info:
        resolve_accel('kvm', lambda: '/dev/kvm does not exist (no module)')
    assert info.value.parameter == 'accel' and 'does not exist (no module)' in str(info.value)
    assert resolve_accel('tcg', lambda: pytest.fail('tcg must not probe')) == ('tcg', None)


def test_ovmf_missing_names_the_package(tmp_path):
    with pytest.raises(ParameterError) as info:
        find_ovmf(((str(tmp_path / 'CODE.fd'), str(tmp_path / 'VARS.fd')),))
    assert info.value.parameter == 'firmware' and 'package ovmf' in str(info.value)
    (tmp_path / 'CODE.fd').write_bytes(b'c')
    (tmp_path / 'VARS.fd').write_bytes(b'v')
    pair = (str(tmp_path / 'CODE.fd'), str(tmp_path / 'VARS.fd'))
    assert find_ovmf((pair,)) == pair


def option_values(argv, option):
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == option]


def test_argv_layout():
    request = parse_request(params(
        kernel='/boot/vmlinuz', initrd='/boot/initrd', append='console=ttyS0', network='user',
        hostfwd=['tcp:127.0.0.1:2222-:22'], cloud_init={'user_data': 'x'}, extra_args=['-device', 'virtio-rng-pci'],
        disks=[{'path': '/v/a.qcow2'}, {'path': '/v/b.raw', 'format': 'raw', 'readonly': True, 'id': 'data'}]))
    paths = RunDir(request.run_dir)
    argv = build_argv(request, paths, 'tcg', '/usr/bin/qemu-system-x86_64', firmware=('/fw/CODE.fd', paths.ovmf_vars))
    assert argv[0] == '/usr/bin/qemu-system-x86_64' and argv[-2:] == ['-device', 'virtio-rng-pci']
    assert '-no-shutdown' not in argv and '-daemonize' in argv
    assert option_values(argv, '-pidfile') == ['/run/qemu-vm/web1/qemu.pid']
    assert option_values(argv, '-name') == ['web1'] and option_values(argv, '-accel') == ['tcg']
    chardevs = option_values(argv, '-chardev')
    # qmp.sock is the first monitor: the inventory takes the first
    assert chardevs[:3] == ['socket,id=qmp,path=/run/qemu-vm/web1/qmp.sock,server=on,wait=off',
                            'socket,id=monitor,path=/run/qemu-vm/web1/monitor.sock,server=on,wait=off',
                            'socket,id=qga,path=/run/qemu-vm/web1/qga.sock,server=on,wait=off']
    assert option_values(argv, '-mon') == ['chardev=qmp,mode=control', 'chardev=monitor,mode=control']
    devices = option_values(argv, '-device')
    assert 'virtserialport,chardev=qga,name=org.qemu.guest_agent.0' in devices
    assert devices.count('virtio-blk-pci,drive=disk0,id=disk0,bootindex=1') == 1
    assert 'virtio-blk-pci,drive=data,id=data,bootindex=2' in devices
    assert 'virtio-blk-pci,drive=cloud-init,id=cloud-init' in devices
    nodes = [json.loads(value) for value in option_values(argv, '-blockdev')]
    assert [n['node-name'] for n in nodes] == ['disk0-file', 'disk0', 'data-file', 'data', 'cloud-init-file', 'cloud-init']
    assert nodes[3] == {'driver': 'raw', 'file': 'data-file', 'node-name': 'data', 'read-only': True}
    assert nodes[4]['filename'] == '/run/qemu-vm/web1/seed.iso' and nodes[5]['read-only']
    assert option_values(argv, '-netdev') == ['user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22']
    assert option_values(argv, '-drive') == ['if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd',
                                             'if=pflash,format=raw,unit=1,file=/run/qemu-vm/web1/OVMF_VARS.fd']
    assert (option_values(argv, '-kernel'), option_values(argv, '-append')) == (['/boot/vmlinuz'], ['console=ttyS0'])


def test_argv_without_extras():
    request = parse_request(params(serial_log=False, user='root', cpu='max'))
    argv = build_argv(request, RunDir(request.run_dir), 'kvm', 'qemu-system-x86_64')
    for absent in ('-serial', '-netdev', '-kernel', '-drive', '-blockdev'):
        assert absent not in argv
    assert option_values(argv, '-runas') == ['root'] and option_values(argv, '-cpu') == ['max']
    assert option_values(argv, '-m') == ['1024M'] and option_values(argv, '-machine') == ['q35']
