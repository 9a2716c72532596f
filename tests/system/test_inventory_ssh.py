# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The qemu.vm.qemu inventory over SSH (hypervisors): two real sshd "hypervisors" and one unreachable.

ansible-inventory runs as a throwaway user who cannot open the VMs' sockets (root's 0700 directory)
and logs in to two sshd instances as root (tests/harness/sshd.py). Both sshd run on this machine, so
both hypervisors see the same two VMs: each VM is listed once per hypervisor, under NAME@HYPERVISOR
(the rule for names that VMs of several hypervisors claim), with that hypervisor's variables and
group. `sockets` keeps the scan to this test's VMs (other test runs may have QEMUs running).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile

import pytest

from harness.ansible import ansible_env
from harness.guest import VM
from harness.sshd import SSHD, ControllerUser

from test_inventory import _plain

TIMEOUT = 10


@pytest.fixture(scope='module')
def controller():
    user = ControllerUser()
    yield user
    user.close()


@pytest.fixture(scope='module')
def hypervisors(controller, tmp_path_factory):
    servers = [SSHD(tmp_path_factory.mktemp(f'sshd{index}'), controller.public_key).start() for index in range(2)]
    controller.trust(*servers)
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope='module')
def vms(guest_images):
    """Two VMs, alpha (with Python) and beta, with their sockets in a directory closed to the controller user."""
    base = tempfile.mkdtemp(prefix='qvmssh')  # 0700, root's; short (unix socket paths <= 107 bytes)
    machines = [VM(os.path.join(base, 'alpha'), images=guest_images, python=True, name='alpha'),
                VM(os.path.join(base, 'beta'), images=guest_images, name='beta')]
    try:
        for machine in machines:
            machine.start()
        yield base, machines
    finally:
        for machine in machines:
            machine.stop()
        shutil.rmtree(base, ignore_errors=True)


def _closed_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def config(base, servers, controller, unreachable_port, **extra):
    entries = [{'host': '127.0.0.1', 'port': server.port, 'user': 'root', 'private_key_file': controller.key,
                'name': f'hv{index + 1}'} for index, server in enumerate(servers)]
    entries.append(f'root@127.0.0.1:{unreachable_port}')
    values = {
        'plugin': 'qemu.vm.qemu',
        'hypervisors': entries,
        'sockets': [{'qmp': os.path.join(base, '*', 'qmp.sock'), 'qga': '{dir}/qga.sock'}],
        'timeout': TIMEOUT,
        'compose': {'ansible_python_interpreter': "'/usr/bin/python3'"},
    }
    values.update(extra)
    return values


def write_config(controller, name, values):
    return controller.write(os.path.join(controller.home, f'{name}.qemu.yml'), json.dumps(values), mode=0o644)


def test_two_hypervisors_and_an_unreachable_one(vms, hypervisors, controller):
    base, (alpha, beta) = vms
    port = _closed_port()
    path = write_config(controller, 'three', config(base, hypervisors, controller, port))
    proc = controller.run(controller.ansible_argv('ansible-inventory', '-i', path, '--list'),
                          controller.env(ansible_env()), timeout=300, merge_output=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stderr
    inventory = _plain(json.loads(proc.stdout))
    hostvars = inventory['_meta']['hostvars']
    assert sorted(hostvars) == ['alpha@hv1', 'alpha@hv2', 'beta@hv1', 'beta@hv2']
    for index, server in enumerate(hypervisors):
        name = f'hv{index + 1}'
        assert sorted(inventory[f'qemu_hypervisor_{name}']['hosts']) == [f'alpha@{name}', f'beta@{name}']
        for vm in (alpha, beta):
            variables = hostvars[f'{vm.name}@{name}']
            assert variables['qemu_hypervisor'] == name
            assert variables['qemu_name'] == vm.name
            assert variables['qemu_qmp'] == vm.qmp_path and variables['qemu_qga'] == vm.qga_path
            assert variables['qemu_pid'] == vm.proc.pid
            assert variables['qemu_status'] == 'running'
            assert variables['qemu_agent_available'] is True
            assert variables['ansible_connection'] == 'qemu.vm.qga'
            assert variables['ansible_qemu_qga'] == vm.qga_path
            assert variables['ansible_qemu_host'] == '127.0.0.1'
            assert variables['ansible_qemu_host_port'] == server.port
            assert variables['ansible_qemu_host_user'] == 'root'
            assert variables['ansible_qemu_host_private_key_file'] == controller.key
            assert variables['ansible_python_interpreter'] == '/usr/bin/python3'  # compose works
    assert sorted(inventory['qemu_agent']['hosts']) == sorted(hostvars)
    warning = ' '.join(proc.stderr.split())
    assert f'hypervisor 127.0.0.1 cannot be scanned: root@127.0.0.1:{port}: cannot reach it over SSH' in warning, proc.stderr

    # The discovered connection reaches the guest: through hv2's sshd, as the controller user cannot locally.
    ping = controller.run(controller.ansible_argv('ansible', 'alpha@hv2', '-i', path, '-m', 'ansible.builtin.ping'),
                          controller.env(ansible_env()), timeout=300)
    assert ping.returncode == 0, ping.stdout
    assert 'alpha@hv2 | SUCCESS' in ping.stdout and '"ping": "pong"' in ping.stdout


def test_strict_fails_on_an_unreachable_hypervisor(vms, hypervisors, controller):
    base, _machines = vms
    port = _closed_port()
    path = write_config(controller, 'strict', config(base, hypervisors, controller, port, strict=True))
    proc = controller.run(controller.ansible_argv('ansible-inventory', '-i', path, '--list'),
                          controller.env(ansible_env({'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'True'})), timeout=300,
                          merge_output=False)
    assert proc.returncode != 0
    said = ' '.join(proc.stderr.split())
    assert f'hypervisor 127.0.0.1 cannot be scanned: root@127.0.0.1:{port}' in said, proc.stderr


BACKUP_PLAY = '''
- name: Back up the VMs of every hypervisor, each through its own
  hosts: qemu_agent
  gather_facts: false
  tasks:
    - name: Back up the VM on its hypervisor
      ansible.builtin.include_role:
        name: qemu.vm.backup
        apply:
          delegate_to: "{{ qemu_hypervisor }}"
      vars:
        backup_method: external
        backup_dest: "{{ backup_root }}/{{ qemu_hypervisor }}"
        backup_vms:
          - name: "{{ qemu_name }}"
            qmp: "{{ qemu_qmp }}"
            qga: "{{ qemu_qga }}"
'''


def test_one_play_backs_up_the_vms_of_both_hypervisors(vms, hypervisors, controller):
    """Modules delegated to each VM's qemu_hypervisor (Ansible's own ssh connection to that sshd)."""
    base, (alpha, beta) = vms
    path = write_config(controller, 'backup', config(base, hypervisors, controller, _closed_port()))
    # The hypervisors as inventory hosts; the modules there run with the test venv's Python (qemu.qmp).
    lines = ['[hypervisors]'] + [
        f'hv{index + 1} ansible_host=127.0.0.1 ansible_port={server.port} ansible_user=root '
        f'ansible_ssh_private_key_file={controller.key} ansible_python_interpreter={sys.executable}'
        for index, server in enumerate(hypervisors)]
    static = controller.write(os.path.join(controller.home, 'hypervisors.ini'), '\n'.join(lines) + '\n', mode=0o644)
    play = controller.write(os.path.join(controller.home, 'backup.yml'), BACKUP_PLAY, mode=0o644)
    backup_root = tempfile.mkdtemp(prefix='qvmbackup')  # root's, on the "hypervisors"
    try:
        extra = json.dumps({'backup_root': backup_root})
        proc = controller.run(controller.ansible_argv('ansible-playbook', '-i', path, '-i', static, play, '-e', extra,
                                                      '--limit', 'alpha@hv1,beta@hv2'),
                              controller.env(ansible_env()), timeout=900)
        assert proc.returncode == 0, proc.stdout
        assert 'Traceback' not in proc.stdout
        assert 'alpha@hv1 -> hv1' in proc.stdout and 'beta@hv2 -> hv2' in proc.stdout
        for hypervisor, vm in (('hv1', alpha), ('hv2', beta)):
            written = [name for _root, _dirs, files in os.walk(os.path.join(backup_root, hypervisor, vm.name))
                       for name in files if name.endswith('.qcow2')]
            assert written, f'no backup of {vm.name} through {hypervisor}'
        assert sorted(os.listdir(backup_root)) == ['hv1', 'hv2']
        assert os.listdir(os.path.join(backup_root, 'hv1')) == ['alpha']
        assert os.listdir(os.path.join(backup_root, 'hv2')) == ['beta']
    finally:
        shutil.rmtree(backup_root, ignore_errors=True)
