# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_guest_fsfreeze against the real qemu-ga in the tiny guest."""

from __future__ import annotations

import re
import time

from harness.ansible import run_module, run_playbook
from harness.runs import wait_for

# A writer in the guest that announces each write on the serial console (which is not
# frozen) before and after appending to /data (which is), so the host can see a write
# that has started but not completed.
WRITER = ('i=0; while [ $i -lt 3000 ]; do echo "writer attempt $i" > /dev/console; '
          'echo $i >> /data/writes; echo "writer done $i" > /dev/console; i=$((i+1)); sleep 0.1; done')


def freeze_status(vm):
    return vm.qga('guest-fsfreeze-status')


def writer_lines(vm):
    return re.findall(r'writer (attempt|done) (\d+)', vm.console_text())


def test_freeze_blocks_guest_writes_until_thaw(guest):
    vm = guest
    args = {'qga': vm.qga_path, 'state': 'frozen'}
    # Start the writer before freezing: while frozen the agent runs no guest-exec.
    started = vm.guest_exec(['sh', '-c', f'({WRITER}) </dev/null >/dev/null 2>&1 &'])
    assert started[0] == 0, started
    wait_for(lambda: ('done', '2') in writer_lines(vm), 'the writer to start writing', timeout=30, interval=0.1)

    check = run_module('qemu_guest_fsfreeze', args, check=True, diff=True)
    assert check['changed'] and not check.failed, check['output']
    assert (check['status_before'], check['status'], check['count']) == ('thawed', 'frozen', None)
    assert freeze_status(vm) == 'thawed'

    frozen = run_module('qemu_guest_fsfreeze', args, diff=True)
    assert frozen['changed'] and not frozen.failed, frozen['output']
    assert (frozen['status_before'], frozen['status'], frozen['count']) == ('thawed', 'frozen', 1)
    assert freeze_status(vm) == 'frozen'

    # The writer is now stuck inside a write to /data: an attempt without its done.
    def stuck_attempt():
        lines = writer_lines(vm)
        if lines and lines[-1][0] == 'attempt':
            return lines[-1][1]
        return None
    blocked = wait_for(stuck_attempt, 'a write to block', timeout=30, interval=0.1)
    time.sleep(2)
    assert ('done', blocked) not in writer_lines(vm), 'a write completed while the guest was frozen'

    for check_mode in (True, False):
        again = run_module('qemu_guest_fsfreeze', args, check=check_mode)
        assert not again['changed'] and not again.failed, again['output']
        assert again['status'] == 'frozen'
    assert ('done', blocked) not in writer_lines(vm)

    thaw_args = {'qga': vm.qga_path, 'state': 'thawed'}
    check = run_module('qemu_guest_fsfreeze', thaw_args, check=True)
    assert check['changed'] and check['status'] == 'thawed', check['output']
    assert freeze_status(vm) == 'frozen'
    assert ('done', blocked) not in writer_lines(vm)

    thawed = run_module('qemu_guest_fsfreeze', thaw_args)
    assert thawed['changed'] and not thawed.failed, thawed['output']
    assert (thawed['status_before'], thawed['status'], thawed['count']) == ('frozen', 'thawed', 1)
    wait_for(lambda: ('done', blocked) in writer_lines(vm), 'the blocked write to complete after thaw', timeout=30,
             interval=0.1)
    assert freeze_status(vm) == 'thawed'

    for check_mode in (True, False):
        again = run_module('qemu_guest_fsfreeze', thaw_args, check=check_mode)
        assert not again['changed'] and not again.failed, again['output']
        assert (again['status'], again['count']) == ('thawed', 0)

    written = vm.guest_exec(['cat', '/data/writes'])
    assert written[0] == 0 and blocked.encode() + b'\n' in written[1]


PLAYBOOK = """
- name: Freeze, work, always thaw
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Quiesced section
      block:
        - name: Freeze
          qemu.vm.qemu_guest_fsfreeze:
            qga: "{{ qga }}"
            state: frozen
          register: frozen

        - name: Facts while frozen
          qemu.vm.qemu_guest_facts:
            qga: "{{ qga }}"
            gather_subset: [min]

        - name: Fail inside the block
          ansible.builtin.fail:
            msg: "frozen {{ frozen.count }} with {{ qemu_guest.fsfreeze_status }}"
      always:
        - name: Thaw
          qemu.vm.qemu_guest_fsfreeze:
            qga: "{{ qga }}"
            state: thawed
"""


def test_playbook_block_always_thaws_with_diff(guest):
    vm = guest
    proc = run_playbook(PLAYBOOK, extra_vars={'qga': vm.qga_path}, diff=True)
    assert proc.returncode == 2, proc.stdout
    assert 'frozen 1 with frozen' in proc.stdout
    # --diff shows the status change of both the freeze and the thaw
    assert re.search(r'-\s*"?status"?: "?thawed.*\n.*\+\s*"?status"?: "?frozen', proc.stdout), proc.stdout
    assert re.search(r'-\s*"?status"?: "?frozen.*\n.*\+\s*"?status"?: "?thawed', proc.stdout), proc.stdout
    assert 'ok=3' in proc.stdout and 'changed=2' in proc.stdout and 'failed=1' in proc.stdout
    assert freeze_status(vm) == 'thawed'


def test_freeze_mountpoints(guest):
    vm = guest
    result = run_module('qemu_guest_fsfreeze', {'qga': vm.qga_path, 'state': 'frozen', 'mountpoints': ['/data/']})
    assert result['changed'] and not result.failed, result['output']
    assert (result['mountpoints'], result['count'], result['status']) == (['/data'], 1, 'frozen')
    assert freeze_status(vm) == 'frozen'
    result = run_module('qemu_guest_fsfreeze', {'qga': vm.qga_path, 'state': 'thawed'})
    assert result['changed'] and result['count'] == 1, result['output']


def test_freeze_unknown_mountpoint_fails_untouched(guest):
    vm = guest
    result = run_module('qemu_guest_fsfreeze', {'qga': vm.qga_path, 'state': 'frozen', 'mountpoints': ['/nonexistent']})
    assert result.failed and not result['changed']
    assert 'mountpoints' in result['msg'] and '/nonexistent' in result['msg'] and '/data' in result['msg']
    assert freeze_status(vm) == 'thawed'
    result = run_module('qemu_guest_fsfreeze', {'qga': vm.qga_path, 'state': 'frozen', 'mountpoints': ['data']})
    assert result.failed and 'mountpoints' in result['msg'] and 'absolute' in result['msg']
    assert freeze_status(vm) == 'thawed'


def test_thaw_recovers_a_guest_frozen_by_someone_else(guest):
    vm = guest
    assert vm.qga('guest-fsfreeze-freeze') == 1
    result = run_module('qemu_guest_fsfreeze', {'qga': vm.qga_path, 'state': 'thawed'})
    assert result['changed'] and not result.failed, result['output']
    assert (result['status_before'], result['status'], result['count']) == ('frozen', 'thawed', 1)
    assert freeze_status(vm) == 'thawed'
    assert vm.guest_exec(['cat', '/data/hello.txt'])[0] == 0


def test_frozen_guest_errors_say_how_to_thaw(guest):
    vm = guest
    assert vm.qga('guest-fsfreeze-freeze') == 1
    result = run_module('qemu_guest_power', {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'state': 'poweroff'})
    assert result.failed and not result['changed']
    assert result['error_type'] == 'GuestFrozenError'
    assert 'guest-shutdown refused: the guest filesystems are frozen' in result['msg']
    assert 'qemu.vm.qemu_guest_fsfreeze state=thawed' in result['msg']
    assert vm.status() == 'running' and freeze_status(vm) == 'frozen'


def test_freeze_is_refused_when_blocked_in_the_agent(vm_factory):
    vm = vm_factory(ga_block=['guest-fsfreeze-freeze'])
    result = run_module('qemu_guest_fsfreeze', {'qga': vm.qga_path, 'state': 'frozen'})
    assert result.failed and result['error_type'] == 'CommandDisabledError', result['output']
    assert 'guest-fsfreeze-freeze is disabled' in result['msg']
    assert vm.qga('guest-fsfreeze-status') == 'thawed'


def test_no_agent_is_a_classified_error(vm_noagent):
    for state in ('frozen', 'thawed'):
        result = run_module('qemu_guest_fsfreeze', {'qga': vm_noagent.qga_path, 'state': state, 'timeout': 3})
        assert result.failed and result['error_type'] == 'AgentNotRespondingError', result['output']
        assert 'did not answer guest-sync-delimited within 3 s' in result['msg']
