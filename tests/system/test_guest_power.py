# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_guest_power and qemu_guest_agent_wait against the real guest under QEMU."""

from __future__ import annotations

import pytest

from harness.ansible import run_module
from harness.guest import QMPCommandError

MARKER = '/tmp/qemu-vm-boot-marker'  # on the guest's RAM root filesystem: a reboot loses it


def power(vm, state, check=False, **extra):
    args = {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'state': state, 'timeout': 60}
    args.update(extra)
    return run_module('qemu_guest_power', args, check=check)


def agent_wait(vm, timeout=60):
    result = run_module('qemu_guest_agent_wait', {'qga': vm.qga_path, 'timeout': timeout})
    assert not result.failed and not result['changed'], result['output']
    assert result['version'].startswith('7.')
    return result


def agent_silent(vm, seconds=3):
    try:
        vm.qga('guest-ping', timeout=seconds)
    except (OSError, ValueError, QMPCommandError):
        return True
    return False


def boot_id(vm):
    code, out, _err = vm.guest_exec(['cat', '/proc/sys/kernel/random/boot_id'])
    assert code == 0
    return out.decode().strip()


def set_marker(vm):
    assert vm.guest_exec(['touch', MARKER])[0] == 0


def marker_present(vm):
    return vm.guest_exec(['test', '-e', MARKER])[0] == 0


def four_steps(vm, state, expect_after, **extra):
    """check → changed (and nothing happened); real → changed; check, real → unchanged."""
    before = vm.status()
    check = power(vm, state, check=True, **extra)
    assert check['changed'] and not check.failed, check['output']
    assert check['state_after'] == expect_after
    assert vm.status() == before
    real = power(vm, state, **extra)
    assert real['changed'] and not real.failed, real['output']
    assert (real['state_before'], real['state_after']) == (before, expect_after)
    for check_mode in (True, False):
        again = power(vm, state, check=check_mode, **extra)
        assert not again['changed'] and not again.failed, again['output']
        assert again['state_before'] == again['state_after'] == expect_after
        assert (again['method'], again['duration_ms']) == ('none', 0)
    return real


def test_suspend_ram_then_wake(vm):
    set_marker(vm)
    suspended = four_steps(vm, 'suspended_ram', 'suspended')
    assert suspended['method'] == 'agent'
    assert 'SUSPEND' in suspended['events']
    assert vm.status() == 'suspended'
    assert agent_silent(vm)

    woken = four_steps(vm, 'running', 'running')
    assert woken['method'] == 'system_wakeup'
    assert 'WAKEUP' in woken['events'] and 'agent answers' in woken['confirmed_by']
    assert vm.status() == 'running'
    agent_wait(vm)
    assert marker_present(vm), 'the guest lost its RAM: it rebooted instead of resuming'


def test_suspend_refused_when_qemu_cannot_wake(vm_factory):
    vm = vm_factory(extra_args=['-machine', 'acpi=off'])
    assert vm.qmp('query-current-machine')['wakeup-suspend-support'] is False
    for check in (True, False):
        result = power(vm, 'suspended_ram', check=check)
        assert result.failed and result['error_type'] == 'VMStateError', result['output']
        assert 'wakeup-suspend-support' in result['msg']
    assert vm.status() == 'running'
    result = power(vm, 'suspended_ram', qmp=None)
    assert result.failed and 'qmp is required' in result['msg']


def test_guest_refusals_are_the_agents_errors(vm):
    hybrid = power(vm, 'suspended_hybrid')
    assert hybrid.failed and hybrid['error_type'] == 'CommandError', hybrid['output']
    assert 'guest-suspend-hybrid' in hybrid['msg'] and 'not supported by the guest' in hybrid['msg']
    disk = power(vm, 'suspended_disk')  # no swap in the tiny guest
    assert disk.failed and disk['error_type'] == 'CommandError', disk['output']
    assert 'guest-suspend-disk' in disk['msg'] and 'failed to suspend' in disk['msg']
    assert vm.status() == 'running'
    assert not agent_silent(vm)


def test_reboot_waits_for_the_agent(vm):
    set_marker(vm)
    check = power(vm, 'reboot', check=True)
    assert check['changed'] and not check.failed, check['output']
    assert marker_present(vm)
    result = power(vm, 'reboot')
    assert result['changed'] and not result.failed, result['output']
    assert (result['state_before'], result['state_after'], result['method']) == ('running', 'running', 'agent')
    assert 'RESET' in result['events'] and result['confirmed_by'] == 'RESET event, new boot id'
    # The module returned once the agent answered: no extra wait needed.
    assert not agent_silent(vm)
    assert not marker_present(vm), 'the RAM root filesystem survived: no reboot happened'


def test_reboot_without_qmp(vm):
    # The virtio-serial channel hands what we send during the reboot to the next agent, which
    # answers: silence is never seen. The boot id is what changes.
    before = boot_id(vm)
    set_marker(vm)
    result = power(vm, 'reboot', qmp=None)
    assert result['changed'] and not result.failed, result['output']
    assert result['confirmed_by'] in ('new boot id', 'boot id changed'), result['output']
    assert result['events'] == []
    assert not marker_present(vm)
    assert boot_id(vm) != before


def test_reboot_without_qmp_needs_the_boot_id(vm_factory):
    vm = vm_factory(ga_block=['guest-file-open'])
    before = boot_id(vm)
    result = power(vm, 'reboot', qmp=None)
    assert result.failed and result['error_type'] == 'VMStateError', result['output']
    assert 'boot id' in result['msg'] and 'give qmp' in result['msg']
    assert boot_id(vm) == before, 'the guest rebooted although the task failed'
    # With QMP the RESET event confirms it, and any agent answering after it is the new one.
    result = power(vm, 'reboot')
    assert result['changed'] and not result.failed, result['output']
    assert result['confirmed_by'] == 'RESET event, agent answers again'
    assert boot_id(vm) != before


def test_poweroff(vm):
    result = four_steps(vm, 'poweroff', 'shutdown')
    assert result['method'] == 'agent'
    assert result['events'][0] == 'SHUTDOWN' and result['confirmed_by'] == 'SHUTDOWN event'
    assert vm.status() == 'shutdown'
    assert 'shutdown shim: poweroff' in vm.console_text()
    # shut down is also "already halted" and "already hibernated"
    for state in ('halt', 'suspended_disk'):
        again = power(vm, state)
        assert not again['changed'] and not again.failed, again['output']
    refused = power(vm, 'running')
    assert refused.failed and refused['error_type'] == 'VMStateError' and 'shut down' in refused['msg']


def test_poweroff_without_qmp(vm):
    result = power(vm, 'poweroff', qmp=None)
    assert result['changed'] and not result.failed, result['output']
    assert (result['state_before'], result['state_after']) == ('running', 'agent_gone')
    assert result['confirmed_by'] == 'agent went silent'
    vm.wait_status('shutdown', timeout=30)


def test_halt(vm):
    result = power(vm, 'halt')
    assert result['changed'] and not result.failed, result['output']
    assert (result['state_after'], result['confirmed_by']) == ('halted', 'agent went silent')
    assert 'shutdown shim: halt' in vm.console_text()
    assert vm.status() == 'running'  # QEMU cannot see a halted guest
    assert agent_silent(vm)


def test_wait_false_returns_without_confirmation(vm):
    result = power(vm, 'poweroff', wait=False)
    assert result['changed'] and not result.failed, result['output']
    assert result['confirmed_by'] is None
    vm.wait_status('shutdown', timeout=60)


def test_refusal_without_force_and_escalation_with_force(vm_factory):
    vm = vm_factory(ga_block=['guest-shutdown'])
    refused = power(vm, 'poweroff', timeout=5)
    assert refused.failed and refused['error_type'] == 'CommandDisabledError', refused['output']
    assert 'guest-shutdown is disabled' in refused['msg']
    assert vm.status() == 'running'

    check = power(vm, 'poweroff', check=True, force=True, timeout=5)
    assert check['changed'] and not check.failed and check['method'] == 'acpi', check['output']
    assert 'would press the ACPI power button' in check['output']
    assert vm.status() == 'running'

    # The guest has no ACPI daemon: it ignores the power button, so force ends in quit.
    forced = power(vm, 'poweroff', force=True, timeout=5)
    assert forced['changed'] and not forced.failed, forced['output']
    assert (forced['method'], forced['state_after']) == ('quit', 'exited')
    assert 'POWERDOWN' in forced['events']
    assert 'system_powerdown' in forced['output'] and 'quitting QEMU' in forced['output']
    vm.proc.wait(30)
    assert not vm.is_running()


def test_force_needs_qmp_and_a_down_state(vm):
    result = power(vm, 'poweroff', force=True, qmp=None)
    assert result.failed and result['msg'].startswith('force: needs qmp')
    result = power(vm, 'reboot', force=True)
    assert result.failed and result['msg'].startswith('force: only applies')
    assert vm.status() == 'running' and not agent_silent(vm)


def test_agent_wait_and_power_without_agent(vm_noagent):
    vm = vm_noagent
    waited = run_module('qemu_guest_agent_wait', {'qga': vm.qga_path, 'timeout': 4})
    assert waited.failed and waited['error_type'] == 'QemuTimeoutError', waited['output']
    assert 'waiting for the guest agent' in waited['msg'] and 'within 4 s' in waited['msg']
    for state in ('poweroff', 'reboot', 'suspended_ram'):
        result = power(vm, state, timeout=3)
        assert result.failed and result['error_type'] == 'AgentNotRespondingError', result['output']
        assert 'did not answer guest-sync-delimited within 3 s' in result['msg']
    # running is observable through QMP alone
    result = power(vm, 'running', timeout=3)
    assert not result.failed and not result['changed'], result['output']
    assert vm.status() == 'running'


def test_agent_wait_after_start(vm_factory):
    vm = vm_factory(wait_agent=False)
    result = agent_wait(vm, timeout=120)
    assert result['elapsed_ms'] >= 0
    assert vm.qga('guest-ping') == {}


@pytest.mark.parametrize('bad', [{'state': 'sleeping'}, {'state': 'poweroff', 'timeout': 0}])
def test_bad_input(vm, bad):
    args = {'qmp': vm.qmp_path, 'qga': vm.qga_path}
    args.update(bad)
    result = run_module('qemu_guest_power', args)
    assert result.failed
    assert ('state' in result['msg']) or ('timeout' in result['msg'])
    assert vm.status() == 'running'


# -- QEMU started without -no-shutdown (its default): it exits when the guest powers off --------


def test_poweroff_when_qemu_exits(vm_factory):
    vm = vm_factory(no_shutdown=False)
    check = power(vm, 'poweroff', check=True)
    assert check['changed'] and not check.failed and check['state_after'] == 'shutdown', check['output']
    assert vm.status() == 'running'
    result = power(vm, 'poweroff')
    assert result['changed'] and not result.failed, result['output']
    assert (result['state_before'], result['state_after'], result['method']) == ('running', 'exited', 'agent')
    assert result['confirmed_by'] in ('SHUTDOWN event, QEMU exited', 'QEMU exited'), result['output']
    assert vm.proc.wait(30) == 0
    assert 'shutdown shim: poweroff' in vm.console_text()


def test_poweroff_without_qmp_when_qemu_exits(vm_factory):
    vm = vm_factory(no_shutdown=False)
    result = power(vm, 'poweroff', qmp=None)
    assert result['changed'] and not result.failed, result['output']
    assert (result['state_before'], result['state_after']) == ('running', 'agent_gone')
    assert result['confirmed_by'] == 'agent went silent'
    assert vm.proc.wait(30) == 0


def test_halt_when_qemu_would_exit_on_poweroff(vm_factory):
    vm = vm_factory(no_shutdown=False)
    result = power(vm, 'halt')
    assert result['changed'] and not result.failed, result['output']
    assert (result['state_after'], result['confirmed_by']) == ('halted', 'agent went silent')
    assert vm.is_running() and vm.status() == 'running'  # a halted guest does not end QEMU


def test_reboot_when_qemu_would_exit_on_poweroff(vm_factory):
    vm = vm_factory(no_shutdown=False)
    before = boot_id(vm)
    result = power(vm, 'reboot')
    assert result['changed'] and not result.failed, result['output']
    assert result['confirmed_by'] == 'RESET event, new boot id'
    assert vm.is_running() and boot_id(vm) != before


def test_force_escalation_when_qemu_exits(vm_factory):
    vm = vm_factory(no_shutdown=False, ga_block=['guest-shutdown'])
    forced = power(vm, 'poweroff', force=True, timeout=5)
    assert forced['changed'] and not forced.failed, forced['output']
    assert (forced['method'], forced['state_after'], forced['confirmed_by']) == ('quit', 'exited', 'QEMU quit')
    vm.proc.wait(30)
    assert not vm.is_running()
