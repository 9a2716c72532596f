# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The steps of qemu_vm's plan: observe the VM, check everything a start needs (creating
nothing), start, stop, remove.

A start that QEMU refuses leaves nothing behind: the images this start created are removed, and
the run directory too when this start created it.

No Ansible imports here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import NamedTuple, Optional

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._vm.argv import build_argv, find_ovmf, probe_kvm, qemu_binary, resolve_accel
from ansible_collections.qemu.vm.plugins.module_utils._vm.disks import create_disks, plan_disks, remove_images
from ansible_collections.qemu.vm.plugins.module_utils._vm.plan import Observed
from ansible_collections.qemu.vm.plugins.module_utils._vm.process import find_vm_process, spawn, stop, wait_ready
from ansible_collections.qemu.vm.plugins.module_utils._vm.seed import build_seed, iso_tool


class Launch(NamedTuple):
    """Everything a start needs, checked before anything is created."""
    argv: list
    accel: str
    warnings: list
    to_create: list
    iso_tool: Optional[list]
    ovmf_template: Optional[str]


def process_owners(request):
    """Who the VM's QEMU may run as: us, and with `user` that user (and root, who owns /proc of a process
    that changed its uid)."""
    owners = {os.geteuid()}
    if request.uid is not None:
        owners |= {request.uid, 0}
    return owners


def observe(paths, request):
    if not paths.exists():
        return Observed(False, None, None)
    return Observed(True, find_vm_process(paths, process_owners(request)), paths.read_record())


def prepare_start(request, paths, probe=probe_kvm):
    """Check all a start needs (ParameterError or MissingProgramError otherwise) and build the argv."""
    definition = request.definition
    binary = qemu_binary()
    accel, warning = resolve_accel(definition['accel'], probe)
    firmware = find_ovmf() if definition['firmware'] == 'uefi' else None
    for option in ('kernel', 'initrd'):
        if definition[option] and not os.path.isfile(definition[option]):
            raise ParameterError(option, f'{option}: {definition[option]} does not exist or is not a file')
    to_create, block_devices = plan_disks(request.disks)
    tool = iso_tool() if request.seed_files is not None else None
    argv = build_argv(request, paths, accel, binary, (firmware[0], paths.ovmf_vars) if firmware else None, block_devices)
    return Launch(argv, accel, [warning] if warning else [], to_create, tool, firmware[1] if firmware else None)


def _copy_private(source, target):
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, 'wb') as out, open(source, 'rb') as src:
        shutil.copyfileobj(src, out)


def start_vm(request, paths, launch, record, fresh):
    """Create what is missing, start QEMU, record the definition, wait as asked; (pid, images created)."""
    owners = process_owners(request)
    created = []
    try:
        created = create_disks(launch.to_create, request.timeout)
        if launch.iso_tool is not None:
            build_seed(request.seed_files, paths.seed, launch.iso_tool, request.timeout)
        if launch.ovmf_template and not os.path.lexists(paths.ovmf_vars):
            _copy_private(launch.ovmf_template, paths.ovmf_vars)
        paths.clear_runtime()
        pid = spawn(request.name, launch.argv, paths, owners, request.timeout)
    except BaseException:
        remove_images(created)
        with contextlib.suppress(OSError):
            if fresh:
                paths.remove()
            else:
                paths.clear_runtime()
        raise
    earlier = (record or {}).get('created_disks') or []
    paths.write_record({'name': request.name, 'state': 'running', 'pid': pid, 'definition': request.definition,
                        'argv': launch.argv, 'accel': launch.accel, 'created_disks': sorted(set(earlier) | set(created))})
    wait_ready(paths, pid, owners, request.wait, request.timeout, request.wait_timeout)
    return pid, created


def wait_for_agent(request, paths, pid):
    """wait: agent on a VM that was already running: its agent answers before the task returns."""
    if request.wait == 'agent':
        wait_ready(paths, pid, process_owners(request), 'agent', request.timeout, request.wait_timeout, qmp=False)


def stop_vm(request, paths, pid, record, warn):
    """Power the VM off (see process.stop); returns stopped_by. The record says it is stopped."""
    stopped_by = stop(paths, pid, process_owners(request), request.stop_timeout, request.timeout, warn)
    paths.clear_runtime()
    mark_stopped(paths, record)
    return stopped_by


def mark_stopped(paths, record):
    if record is not None:
        paths.write_record(dict(record, state='stopped', pid=None))


def remove_vm(paths, record, remove_disks):
    """Remove the run directory; with remove_disks, also the images this module created. Returns those removed."""
    disks = list((record or {}).get('created_disks') or []) if remove_disks else []
    paths.remove()
    return remove_images(disks)
