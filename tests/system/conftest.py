"""Fixtures that boot the tiny test guest (tests/guest/build-guest.sh) under QEMU.

  guest_images  session  GuestImages(kernel, initrd, data_disk, cache_dir)
  vm            function a started VM with the guest agent answering
  vm_noagent    function a started VM whose guest runs no agent
  vm_factory    function vm_factory(**VM kwargs) -> started VM; all stopped at teardown
  managed_vm    module   a VM started by the collection's qemu.vm.qemu_vm (harness/managed.py), removed at the end

The session fails if a QEMU started by the harness is still alive at the end. Under pytest-xdist
(`make system` runs the files on several workers) each worker checks its own QEMUs and the
controller reports them.
"""

import os
import sys

import pytest

_TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from harness.guest import VM, QMPCommandError, ensure_guest, kill_leftover_qemu, running_qemu_pids  # noqa: E402
from harness.managed import ManagedVM  # noqa: E402


@pytest.fixture(scope='session')
def guest_images():
    return ensure_guest()


@pytest.fixture
def vm_factory(guest_images, tmp_path):
    vms = []

    def make(**kwargs):
        kwargs.setdefault('images', guest_images)
        wait_agent = kwargs.pop('wait_agent', None)
        timeout = kwargs.pop('timeout', 60)
        # Disks and logs live under tmp_path. Unix socket paths are limited to 107 bytes:
        # when tmp_path is too long, VM puts its sockets in a short mkdtemp('qvm') dir under
        # /tmp (removed by VM.stop()).
        machine = VM(tmp_path / f'vm{len(vms)}', **kwargs)
        vms.append(machine)
        machine.start(wait_agent=wait_agent, timeout=timeout)
        return machine

    yield make
    for machine in reversed(vms):
        machine.stop()


@pytest.fixture(scope='module')
def managed_vm(guest_images, tmp_path_factory):
    machine = ManagedVM(guest_images, tmp_path_factory.mktemp('mvm'))
    try:
        yield machine.start()
    finally:
        machine.remove()


@pytest.fixture
def managed_guest(managed_vm):
    """The module's shared qemu_vm VM, thawed again whatever the test did."""
    yield managed_vm
    try:
        managed_vm.qga('guest-fsfreeze-thaw', timeout=30)
    except (OSError, QMPCommandError):
        pass


@pytest.fixture
def vm(vm_factory):
    return vm_factory()


@pytest.fixture
def vm_noagent(vm_factory):
    return vm_factory(agent=False)


@pytest.fixture
def guest(vm):
    """The VM, thawed again whatever the test did (a frozen guest would block teardown)."""
    yield vm
    if vm.is_running():
        try:
            vm.qga('guest-fsfreeze-thaw', timeout=30)
        except (OSError, QMPCommandError):
            pass


# xdist controller: '<worker>:<pid>' of the QEMUs the workers found still running at their end.
_WORKER_LEFTOVERS = pytest.StashKey()


def pytest_sessionfinish(session, exitstatus):
    """Kill and report QEMUs this process started that are still alive (each xdist worker has its own)."""
    leftovers = sorted(running_qemu_pids())
    if leftovers:
        kill_leftover_qemu()
    workeroutput = getattr(session.config, 'workeroutput', None)
    if workeroutput is not None:  # an xdist worker: its exit status is not the run's, the controller reports
        workeroutput['qemu_leftovers'] = leftovers
        return
    leftovers += session.config.stash.get(_WORKER_LEFTOVERS, [])
    if not leftovers:
        return
    message = f'QEMU processes started by the test harness were still running: {leftovers}'
    reporter = session.config.pluginmanager.get_plugin('terminalreporter')
    if reporter is not None:
        reporter.write_line(message, red=True, bold=True)
    else:
        sys.stderr.write(message + '\n')
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist controller: collect what each worker's pytest_sessionfinish found (a crashed worker reports nothing)."""
    found = getattr(node, 'workeroutput', {}).get('qemu_leftovers') or []
    if found:
        node.config.stash.setdefault(_WORKER_LEFTOVERS, []).extend(f'{node.gateway.id}:{pid}' for pid in found)
