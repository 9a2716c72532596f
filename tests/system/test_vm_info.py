# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu.vm.qemu_vm_info, run the way users run it; where a plain VM does, one that qemu.vm.qemu_vm started."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from harness.ansible import run_module, run_playbook


def test_adhoc_reports_vm_block_nodes_and_agent(vm_factory):
    vm = vm_factory(name='infovm', ga_block=('guest-exec',), disks=[{'format': 'raw', 'size': '8M'}])
    result = run_module('qemu_vm_info', {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'timeout': 10})
    assert result['rc'] == 0, result['output']
    assert not result.changed
    version = subprocess.run(['qemu-system-x86_64', '--version'], stdout=subprocess.PIPE,
                             text=True, check=True).stdout
    assert result['qemu_version'] in version
    assert result['status'] == 'running' and result['running'] is True
    assert result['name'] == 'infovm'
    nodes = {n['node_name']: n for n in result['block_nodes']}
    assert nodes['disk0']['driver'] == 'qcow2'
    assert nodes['disk0']['device'] == 'vda' and nodes['disk0']['top']
    assert nodes['disk0']['can_snapshot'] is True
    assert nodes['disk1']['driver'] == 'raw' and nodes['disk1']['can_snapshot'] is False
    assert nodes['disk0-file']['top'] is False
    assert [n['node_name'] for n in result['block_nodes'][:2]] == ['disk0', 'disk1']
    agent = result['agent']
    assert agent['available'] is True
    assert 'guest-ping' in agent['enabled_commands']
    assert 'guest-exec' in agent['disabled_commands']
    assert 'guest-exec' not in agent['enabled_commands']


def test_agentless_guest_is_reported_not_failed(vm_noagent):
    start = time.monotonic()
    result = run_module('qemu_vm_info', {'qmp': vm_noagent.qmp_path, 'qga': vm_noagent.qga_path, 'timeout': 3})
    assert result['rc'] == 0, result['output']
    assert result['agent']['available'] is False
    assert 'did not answer' in result['agent']['error']
    assert time.monotonic() - start < 20  # ansible's own start-up included


def test_missing_socket_fails_with_classified_error(tmp_path):
    path = str(tmp_path / 'gone.sock')
    result = run_module('qemu_vm_info', {'qmp': path})
    assert result.failed
    assert result['error_type'] == 'SocketMissingError'
    assert path in result['msg']
    assert 'Traceback' not in result['output']


def test_qmp_is_required():
    result = run_module('qemu_vm_info', {'qga': '/nonexistent'})
    assert result.failed
    assert result['msg'].startswith('qmp is required')


def test_bad_timeout_is_rejected(managed_vm):
    vm = managed_vm  # started by qemu.vm.qemu_vm
    result = run_module('qemu_vm_info', {'qmp': vm.qmp_path, 'timeout': 0})
    assert result.failed and 'timeout' in result['msg']


def test_busy_monitor_waits_within_timeout(managed_vm):
    vm = managed_vm  # started by qemu.vm.qemu_vm
    holder = subprocess.Popen([sys.executable, '-c', textwrap.dedent('''
        import sys, time
        from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession
        with QMPSession(sys.argv[1], timeout=10) as qmp:
            print('held', flush=True)
            time.sleep(2)
    '''), vm.qmp_path], stdout=subprocess.PIPE, universal_newlines=True, env=dict(os.environ))
    try:
        assert holder.stdout.readline().strip() == 'held'
        result = run_module('qemu_vm_info', {'qmp': vm.qmp_path, 'timeout': 20})
    finally:
        holder.wait()
    assert result['rc'] == 0, result['output']
    assert result['status'] == 'running'


def test_playbook_with_group_module_defaults_and_check_mode(managed_vm):
    vm = managed_vm  # started by qemu.vm.qemu_vm
    playbook = textwrap.dedent('''
        - name: Read the VM through the action group defaults
          hosts: localhost
          gather_facts: false
          module_defaults:
            group/qemu.vm.qemu:
              qmp: "{{ qmp }}"
              qga: "{{ qga }}"
              timeout: 15
          tasks:
            - name: Gather VM info
              qemu.vm.qemu_vm_info:
              register: info
            - name: Check what came back
              ansible.builtin.assert:
                that:
                  - info is not changed
                  - info.status == 'running'
                  - info.agent.available
                  - "'disk0' in (info.block_nodes | map(attribute='node_name'))"
    ''')
    for check in (False, True):
        proc = run_playbook(playbook, {'qmp': vm.qmp_path, 'qga': vm.qga_path}, check=check)
        assert proc.returncode == 0, proc.stdout
        assert 'failed=0' in proc.stdout
