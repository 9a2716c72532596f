# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Figure 9: the remote path (issue 25): the qga connection and the inventory through SSH.

A real OpenSSH server (tests/harness/sshd.py: Debian's sshd on 127.0.0.1, its own host key and
config, root by key) stands for the hypervisor; the guest runs twice as in figure 6 (a harness VM and
a libvirt domain of the same guest). Figure 6's plays run on three hosts, their order rotating each
round: qemu.vm.qga on the local socket, qemu.vm.qga through that sshd (`ansible_qemu_host`,
ControlPersist as the plugin sets it), and community.libvirt.libvirt_qemu with a `qemu+ssh://` URI to
the same sshd; pipelining on for qemu.vm.qga (libvirt_qemu has none). Then the inventory: `qemu.vm.qemu`
over two such sshd "hypervisors" that each see 4 VMs, against the local scan while 1 VM runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

from fig6_connection import install_anchors, measure_rounds
from harness.ansible import BIN, ansible_env  # pylint: disable=import-error
from registry import Figure, register  # pylint: disable=import-error
from report import paired, row, samples  # pylint: disable=import-error
from tools import median  # pylint: disable=import-error

VARIANTS = (('local', 'local', True), ('ssh', 'remote', True), ('libvirt_ssh', 'libvirt_ssh', False))
FLEET = 4


def write_inventory(path, qga, domain, sshd, key, known_hosts):
    ssh_args = f'-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes'
    # libvirt's ssh transport runs the ssh binary, which reads only ~/.ssh/known_hosts: no_verify instead of
    # writing there (the host key is the bench's own sshd's, on loopback)
    uri = f'qemu+ssh://root@127.0.0.1:{sshd.port}/system?keyfile={key}&no_verify=1'
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(f'local ansible_connection=qemu.vm.qga ansible_qemu_qga={qga}\n')
        handle.write(f'remote ansible_connection=qemu.vm.qga ansible_qemu_qga={qga} ansible_qemu_host=127.0.0.1 '
                     f'ansible_qemu_host_port={sshd.port} ansible_qemu_host_user=root '
                     f'ansible_qemu_host_private_key_file={key} "ansible_qemu_host_ssh_args={ssh_args}"\n')
        handle.write(f'libvirt_ssh ansible_connection=community.libvirt.libvirt_qemu ansible_host={domain} '
                     f'"ansible_libvirt_uri={uri}"\n')
        handle.write('[all:vars]\nansible_python_interpreter=/tmp/bench/timed-python\n')
    return path


def inventory_seconds(config):
    started = time.perf_counter()
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', config, '--list'], env=ansible_env(),
                          capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f'ansible-inventory failed: {proc.stdout[-1500:]} {proc.stderr[-1500:]}')
    hosts = list(json.loads(proc.stdout)['_meta']['hostvars'])
    return seconds, hosts


def measure_inventory(ctx, workdir, sshds, key, known_hosts, fig):
    from harness.guest import VM  # pylint: disable=import-error,import-outside-toplevel

    local = os.path.join(workdir, 'local.qemu.yml')
    with open(local, 'w', encoding='utf-8') as handle:
        json.dump({'plugin': 'qemu.vm.qemu', 'timeout': 5}, handle)
    remote = os.path.join(workdir, 'remote.qemu.yml')
    ssh_args = f'-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes'
    with open(remote, 'w', encoding='utf-8') as handle:
        json.dump({'plugin': 'qemu.vm.qemu', 'timeout': 10, 'hypervisors': [
            {'host': '127.0.0.1', 'port': sshd.port, 'user': 'root', 'private_key_file': key, 'ssh_args': ssh_args,
             'name': f'hv{index + 1}'} for index, sshd in enumerate(sshds)]}, handle)
    vms = []
    try:
        for index in range(FLEET):
            vms.append(VM(os.path.join(workdir, f'fleet{index}'), name=f'bench-fleet{index}', memory=96,
                          images=ctx.images))
            vms[-1].start(timeout=300)
            if index == 0:
                for _round in range(ctx.rounds):
                    seconds, hosts = inventory_seconds(local)
                    fig['inv_local_s'].append(seconds)
                fig['inv_local_hosts'] = len(hosts)
        for _round in range(ctx.rounds):
            seconds, hosts = inventory_seconds(remote)
            fig['inv_remote_s'].append(seconds)
        fig['inv_remote_hosts'] = len(hosts)
    finally:
        for machine in vms:
            machine.stop()


def measure(ctx):
    try:
        install_anchors(ctx.log)
    except (RuntimeError, OSError) as exc:
        return {'anchor_failure': str(exc)[-1500:]}
    from harness.guest import VM  # pylint: disable=import-error,import-outside-toplevel
    from harness.sshd import SSHD, keygen  # pylint: disable=import-error,import-outside-toplevel
    from libvirt_guest import LibvirtGuest  # pylint: disable=import-error,import-outside-toplevel

    workdir = os.path.join(ctx.output, 'fig9')
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    key = os.path.join(workdir, 'client_key')
    public = keygen(key)
    sshds = [SSHD(os.path.join(workdir, f'sshd{index}'), public).start() for index in range(2)]
    known_hosts = os.path.join(workdir, 'known_hosts')
    with open(known_hosts, 'w', encoding='ascii') as handle:
        handle.writelines(sshd.known_hosts_line() + '\n' for sshd in sshds)
    domain = LibvirtGuest('qemu-vm-bench9', os.path.join(workdir, 'libvirt'), ctx.images, memory=512)
    vm = VM(os.path.join(workdir, 'harness'), name='bench-remote', memory=512, python=True, images=ctx.images)
    fig = {'inv_local_s': [], 'inv_remote_s': []}
    try:
        domain.start(wait=False)
        vm.start(timeout=300)
        domain.wait_agent(300)
        inv = write_inventory(os.path.join(workdir, 'inventory.ini'), vm.qga_path, domain.name, sshds[0], key,
                              known_hosts)
        fig.update(measure_rounds(workdir, vm, domain, ctx.rounds, lambda text: ctx.log('fig 9 ' + text),
                                  variants=VARIANTS, transfer_variants=('local', 'ssh', 'libvirt_ssh'), inv=inv))
    finally:
        vm.stop()
        domain.destroy()
    try:
        measure_inventory(ctx, workdir, sshds, key, known_hosts, fig)
    finally:
        for sshd in sshds:
            sshd.stop()
    return fig


def rows(fig):
    if 'anchor_failure' in fig:
        return [row('9', 'Remote path (anchors could not be installed)', None, 's', fig['anchor_failure'][:200], None)]

    def med(key):
        return median(fig[key])

    return [
        row('9task', 'Time per `command` task, qemu.vm.qga through SSH (pipelining on)', med('ssh_per_task_s'), 's',
            'the same on the local socket', med('local_per_task_s'), 1.3),
        row('9conn', 'Connection overhead per `command` task (in its calls, less the module), qemu.vm.qga through SSH',
            med('ssh_plugin_s'), 's', 'community.libvirt.libvirt_qemu, qemu+ssh:// to the same sshd',
            med('libvirt_ssh_plugin_s'), 0.8),
        row('9get', 'Raw download (fetch_file), 64 MiB, qemu.vm.qga through SSH', med('ssh_get64_mbps'), 'MB/s',
            'community.libvirt.libvirt_qemu, qemu+ssh://', med('libvirt_ssh_get64_mbps'), 1.0, higher_is_better=True),
        row('9put', 'Raw upload (put_file), 64 MiB, qemu.vm.qga through SSH', med('ssh_put64_mbps'), 'MB/s',
            'community.libvirt.libvirt_qemu, qemu+ssh://', med('libvirt_ssh_put64_mbps'), 1.0, higher_is_better=True),
        row('9inv', f'ansible-inventory --list over 2 SSH hypervisors x {FLEET} VMs', med('inv_remote_s'), 's',
            'the local scan of 1 VM', med('inv_local_s'), 2.0),
    ]


def details(fig):
    if 'anchor_failure' in fig:
        return ['The anchors failed: ' + fig['anchor_failure']]
    lines = ['Samples, in run order:', '']
    for name, _host, _pipelining in VARIANTS:
        lines.append(f'- {name}: per task s {samples(fig[name + "_per_task_s"], "{0:.2f}")}; connection share s '
                     f'{samples(fig[name + "_plugin_s"], "{0:.3f}")}; module s {median(fig[name + "_module_s"]):.2f} '
                     f'(median); put 64 MiB MB/s {samples(fig[name + "_put64_mbps"], "{0:.2f}")}; get 64 MiB MB/s '
                     f'{samples(fig[name + "_get64_mbps"], "{0:.2f}")}')
    lines.append('- ssh/local per task, per round: {0}'.format(
        samples(paired(fig['ssh_per_task_s'], fig['local_per_task_s']), '{0:.2f}')))
    lines.append('- inventory s: local (1 VM, {0} hosts) {1}; 2 SSH hypervisors ({2} hosts) {3}'.format(
        fig.get('inv_local_hosts'), samples(fig['inv_local_s'], '{0:.2f}'), fig.get('inv_remote_hosts'),
        samples(fig['inv_remote_s'], '{0:.2f}')))
    return lines


register(Figure(9, 'the remote path through SSH', measure, rows, details))
