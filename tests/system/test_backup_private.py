# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups are whole guest disks: another local user must not read them, whatever the umask the
module runs with. The attacker is a real other uid (`nobody`, through setpriv) reading real files
that qemu_backup, QEMU and qemu-img wrote, in a dest that is itself open to others."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from harness.ansible import run_module

# Run as `nobody`: try to read each path (a directory is listed); print {path: "ok" | errno name}.
ATTACKER = '''
import errno, json, os, sys
seen = {}
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as handle:
                handle.read(1)
        seen[path] = "ok"
    except OSError as exc:
        seen[path] = errno.errorcode.get(exc.errno, str(exc.errno))
print(json.dumps(seen))
'''


def read_as_nobody(paths):
    """What another uid gets when it reads each path."""
    # The system's Python: the test's own venv may sit where `nobody` cannot go.
    argv = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '/usr/bin/python3', '-c', ATTACKER]
    proc = subprocess.run(argv + [str(p) for p in paths], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(proc.stdout)


@contextlib.contextmanager
def umask(value):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def open_dir():
    """A directory every user can enter (not under pytest's private tmp root), removed afterwards."""
    path = tempfile.mkdtemp(prefix='qemu-vm-private-', dir='/tmp')
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def everything_under(top):
    found = []
    for root, dirs, files in os.walk(top):
        found += [os.path.join(root, name) for name in dirs + files]
    return found


def test_another_uid_cannot_read_a_backup_or_a_restore_even_under_umask_000(vm_factory, open_dir):
    vm = vm_factory(disks=[{'format': 'qcow2', 'size': '16M'}])
    dest = os.path.join(open_dir, 'dest')
    os.mkdir(dest)
    os.chmod(dest, 0o755)  # open, as a careless admin left it: the task must say so
    assert read_as_nobody([dest]) == {dest: 'ok'}  # the attacker can reach dest: only the backup's own modes protect it
    args = {'qmp': vm.qmp_path, 'qga': vm.qga_path, 'dest': dest}

    with umask(0):
        full = run_module('qemu_backup', args)
    assert not full.failed and full['mode'] == 'full', full['output']
    assert f'dest {dest} is open to group or others (mode 0755)' in full['output']
    chain_dir = os.path.join(dest, full['chain'])
    paths = everything_under(chain_dir)
    assert sorted(os.path.basename(p) for p in paths) == sorted(
        [os.path.basename(f['path']) for f in full['files']] + ['manifest.json'])
    assert mode(chain_dir) == 0o700
    assert dict((p, mode(p)) for p in paths) == dict((p, 0o600) for p in paths)
    assert set(read_as_nobody([chain_dir] + paths).values()) == {'EACCES'}

    # Even with the chain directory opened (by hand, or by an older tool), the files stay unreadable ...
    os.chmod(chain_dir, 0o755)
    seen = read_as_nobody([chain_dir] + paths)
    assert seen.pop(chain_dir) == 'ok' and set(seen.values()) == {'EACCES'}, seen
    # ... and the next point closes the directory again, saying so.
    with umask(0):
        incremental = run_module('qemu_backup', args)
    assert not incremental.failed and incremental['mode'] == 'incremental', incremental['output']
    assert f'chain {full["chain"]} was open to other users: made it 0700' in incremental['output']
    paths = everything_under(chain_dir)
    assert len(paths) == 5 and mode(chain_dir) == 0o700
    assert dict((p, mode(p)) for p in paths) == dict((p, 0o600) for p in paths)
    assert set(read_as_nobody([chain_dir] + paths).values()) == {'EACCES'}

    # A restored disk is as private as the backup it comes from.
    target = os.path.join(open_dir, 'restored.qcow2')
    with umask(0):
        restored = run_module('qemu_backup_restore', {'dest': dest, 'device': 'vdb', 'target': target})
    assert not restored.failed and restored.changed, restored['output']
    assert mode(target) == 0o600
    assert read_as_nobody([target]) == {target: 'EACCES'}
    assert sorted(os.listdir(open_dir)) == ['dest', 'restored.qcow2']  # no temporary file left beside it
