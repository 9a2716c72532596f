# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lock and freeze-marker files as another local user would attack them, against the real guest.

The VM is a "per-user VM": the directory holding its sockets belongs to another uid (nobody, whose
actions run through setpriv). She plants symbolic links where the lock and marker files used to be
(beside the socket) and tries the private runtime directory where they are now. Root's quiesced
snapshot then proceeds safely: it never looks beside the socket, the link targets stay byte for
byte and inode for inode as they were, and the guest is thawed. Anything unexpected in the private
directory itself (only root could put it there) fails the task with a clear error naming the path,
in bounded time, taking nothing and leaving nothing frozen. The marker-driven thaw still runs for
every opener of an agent session: modules (test_quiesce_paused.py), the qga connection, the inventory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._guest.session import freeze_marker_path, freeze_remembered, remember_freeze
from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import lock_path_for, open_runtime_dir

from harness.ansible import BIN, ansible_env, run_module
from harness.guest import VM

ATTACKER = 65534  # nobody / nogroup
#: The module's own bound; run_module's subprocess timeout turns a hang into a failure.
TIMEOUT = 10


def as_attacker(*argv):
    return subprocess.run(['setpriv', f'--reuid={ATTACKER}', f'--regid={ATTACKER}', '--clear-groups', '--'] + list(argv),
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture(scope='module')
def user_vm(guest_images):
    """A running guest whose socket directory belongs to the other user."""
    home = tempfile.mkdtemp(prefix='qvm-user-')  # under /tmp, so the other user can reach it
    os.chown(home, ATTACKER, ATTACKER)
    machine = VM(os.path.join(home, 'vm'), images=guest_images)
    os.chown(machine.socket_dir, ATTACKER, ATTACKER)
    try:
        machine.start()
        yield machine
    finally:
        machine.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def thawed_after(user_vm):
    yield user_vm
    user_vm.qga('guest-fsfreeze-thaw', timeout=30)


def old_paths(sock):
    """Where releases before 0.2.0 put the lock and the marker: beside the socket."""
    stem = os.path.join(os.path.dirname(sock), '.qemu.vm-' + hashlib.sha256(os.path.realpath(sock).encode()).hexdigest()[:16])
    return stem + '.lock', stem + '.frozen'


def fingerprint(path):
    info = os.lstat(path)
    with open(path, 'rb') as handle:
        return handle.read(), info.st_ino, info.st_mode, info.st_uid, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def snapshot_tags(vm):
    return [s['name'] for n in vm.qmp('query-named-block-nodes', flat=True) if n['node-name'] == 'disk0'
            for s in n.get('image', {}).get('snapshots', [])]


def quiesced_snapshot(vm, name):
    return run_module('qemu_snapshot', {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'name': name, 'ram': False,
                                        'quiesce': 'required', 'timeout': TIMEOUT}, timeout=180)


@pytest.mark.parametrize('targets_exist', [True, False], ids=['existing-targets', 'dangling-links'])
def test_links_planted_by_another_user_are_not_followed(user_vm, tmp_path, targets_exist):
    """Proceeds safely: the snapshot is taken quiesced; what the links point at is neither changed nor created."""
    etc = tmp_path / 'etc'
    etc.mkdir(mode=0o700)
    targets = []
    for number, sock in enumerate((user_vm.qmp_path, user_vm.qga_path)):
        for kind, old in zip(('lock', 'marker'), old_paths(sock)):
            target = etc / f'{kind}-{number}'
            if targets_exist:
                target.write_bytes(b'root:x:0:0:root:/root:/bin/bash\n')
            done = as_attacker('ln', '-sfn', str(target), old)
            assert done.returncode == 0, done.stderr  # she really can plant them there
            targets.append((old, target, fingerprint(target) if targets_exist else None))
    # The private directory: she can neither plant links in it nor make it before root does.
    fd, rundir = open_runtime_dir()
    os.close(fd)
    for sock in (user_vm.qmp_path, user_vm.qga_path):
        for path in (lock_path_for(sock), freeze_marker_path(sock)):
            tried = as_attacker('ln', '-s', str(etc / 'lock-0'), path)
            assert tried.returncode != 0 and 'Permission denied' in tried.stderr, (path, tried.stderr)
    tried = as_attacker('mkdir', '-p', os.path.join(rundir, 'mine'))
    assert tried.returncode != 0

    name = 'attacked-' + ('existing' if targets_exist else 'dangling')
    taken = quiesced_snapshot(user_vm, name)
    assert taken.changed and not taken.failed, taken['output']
    assert taken['quiesced'] is True and taken['frozen_filesystems'] >= 1
    assert name in snapshot_tags(user_vm)
    assert user_vm.qga('guest-fsfreeze-status') == 'thawed'
    for link, target, before in targets:
        if before is None:
            assert not os.path.lexists(target), f'{target} was created through {link}'
        else:
            assert fingerprint(target) == before, f'{target} changed through {link}'
        assert os.readlink(link) == str(target)  # not even the link was touched
    assert not freeze_remembered(user_vm.qga_path)
    assert not os.path.lexists(lock_path_for(user_vm.qga_path))  # let go and removed


def plant(path, what, victim=None):
    """Something no task of ours makes, where a lock or marker file goes (only root can write there);
    a symlink points at `victim` (a file standing for /etc/passwd: the real one changes whenever another
    test adds a user, which would make a check on it depend on what runs beside this test)."""
    if what == 'fifo':
        os.mkfifo(path, 0o600)
    elif what == 'foreign':
        with open(path, 'wb'):
            pass
        os.chown(path, ATTACKER, ATTACKER)
    else:
        os.symlink(str(victim), path)


@pytest.mark.parametrize('where, what', [('lock', 'fifo'), ('lock', 'foreign'), ('marker', 'fifo'),
                                         ('marker', 'foreign'), ('marker', 'symlink')])
def test_surprise_in_the_private_directory_fails_clearly_and_takes_nothing(thawed_after, tmp_path, where, what):
    """Fails: quiesce=required cannot be met, the error names the path; no snapshot, nothing frozen."""
    vm = thawed_after
    path = lock_path_for(vm.qga_path) if where == 'lock' else freeze_marker_path(vm.qga_path)
    open_runtime_dir()
    victim = tmp_path / 'passwd'
    victim.write_bytes(b'root:x:0:0:root:/root:/bin/bash\n')
    plant(path, what, victim)
    passwd = fingerprint(victim)
    try:
        name = f'surprise-{where}-{what}'
        refused = quiesced_snapshot(vm, name)
    finally:
        os.unlink(path)
    assert refused.failed and refused['error_type'] == 'QuiesceError', refused['output']
    assert path in refused['msg'] and 'quiesce=required' in refused['msg']
    expected = {'fifo': 'is a FIFO', 'foreign': f'belongs to uid {ATTACKER}', 'symlink': 'is a symbolic link'}[what]
    assert expected in refused['msg'], refused['msg']
    assert name not in snapshot_tags(vm)
    assert vm.qga('guest-fsfreeze-status') == 'thawed'
    assert fingerprint(victim) == passwd


def test_foreign_marker_fails_an_agent_task_naming_it(thawed_after):
    vm = thawed_after
    open_runtime_dir()
    path = freeze_marker_path(vm.qga_path)
    plant(path, 'foreign')
    try:
        result = run_module('qemu_guest_facts', {'qga': vm.qga_path, 'timeout': TIMEOUT}, timeout=180)
    finally:
        os.unlink(path)
    assert result.failed and result['error_type'] == 'RuntimeFileError', result['output']
    assert result['runtime_path'] == path and 'remove it' in result['msg']


def left_frozen_by_us(vm):
    """The guest frozen, and the marker a quiesced run leaves when nobody could thaw."""
    assert vm.qga('guest-fsfreeze-freeze') >= 1
    remember_freeze(vm.qga_path)


def test_qga_connection_thaws_a_freeze_of_ours_first(thawed_after):
    vm = thawed_after
    left_frozen_by_us(vm)
    proc = subprocess.run([os.path.join(BIN, 'ansible'), 'guest', '-i', 'guest,', '-c', 'qemu.vm.qga',
                           '-e', f'ansible_qemu_qga={vm.qga_path}', '-m', 'ansible.builtin.raw', '-a', 'echo ran-after-thaw'],
                          env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180, check=False)
    assert proc.returncode == 0 and 'ran-after-thaw' in proc.stdout, proc.stdout  # guest-exec is refused while frozen
    assert vm.qga('guest-fsfreeze-status') == 'thawed'
    assert not freeze_remembered(vm.qga_path)


def test_inventory_thaws_a_freeze_of_ours_first(thawed_after, tmp_path):
    vm = thawed_after
    left_frozen_by_us(vm)
    config = tmp_path / 'vms.qemu.yml'
    config.write_text(json.dumps({'plugin': 'qemu.vm.qemu', 'timeout': TIMEOUT,
                                  'sockets': [{'qmp': vm.qmp_path, 'qga': '{dir}/qga.sock'}]}))
    proc = subprocess.run([os.path.join(BIN, 'ansible-inventory'), '-i', str(config), '--list'],
                          env=ansible_env(), capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert vm.qga('guest-fsfreeze-status') == 'thawed'
    assert not freeze_remembered(vm.qga_path)
