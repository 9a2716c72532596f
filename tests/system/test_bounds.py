# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every duration option is a finite, positive, bounded number of seconds, or the task fails
naming it, before anything is asked of the VM (nan once made qemu_guest_agent_wait hang)."""

from __future__ import annotations

import json

from harness.ansible import run_playbook

BAD_VALUES = ('nan', 'inf', '-1', '0', '1e9')


def tasks_for(vm):
    """(module, args, option) for each module and duration option; the args would act if accepted."""
    qmp, qga = vm.qmp_path, vm.qga_path
    return [
        ('qemu_vm_info', {'qmp': qmp}, 'timeout'),
        ('qemu_snapshot', {'qmp': qmp, 'name': 'never'}, 'timeout'),
        ('qemu_snapshot', {'qmp': qmp, 'qga': qga, 'name': 'never', 'quiesce': 'required'}, 'freeze_timeout'),
        ('qemu_snapshot_info', {'qmp': qmp}, 'timeout'),
        ('qemu_guest_fsfreeze', {'qga': qga, 'state': 'frozen'}, 'timeout'),
        ('qemu_guest_power', {'qmp': qmp, 'qga': qga, 'state': 'poweroff'}, 'timeout'),
        ('qemu_guest_facts', {'qga': qga}, 'timeout'),
        ('qemu_guest_agent_wait', {'qga': qga}, 'timeout'),
        ('qemu_guest_file', {'qga': qga, 'path': '/tmp/never', 'content': 'x'}, 'timeout'),
        ('qemu_dbus_vmstate', {'qmp': qmp, 'addr': 'unix:path=/nonexistent'}, 'timeout'),
    ]


def test_every_duration_option_is_bounded(vm, tmp_path):
    cases = []
    tasks = []
    for module, args, option in tasks_for(vm):
        for value in BAD_VALUES:
            task_args = dict(args)
            task_args[option] = value
            cases.append((module, option, value))
            tasks.append({'name': f'{module} {option}={value}', 'qemu.vm.' + module: task_args,
                          'register': f'r{len(tasks)}', 'ignore_errors': True})
    out = tmp_path / 'results.json'
    tasks.append({'name': 'collect', 'ansible.builtin.copy': {
        'dest': str(out), 'mode': '0644',
        'content': '{{ [' + ', '.join(f'r{i}' for i in range(len(cases))) + '] | to_json }}'}})
    play = [{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]
    proc = run_playbook(json.dumps(play) + '\n', timeout=900)
    assert out.exists(), proc.stdout
    results = json.loads(out.read_text())
    for (module, option, value), result in zip(cases, results):
        assert result.get('failed'), (module, option, value, result)
        assert result['msg'].startswith(f'{option} must be a finite number of seconds'), (module, value, result)
        assert result.get('parameter') == option
    # Nothing happened to the VM: running, not frozen, no snapshot, the guest file not written.
    assert vm.status() == 'running'
    assert vm.qga('guest-fsfreeze-status') == 'thawed'
    assert all(not n.get('image', {}).get('snapshots') for n in vm.qmp('query-named-block-nodes', flat=True))
    assert vm.guest_exec(['test', '-e', '/tmp/never'])[0] != 0
