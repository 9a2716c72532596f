# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_guest_facts against the real qemu-ga in the tiny guest (one started by qemu.vm.qemu_vm where it fits)."""

from __future__ import annotations


from harness.ansible import run_module, run_playbook

ALL = ['agent', 'os', 'hostname', 'network', 'filesystems', 'disks', 'users', 'timezone', 'time', 'vcpus', 'fsfreeze']


def facts(vm, check=False, **extra):
    args = {'qga': vm.qga_path}
    args.update(extra)
    result = run_module('qemu_guest_facts', args, check=check)
    assert not result.failed and not result['changed'], result['output']
    return result['ansible_facts']['qemu_guest']


def test_all_facts_of_a_running_guest(managed_guest):
    vm = managed_guest
    for check in (False, True):
        g = facts(vm, check=check)
        assert g['gather_subset'] == ALL and g['skipped'] == []
        assert g['agent']['version'] == vm.qga('guest-info')['version']
        assert 'guest-get-fsinfo' in g['agent']['enabled_commands']
        assert 'guest-get-fsinfo' not in g['agent']['disabled_commands']
        assert g['hostname'] == 'qemuvm-guest'
        assert g['os']['id'] == 'qemuvm' and g['os']['machine'] == 'x86_64'
        assert g['os']['kernel_release'].endswith('-cloud-amd64')
        lo = [i for i in g['network_interfaces'] if i['name'] == 'lo']
        assert lo and lo[0]['hardware_address'] == '00:00:00:00:00:00'
        assert {'ip_address': '127.0.0.1', 'ip_address_type': 'ipv4', 'prefix': 8} in lo[0]['ip_addresses']
        data = [f for f in g['filesystems'] if f['mountpoint'] == '/data']
        assert data and data[0]['type'] == 'ext4' and data[0]['total_bytes'] > data[0]['used_bytes'] > 0
        assert data[0]['disk'][0]['dev'] == '/dev/vda' and data[0]['disk'][0]['bus_type'] == 'virtio'
        assert [d['name'] for d in g['disks']] == ['/dev/vda']
        assert g['users'] == []
        assert g['timezone'] == {'zone': 'UTC', 'offset': 0}
        assert g['time']['epoch_ns'] > 1.6e18 and g['time']['iso8601'].endswith('Z')
        assert isinstance(g['time']['offset_from_host_ms'], int)
        assert g['vcpus'] == [{'logical_id': 0, 'online': True, 'can_offline': False}]
        assert g['fsfreeze_status'] == 'thawed'


def test_gather_subset(managed_guest):
    vm = managed_guest
    g = facts(vm, gather_subset=['min'])
    assert g['gather_subset'] == ['agent', 'os', 'hostname', 'fsfreeze']
    assert set(g) == {'agent', 'gather_subset', 'skipped', 'os', 'hostname', 'fsfreeze_status'}
    g = facts(vm, gather_subset=['network'])
    assert g['gather_subset'] == ['agent', 'network'] and 'network_interfaces' in g and 'os' not in g
    g = facts(vm, gather_subset=['!network', '!disks'])
    assert g['gather_subset'] == [s for s in ALL if s not in ('network', 'disks')]
    g = facts(vm, gather_subset=['!all', 'vcpus'])
    assert g['gather_subset'] == ['agent', 'os', 'hostname', 'vcpus', 'fsfreeze']
    bad = run_module('qemu_guest_facts', {'qga': vm.qga_path, 'gather_subset': ['hardware']})
    assert bad.failed and 'gather_subset' in bad['msg'] and "'hardware'" in bad['msg'] and 'network' in bad['msg']


def test_facts_of_a_frozen_guest(managed_guest):
    vm = managed_guest
    assert vm.qga('guest-fsfreeze-freeze') == 1
    g = facts(vm)
    assert g['fsfreeze_status'] == 'frozen'
    assert g['agent']['version']
    assert 'guest-get-osinfo' in g['agent']['disabled_commands']
    skipped = {s['subset']: s for s in g['skipped']}
    assert set(skipped) == set(ALL) - {'agent', 'fsfreeze'}
    for entry in skipped.values():
        assert entry['reason'] == 'frozen'
        assert 'frozen' in entry['msg'] and 'state=thawed' in entry['msg']
    assert skipped['hostname']['command'] == 'guest-get-host-name'
    for key in ('os', 'hostname', 'network_interfaces', 'filesystems'):
        assert key not in g
    assert vm.qga('guest-fsfreeze-status') == 'frozen'
    vm.qga('guest-fsfreeze-thaw')


def test_blocked_commands_are_skipped(vm_factory):
    vm = vm_factory(ga_block=['guest-get-users', 'guest-get-timezone'])
    g = facts(vm)
    assert sorted((s['subset'], s['reason']) for s in g['skipped']) == [('timezone', 'disabled'), ('users', 'disabled')]
    assert 'users' not in g and 'timezone' not in g and g['hostname'] == 'qemuvm-guest'
    assert {'guest-get-timezone', 'guest-get-users'} <= set(g['agent']['disabled_commands'])
    assert 'guest-get-users' not in g['agent']['enabled_commands']


PLAYBOOK = """
- name: Guest facts in a play
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/qemu.vm.qemu:
      qga: "{{ qga }}"
      qmp: "{{ qmp }}"
  tasks:
    - name: Wait for the agent
      qemu.vm.qemu_guest_agent_wait:

    - name: Gather
      qemu.vm.qemu_guest_facts:
        gather_subset: [min, network]

    - name: Use them
      ansible.builtin.assert:
        that:
          - ansible_facts.qemu_guest.hostname == 'qemuvm-guest'
          - qemu_guest.network_interfaces | map(attribute='name') | list == ['lo']
          - qemu_guest.fsfreeze_status == 'thawed'
"""


def test_facts_in_a_playbook_with_module_defaults(managed_guest):
    proc = run_playbook(PLAYBOOK, extra_vars={'qga': managed_guest.qga_path, 'qmp': managed_guest.qmp_path})
    assert proc.returncode == 0, proc.stdout
    assert 'ok=3' in proc.stdout and 'changed=0' in proc.stdout


def test_no_agent_is_a_classified_error(vm_noagent):
    result = run_module('qemu_guest_facts', {'qga': vm_noagent.qga_path, 'timeout': 3})
    assert result.failed and result['error_type'] == 'AgentNotRespondingError', result['output']
    assert 'did not answer guest-sync-delimited within 3 s' in result['msg']
    assert 'ansible_facts' not in result
