# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu.vm.molecule_create / molecule_destroy driven by real molecule, on real VMs (the tiny test guest).

Each test copies the example role (tests/molecule/example) into its own directory and writes the
scenario's molecule.yml with the guest cache's absolute paths; molecule's ephemeral directory is
a short directory of the test's own (QEMU's socket paths must fit in 107 bytes). Whatever a test
did, every QEMU whose pid file lies in that directory is killed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from harness.ansible import BIN, REPO, ansible_env
from harness.guest import qga_command

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'molecule', 'example')
APPEND = 'console=ttyS0 panic=-1 qemu_vm.acpid=1'


def qemu_pids(under):
    """Pids of live QEMU processes whose -pidfile lies under the directory `under`."""
    found = []
    prefix = os.fsencode(os.path.join(under, ''))
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/cmdline', 'rb') as handle:
                argv = handle.read().split(b'\0')
        except OSError:
            continue
        if any(argv[i] == b'-pidfile' and argv[i + 1].startswith(prefix) for i in range(len(argv) - 1)):
            found.append(int(entry))
    return found


def wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'{what}: not within {seconds} s')
        time.sleep(0.1)


class Scenario:
    """A copy of the example role with a molecule.yml of the test's own, and molecule's ephemeral directory."""

    def __init__(self, home, guest_images):
        self.home = home
        self.images = guest_images
        self.role = os.path.join(home, 'roles', 'example')
        self.ephemeral = os.path.join(home, 'e')
        shutil.copytree(EXAMPLE, self.role)
        os.makedirs(self.ephemeral)
        # the scenario's paths are relative to the role in the repository: make them absolute
        path = os.path.join(self.role, 'molecule', 'default', 'molecule.yml')
        with open(path) as handle:
            config = handle.read()
        with open(path, 'w') as handle:
            handle.write(config.replace('${MOLECULE_PROJECT_DIRECTORY}/../../..', REPO))

    def platform(self, name, python=True, **overrides):
        platform = {
            'name': name, 'image': self.images.data_disk, 'kernel': self.images.kernel, 'initrd': self.images.initrd,
            'append': APPEND + (' qemu_vm.python=1' if python else ''), 'memory': 256, 'machine': 'pc', 'accel': 'tcg',
            'agent_timeout': 120,
        }
        if python:
            platform['disks'] = [{'path': os.path.join(self.images.cache_dir, 'python.qcow2'), 'readonly': True}]
        platform.update(overrides)
        return {key: value for key, value in platform.items() if value is not None}

    def configure(self, *platforms):
        path = os.path.join(self.role, 'molecule', 'default', 'molecule.yml')
        with open(path) as handle:
            config = handle.read()
        # keep everything but the platforms (JSON is YAML)
        head, _platforms, tail = re.split(r'^(platforms:\n(?:  .*\n)+)', config, flags=re.M)
        with open(path, 'w') as handle:
            handle.write(head + 'platforms: ' + json.dumps(list(platforms)) + '\n' + tail)

    def env(self):
        # ansible_env: the collection from build/collections only (ANSIBLE_COLLECTIONS_PATH), nothing installed
        return ansible_env({'MOLECULE_EPHEMERAL_DIRECTORY': self.ephemeral, 'NO_COLOR': '1', 'TERM': 'dumb'})

    def command(self, *args):
        return [os.path.join(BIN, 'molecule'), *args]

    def run(self, *args, timeout=600):
        proc = subprocess.run(self.command(*args), cwd=self.role, env=self.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        assert 'Traceback' not in proc.stdout, proc.stdout
        return proc

    def playbook(self, name):
        """Run one of the scenario's playbooks as molecule does (its inventory and environment), without molecule."""
        env = dict(self.env(), MOLECULE_FILE=os.path.join(self.ephemeral, 'molecule.yml'),
                   MOLECULE_INSTANCE_CONFIG=os.path.join(self.ephemeral, 'instance_config.yml'))
        cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(self.ephemeral, 'inventory'),
               os.path.join(self.role, 'molecule', 'default', name)]
        return subprocess.run(cmd, cwd=self.role, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=600, check=False)

    def instances(self):
        """Molecule's instance config, written by the create: {instance: its agent socket}."""
        with open(os.path.join(self.ephemeral, 'instance_config.yml')) as handle:
            return {entry['instance']: entry['qga'] for entry in yaml.safe_load(handle)}

    def leftovers(self):
        """What a destroy must not leave: QEMU processes, and the VM directory (sockets, overlays, run directories)."""
        return qemu_pids(self.ephemeral), os.path.exists(os.path.join(self.ephemeral, 'qemu-vm'))


@pytest.fixture
def scenario(guest_images, tmp_path_factory):
    made = Scenario(str(tmp_path_factory.mktemp('m')), guest_images)
    yield made
    for pid in qemu_pids(made.ephemeral):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def image_state(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def test_molecule_test_passes(scenario, guest_images):
    base = image_state(guest_images.data_disk)
    proc = scenario.run('test')
    assert proc.returncode == 0, proc.stdout
    for step in ('create', 'converge', 'idempotence', 'verify', 'destroy'):
        assert re.search(rf'{step}: Executed: Successful', proc.stdout), (step, proc.stdout)
    assert scenario.leftovers() == ([], False)
    assert image_state(guest_images.data_disk) == base  # the base image is never written


def test_second_converge_is_idempotent(scenario, guest_images):
    base = image_state(guest_images.data_disk)
    try:
        created = scenario.run('create')
        assert created.returncode == 0, created.stdout
        overlay = os.path.join(scenario.ephemeral, 'qemu-vm', 'example-guest.qcow2')
        assert os.path.isfile(overlay) and oct(os.stat(overlay).st_mode & 0o777) == '0o600'
        instances = scenario.instances()
        # the create is idempotent: run again, it changes nothing (molecule itself skips a second create)
        again = scenario.playbook('create.yml')
        assert again.returncode == 0, again.stdout
        assert re.search(r'localhost\s*: ok=\d+\s+changed=0\s', again.stdout), again.stdout
        assert scenario.instances() == instances and len(qemu_pids(scenario.ephemeral)) == 1
        first = scenario.run('converge')
        assert first.returncode == 0, first.stdout
        assert re.search(r'example-guest\s*: ok=\d+\s+changed=[1-9]', first.stdout), first.stdout
        second = scenario.run('converge')
        assert second.returncode == 0, second.stdout
        assert re.search(r'example-guest\s*: ok=\d+\s+changed=0\s', second.stdout), second.stdout
        # the role's file is in the guest, read independently of the collection
        (qga,) = scenario.instances().values()
        assert qga_command(qga, 'guest-get-host-name')['host-name'] == 'qemuvm-guest'
    finally:
        destroyed = scenario.run('destroy')
    assert destroyed.returncode == 0, destroyed.stdout
    assert scenario.leftovers() == ([], False)
    assert image_state(guest_images.data_disk) == base


def test_two_platforms_come_up_together(scenario):
    scenario.configure(scenario.platform('guest-a'), scenario.platform('guest-b'))
    try:
        created = scenario.run('create')
        assert created.returncode == 0, created.stdout
        # both QEMUs were started before the create waited for any agent
        started = created.stdout.index('Start every VM')
        waiting = created.stdout.index('Wait for each guest agent')
        assert re.findall(r'changed: \[localhost\] => \(item=(guest-\w)\)', created.stdout[started:waiting]) == ['guest-a', 'guest-b']
        assert len(qemu_pids(scenario.ephemeral)) == 2
        instances = scenario.instances()
        assert sorted(instances) == ['guest-a', 'guest-b'] and len(set(instances.values())) == 2
        for qga in instances.values():
            assert qga_command(qga, 'guest-ping') == {}
        converged = scenario.run('converge')
        assert converged.returncode == 0, converged.stdout
        for name in ('guest-a', 'guest-b'):
            assert re.search(rf'{name}\s*: ok=\d+\s+changed=[1-9]\d*\s+unreachable=0\s+failed=0', converged.stdout), converged.stdout
    finally:
        destroyed = scenario.run('destroy')
    assert destroyed.returncode == 0, destroyed.stdout
    assert scenario.leftovers() == ([], False)


def test_destroy_after_a_killed_create(scenario):
    proc = subprocess.Popen(scenario.command('create'), cwd=scenario.role, env=scenario.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # mid-create: QEMU runs, the guest boots, the create waits for its agent
        wait_for(lambda: qemu_pids(scenario.ephemeral), 300, 'the create starting QEMU')
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # molecule and its ansible-playbook, as a killed CI job
        proc.wait(30)
    assert qemu_pids(scenario.ephemeral), 'QEMU (daemonized) survives the killed create'
    destroyed = scenario.run('destroy')
    assert destroyed.returncode == 0, destroyed.stdout
    assert scenario.leftovers() == ([], False)
    # nothing else of the ephemeral directory was the VMs': no socket or image is left anywhere in it
    for root, _dirs, files in os.walk(scenario.ephemeral):
        for name in files:
            assert not name.endswith(('.sock', '.qcow2', '.pid')), os.path.join(root, name)


@pytest.mark.parametrize('case', ['no-image', 'missing-image', 'silent-agent', 'no-python'])
def test_bad_input_is_named_and_nothing_is_left(scenario, case):
    if case == 'no-image':
        platform, expected = scenario.platform('bad', image=None), 'platform bad: image is required'
    elif case == 'missing-image':
        platform, expected = scenario.platform('bad', image='/nonexistent/base.qcow2'), \
            'platform bad: image /nonexistent/base.qcow2 does not exist or is not a file'
    elif case == 'silent-agent':
        # the guest boots (its init says so on the serial console) but runs no agent
        platform, expected = scenario.platform('bad', append=APPEND + ' qemu_vm.noagent=1', agent_timeout=20), \
            'platform bad: '
    else:
        platform, expected = scenario.platform('bad', python=False), \
            'platform bad: the guest has no working Python at /usr/bin/python3 (python_interpreter)'
    scenario.configure(platform)
    created = scenario.run('create')
    assert created.returncode != 0, created.stdout
    assert expected in created.stdout, created.stdout
    if case == 'silent-agent':
        assert 'guest agent' in created.stdout and 'The last lines of its serial console' in created.stdout, created.stdout
        assert 'init: guest agent disabled' in created.stdout, created.stdout
    assert scenario.leftovers() == ([], False)
