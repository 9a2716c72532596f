#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_vm
short_description: Start, stop and remove a QEMU VM from a declarative definition
version_added: 0.2.0
description:
  - Runs a QEMU VM on the host that runs the module (the hypervisor), from a definition (memory, CPUs, disks,
    network, cloud-init) with no libvirt. QEMU supervises itself (C(-daemonize), C(-pidfile)); nothing of the
    module stays behind.
  - The VM is laid out for the rest of the collection. Its run directory O(run_dir) holds C(qmp.sock) (the QMP
    monitor the collection's modules use), C(monitor.sock) (a second QMP monitor kept free for your own tools and
    monitoring, since QEMU serves one client per monitor), C(qga.sock) (the guest agent channel, always there),
    the pid file C(qemu.pid), C(serial.log) and C(vm.json) (the definition applied at the last start). The
    inventory plugin P(qemu.vm.qemu#inventory) lists the VM by its O(name) with no configuration, and every module works
    on the returned RV(qmp) and RV(qga).
  - Each disk is attached with C(-blockdev) file and format nodes and a virtio-blk device; the format node is
    named after the disk's O(disks[].id), which is also the device's id, so M(qemu.vm.qemu_snapshot) and
    M(qemu.vm.qemu_backup) address the disk by that id.
  - Idempotent. A running VM whose definition matches is left alone. One whose definition differs reports
    C(changed), RV(restart_required) and the options that differ (RV(differences); their values with C(--diff)),
    and is restarted only with O(restart=true) or O(state=restarted). A VM found dead (crashed, killed, or
    powered off from inside) is started again by O(state=running), with RV(recovered=true) when it was meant to
    run.
  - Two tasks on one VM take turns (a C(flock) of C(lock) in the run directory), each waiting at most
    O(timeout).
  - The run directory is 0700 and belongs to the user that runs the module; QEMU's sockets in it are not
    accessible to other users (QMP is root over the VM). A run directory, lock, record or pid file that is a
    symbolic link, belongs to another user or is open to others is refused, never followed.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  name:
    description:
      - The VM's name (QEMU C(-name)), 1 to 64 letters, digits, C(.), C(_) or C(-), starting with a letter or a
        digit.
    type: str
    required: true
  state:
    description:
      - V(running) starts the VM when it is not running (creating its missing disks and the cloud-init seed).
      - V(stopped) presses the ACPI power button, waits up to O(stop_timeout) for the guest to power off, then
        ends QEMU with QMP C(quit) (RV(stopped_by)).
      - V(absent) stops it and removes the run directory; disks stay unless O(remove_disks=true).
      - V(restarted) stops it (as V(stopped)) and starts it again with the definition given.
      - V(stopped) and V(absent) for a VM that does not exist are unchanged, not an error.
    type: str
    choices: [running, stopped, absent, restarted]
    default: running
  memory:
    description:
      - Memory, in MiB (V(1024)) or a size with a binary unit (V(512M), V(2G)).
    type: raw
    default: 1024
  cpus:
    description: Number of virtual CPUs (C(-smp)).
    type: int
    default: 1
  machine:
    description: The machine type (C(-machine)), for example V(q35) or V(pc).
    type: str
    default: q35
  accel:
    description:
      - V(auto) uses KVM when C(/dev/kvm) can really create a VM (the module tries), else TCG (software
        emulation, much slower) with a warning saying why.
      - V(kvm) fails, saying why, where KVM cannot be used; V(tcg) never uses KVM.
    type: str
    choices: [auto, kvm, tcg]
    default: auto
  cpu:
    description: The CPU model (C(-cpu)), for example V(host) with KVM or V(max). QEMU's default when omitted.
    type: str
  firmware:
    description:
      - V(bios) (SeaBIOS) or V(uefi) (OVMF, with a private copy of its variables store in the run directory, kept
        until the VM is removed). V(uefi) without OVMF installed fails naming the package.
    type: str
    choices: [bios, uefi]
    default: bios
  kernel:
    description: Direct kernel boot (C(-kernel)), an absolute path on the host.
    type: path
  initrd:
    description: The initial ramdisk for O(kernel) (C(-initrd)).
    type: path
  append:
    description: The kernel command line for O(kernel) (C(-append)).
    type: str
  uuid:
    description: The VM's UUID (C(-uuid)). Default is derived from O(name), so it is the same at every start.
    type: str
  disks:
    description:
      - The disks, attached in this order (the first boots). An existing image is never overwritten,
        reformatted or resized; O(disks[].size) and O(disks[].backing) only matter when O(disks[].path) is missing.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the image (or a block device). Its directory must exist.
        type: path
        required: true
      format:
        description: The image format.
        type: str
        choices: [qcow2, raw]
        default: qcow2
      size:
        description: Create a blank image of this size (V(10G); a bare number is bytes) when O(disks[].path) is missing.
        type: raw
      backing:
        description:
          - Create a qcow2 overlay on this base image when O(disks[].path) is missing (the base image is only read).
            The base image must exist.
        type: path
      readonly:
        description: Attach the disk read-only.
        type: bool
        default: false
      id:
        description:
          - The device id and the format node's name (V(disk0), V(disk1), ... by position when omitted), by which
            snapshots and backups address the disk.
        type: str
  network:
    description:
      - V(none) gives the VM no network card; V(user) a virtio-net card on QEMU's user-mode network (NAT, no
        root needed), with O(hostfwd) for connections from the host.
    type: str
    choices: [none, user]
    default: none
  hostfwd:
    description:
      - Ports forwarded from the host to the guest with O(network=user), such as V(tcp:127.0.0.1:2222-:22). A port
        already taken on the host makes the start fail with QEMU's message.
    type: list
    elements: str
    default: []
  mac:
    description: The MAC address of the network card. Default is derived from O(name) (C(52:54:00:xx:xx:xx)).
    type: str
  cloud_init:
    description:
      - A cloud-init NoCloud seed, an ISO image with volume label C(cidata) in the run directory, attached
        read-only, rebuilt at each start. A change of its content is a change of the definition.
      - Needs C(genisoimage), C(mkisofs) or C(xorriso) on the host.
    type: dict
    suboptions:
      user_data:
        description: The user-data (for example a C(#cloud-config) document).
        type: str
      meta_data:
        description: The meta-data. Default sets C(instance-id) to the VM's UUID and C(local-hostname) to O(name).
        type: str
      network_config:
        description: The network configuration (version 1 or 2), when the guest needs one.
        type: str
  extra_args:
    description:
      - QEMU arguments appended after everything the module sets, one list item per argument. The escape hatch
        for what the options do not cover; the module does not check them, QEMU does.
      - Do not add a monitor or agent on C(host:port) without thinking twice - QMP and the guest agent have no
        authentication, and either is root over the VM.
    type: list
    elements: str
    default: []
  serial_log:
    description:
      - Write the guest's first serial port to C(serial.log) in the run directory (on C(/run), in memory, by
        default). Without it the VM has no serial port.
    type: bool
    default: true
  run_dir:
    description:
      - The VM's run directory (default C(/run/qemu-vm/<name>)). Its parent must exist (C(/run/qemu-vm) is created,
        0700). It must not be a file, and the socket paths in it must fit in 107 bytes.
    type: path
  user:
    description:
      - Run QEMU as this user (C(-runas)) once it has opened its files; the run directory stays the module user's.
    type: str
  wait:
    description:
      - After a start, V(qmp) waits until QEMU's monitor answers (bounded by O(timeout)); V(agent) also waits until
        the guest agent answers (bounded by O(wait_timeout)); V(none) returns once QEMU runs.
      - With V(agent), a VM that was already running is also only reported once its agent answers.
    type: str
    choices: [qmp, agent, none]
    default: qmp
  wait_timeout:
    description: Seconds O(wait=agent) waits for the guest agent after the start.
    type: float
    default: 300
  stop_timeout:
    description: Seconds a stop waits for the guest to power off after the ACPI power button, before C(quit).
    type: float
    default: 60
  restart:
    description: With O(state=running), restart a running VM whose definition differs (default is to report it).
    type: bool
    default: false
  remove_disks:
    description:
      - With O(state=absent), also remove the images this module created (as recorded in C(vm.json)), never others.
    type: bool
    default: false
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._attributes
  - qemu.vm._errors
attributes:
  idempotent:
    support: full
    details:
      - A running VM whose definition matches is unchanged; one that differs reports changed and RV(restart_required)
        until it is restarted.
  check_mode:
    support: full
    details:
      - Everything a start needs is checked (disks, base images, firmware, KVM, tools), nothing is created.
  diff_mode:
    support: full
    details:
      - The state before and after, and the definition's values that change.
notes:
  - Sockets - none; it starts QEMU with its own sockets and returns them (RV(qmp), RV(monitor), RV(qga)).
  - O(qmp) and O(qga) are not used; the module makes the VM's sockets itself and returns them.
  - Nested KVM that cannot boot guests is not detected by O(accel=auto) (the probe only creates a VM); use O(accel=tcg).
  - O(timeout) bounds the lock wait, each QMP command, QEMU's start and each C(qemu-img) call.
seealso:
  - module: qemu.vm.qemu_vm_info
  - module: qemu.vm.qemu_guest_power
'''

EXAMPLES = r'''
- name: A VM from a cloud image, running, with its agent answering
  qemu.vm.qemu_vm:
    name: web1
    memory: 2G
    cpus: 2
    disks:
      - path: /var/lib/qemu/web1.qcow2
        backing: /var/lib/qemu/images/debian-12-genericcloud-amd64.qcow2
        size: 20G
    network: user
    hostfwd: [tcp:127.0.0.1:2222-:22]
    cloud_init:
      user_data: |
        #cloud-config
        packages: [qemu-guest-agent]
        runcmd: [[systemctl, start, qemu-guest-agent]]
    wait: agent
  register: web1

- name: Back it up through the returned sockets
  qemu.vm.qemu_backup:
    qmp: "{{ web1.qmp }}"
    qga: "{{ web1.qga }}"
    dest: /srv/backup/web1

- name: Give it more memory (reported as restart_required until restarted)
  qemu.vm.qemu_vm:
    name: web1
    memory: 4G
    cpus: 2
    disks:
      - path: /var/lib/qemu/web1.qcow2
    network: user
    hostfwd: [tcp:127.0.0.1:2222-:22]
    restart: true

- name: Shut it down (power button, then quit after 2 minutes)
  qemu.vm.qemu_vm:
    name: web1
    state: stopped
    stop_timeout: 120

- name: Remove it and the images it created
  qemu.vm.qemu_vm:
    name: web1
    state: absent
    remove_disks: true
'''

RETURN = r'''
name:
  description: The VM's name.
  returned: always
  type: str
  sample: web1
state:
  description: The VM's state after the task (in check mode, the state it would have).
  returned: always
  type: str
  sample: running
pid:
  description: QEMU's process id, or null when the VM does not run.
  returned: always
  type: int
  sample: 41022
qmp:
  description: The QMP monitor for the collection's modules (exists while the VM runs).
  returned: always
  type: str
  sample: /run/qemu-vm/web1/qmp.sock
monitor:
  description: The second QMP monitor, free for other tools.
  returned: always
  type: str
  sample: /run/qemu-vm/web1/monitor.sock
qga:
  description: The guest agent socket.
  returned: always
  type: str
  sample: /run/qemu-vm/web1/qga.sock
run_dir:
  description: The run directory.
  returned: always
  type: str
  sample: /run/qemu-vm/web1
accel:
  description: The accelerator the VM runs (or would start) with, V(kvm) or V(tcg); null when not known.
  returned: always
  type: str
  sample: kvm
argv:
  description: QEMU's command line of the VM as started (or as it would be started); empty when not known.
  returned: always
  type: list
  elements: str
restart_required:
  description: The VM runs with a definition that differs from the one given, and was not restarted.
  returned: always
  type: bool
  sample: false
differences:
  description: The options whose values differ from the running VM's (or that a start applies).
  returned: always
  type: list
  elements: str
  sample: [memory]
stopped_by:
  description:
    - How QEMU was stopped by this task - V(guest) (it powered off after the ACPI power button), V(quit) (QMP C(quit)
      after O(stop_timeout)), V(kill) (C(SIGKILL), when QEMU did not quit) - or null.
  returned: always
  type: str
  sample: guest
recovered:
  description: The VM was meant to run but was found dead (crashed, killed or powered off inside), and was started.
  returned: always
  type: bool
  sample: false
created_disks:
  description: The images this task created (would create, in check mode).
  returned: always
  type: list
  elements: str
  sample: [/var/lib/qemu/web1.qcow2]
removed_disks:
  description: The images removed with O(remove_disks=true).
  returned: always
  type: list
  elements: str
  sample: []
'''

from ansible_collections.qemu.vm.plugins.module_utils._common import build_module, run_module
from ansible_collections.qemu.vm.plugins.module_utils._vm.definition import STATES, parse_request
from ansible_collections.qemu.vm.plugins.module_utils._vm.plan import Observed, decide, diff_of
from ansible_collections.qemu.vm.plugins.module_utils._vm.rundir import RunDir
from ansible_collections.qemu.vm.plugins.module_utils._vm.runner import (
    mark_stopped,
    observe,
    prepare_start,
    remove_vm,
    start_vm,
    stop_vm,
    wait_for_agent,
)

ARGUMENT_SPEC = dict(
    name=dict(type='str', required=True),
    state=dict(type='str', default='running', choices=list(STATES)),
    memory=dict(type='raw', default=1024),
    cpus=dict(type='int', default=1),
    machine=dict(type='str', default='q35'),
    accel=dict(type='str', default='auto', choices=['auto', 'kvm', 'tcg']),
    cpu=dict(type='str'),
    firmware=dict(type='str', default='bios', choices=['bios', 'uefi']),
    kernel=dict(type='path'),
    initrd=dict(type='path'),
    append=dict(type='str'),
    uuid=dict(type='str'),
    disks=dict(type='list', elements='dict', default=[], options=dict(
        path=dict(type='path', required=True),
        format=dict(type='str', default='qcow2', choices=['qcow2', 'raw']),
        size=dict(type='raw'),
        backing=dict(type='path'),
        readonly=dict(type='bool', default=False),
        id=dict(type='str'),
    )),
    network=dict(type='str', default='none', choices=['none', 'user']),
    hostfwd=dict(type='list', elements='str', default=[]),
    mac=dict(type='str'),
    cloud_init=dict(type='dict', options=dict(
        user_data=dict(type='str', no_log=True),
        meta_data=dict(type='str'),
        network_config=dict(type='str'),
    )),
    extra_args=dict(type='list', elements='str', default=[]),
    serial_log=dict(type='bool', default=True),
    run_dir=dict(type='path'),
    user=dict(type='str'),
    wait=dict(type='str', default='qmp', choices=['qmp', 'agent', 'none']),
    wait_timeout=dict(type='float', default=300.0),
    stop_timeout=dict(type='float', default=60.0),
    restart=dict(type='bool', default=False),
    remove_disks=dict(type='bool', default=False),
)


def act(module, request, paths, plan, observed, launch, fresh):
    """Carry the plan out (nothing in check mode); pid, stopped_by and the images created or removed."""
    outcome = dict(pid=observed.pid, stopped_by=None, created_disks=[], removed_disks=[])
    for warning in launch.warnings if plan.starts else ():
        module.warn(warning)
    if module.check_mode:
        if plan.action != 'none':
            outcome['pid'] = None
        if plan.starts:
            outcome['created_disks'] = [disk.path for disk in launch.to_create]
        return outcome
    if observed.alive and plan.action in ('stop', 'restart', 'remove'):
        outcome['stopped_by'] = stop_vm(request, paths, observed.pid, observed.record, module.warn)
        outcome['pid'] = None
    if plan.starts:
        outcome['pid'], outcome['created_disks'] = start_vm(request, paths, launch, observed.record, fresh)
    if plan.action == 'remove':
        outcome['removed_disks'] = remove_vm(paths, observed.record, request.remove_disks)
    if plan.mark_stopped:
        mark_stopped(paths, observed.record)
    if plan.action == 'none' and observed.alive:
        wait_for_agent(request, paths, observed.pid)
    return outcome


def run(module):
    # parse
    request = parse_request(module.params)
    paths = RunDir(request.run_dir)
    # ask: a first look. A VM that needs no start creates nothing, and a start is checked in full before
    # anything (the run directory included) is created.
    plan = decide(request, observe(paths, request))
    launch = prepare_start(request, paths) if plan.starts else None
    with paths.locked(plan.starts and not module.check_mode, request.timeout, f'waiting for the lock of VM {request.name}') as fresh:
        observed = observe(paths, request) if fresh is False else Observed(False, None, None)
        # decide, again under the lock: another task may have acted since the first look
        plan = decide(request, observed)
        if plan.starts and launch is None:
            launch = prepare_start(request, paths)
        # act
        outcome = act(module, request, paths, plan, observed, launch, bool(fresh))
    # report
    if plan.restart_required:
        module.warn(f'VM {request.name} runs with a definition that differs in {", ".join(plan.differences)}; '
                    'restart: true or state: restarted applies it')
    record = observed.record or {}
    result = dict(
        changed=plan.changed, name=request.name, state=plan.state_after, run_dir=paths.path, qmp=paths.qmp,
        monitor=paths.monitor, qga=paths.qga, accel=launch.accel if launch else record.get('accel'),
        argv=launch.argv if launch else record.get('argv') or [], restart_required=plan.restart_required,
        differences=list(plan.differences) if observed.record and plan.state_after == 'running' else [],
        recovered=plan.recovered, **outcome)
    if module._diff and plan.changed:
        result['diff'] = diff_of(plan, observed, request.definition)
    return result


def main():
    module = build_module(ARGUMENT_SPEC, durations=('wait_timeout', 'stop_timeout'), supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
