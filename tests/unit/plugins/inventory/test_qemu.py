# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The qemu.vm.qemu inventory plugin's decisions: which variables and groups a VM gets."""

from __future__ import annotations

from ansible_collections.qemu.vm.plugins.inventory.qemu import InventoryModule, default_groups, host_variables

FOUND = {'name': 'web1', 'uuid': None, 'pid': 42, 'user': 'qemu', 'qmp': '/run/web1/qmp.sock', 'qga': '/run/web1/qga.sock',
         'status': 'running', 'version': '7.2.0', 'agent_available': True, 'guest_os': {'id': 'debian'},
         'guest_hostname': 'web1', 'guest_ips': ['10.0.0.5'], 'run_dir': '/run/web1'}


def test_an_answering_agent_gets_the_qga_connection():
    variables = host_variables(FOUND, use_qga_connection=True)
    assert variables == {
        'qemu_qmp': '/run/web1/qmp.sock', 'qemu_qga': '/run/web1/qga.sock', 'qemu_name': 'web1',
        'qemu_uuid': None, 'qemu_pid': 42, 'qemu_user': 'qemu', 'qemu_status': 'running', 'qemu_version': '7.2.0',
        'qemu_agent_available': True, 'qemu_run_dir': '/run/web1', 'qemu_guest_os': {'id': 'debian'}, 'qemu_guest_hostname': 'web1',
        'qemu_guest_ips': ['10.0.0.5'], 'ansible_connection': 'qemu.vm.qga', 'ansible_qemu_qga': '/run/web1/qga.sock'}
    assert 'ansible_connection' not in host_variables(FOUND, use_qga_connection=False)
    assert default_groups(FOUND) == ['qemu_running', 'qemu_agent']


def test_a_vm_of_a_remote_hypervisor_is_reached_through_it():
    vm = dict(FOUND, hypervisor='hv2', ssh={'host': '192.0.2.7', 'user': 'root', 'port': 2222, 'private_key_file': None,
                                            'ssh_args': None, 'name': 'hv2'})
    variables = host_variables(vm, use_qga_connection=True)
    assert variables['qemu_hypervisor'] == 'hv2'
    assert variables['ansible_qemu_host'] == '192.0.2.7'
    assert variables['ansible_qemu_host_user'] == 'root' and variables['ansible_qemu_host_port'] == 2222
    assert 'ansible_qemu_host_private_key_file' not in variables and 'ansible_qemu_host_ssh_args' not in variables
    without = host_variables(vm, use_qga_connection=False)
    assert without['qemu_hypervisor'] == 'hv2' and not any(key.startswith('ansible_') for key in without)
    local = host_variables(dict(FOUND, hypervisor='localhost', ssh=None), use_qga_connection=True)
    assert local['qemu_hypervisor'] == 'localhost' and 'ansible_qemu_host' not in local


def test_a_vm_without_answers_keeps_what_is_known():
    vm = dict(FOUND, status=None, version=None, agent_available=False)
    variables = host_variables(vm, use_qga_connection=True)
    assert variables['qemu_agent_available'] is False
    assert variables['qemu_status'] is None and variables['qemu_qga'] == '/run/web1/qga.sock'
    assert not set(variables) & {'qemu_guest_os', 'qemu_guest_hostname', 'qemu_guest_ips', 'ansible_connection'}
    assert default_groups(vm) == []
    assert default_groups(dict(vm, status='paused')) == ['qemu_paused']
    assert default_groups(dict(vm, status='suspended')) == []


def test_configuration_file_names(tmp_path):
    plugin = InventoryModule()
    for name, accepted in (('vms.qemu.yml', True), ('vms.qemu.yaml', True), ('vms.yml', False),
                           ('qemu.yml', False)):
        path = tmp_path / name
        path.write_text('plugin: qemu.vm.qemu\n')
        assert plugin.verify_file(str(path)) is accepted, name
