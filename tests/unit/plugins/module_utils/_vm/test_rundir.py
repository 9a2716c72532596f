# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run directory: what is planted at or in it is refused, never followed; the lock; vm.json."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, QemuTimeoutError
from ansible_collections.qemu.vm.plugins.module_utils._vm.errors import UntrustedPathError
from ansible_collections.qemu.vm.plugins.module_utils._vm.rundir import RunDir

NOBODY = 65534


@pytest.fixture
def run_dir(tmp_path):
    return RunDir(str(tmp_path / 'vm'))


def test_missing_then_created_private(run_dir):
    assert not run_dir.exists()
    assert run_dir.create() and not run_dir.create()
    assert run_dir.exists() and stat.S_IMODE(os.stat(run_dir.path).st_mode) == 0o700


def test_a_file_is_a_parameter_error(run_dir):
    open(run_dir.path, 'w', encoding='ascii').close()
    with pytest.raises(ParameterError) as info:
        run_dir.exists()
    assert info.value.parameter == 'run_dir' and 'not a directory' in str(info.value)


def test_a_symlink_is_refused_and_not_followed(run_dir, tmp_path):
    target = tmp_path / 'elsewhere'
    target.mkdir()
    os.symlink(target, run_dir.path)
    with pytest.raises(UntrustedPathError, match='symbolic link'):
        run_dir.exists()
    with pytest.raises(UntrustedPathError):
        run_dir.remove()
    assert target.is_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to give the directory to another user')
def test_another_users_directory_is_refused(run_dir):
    os.mkdir(run_dir.path, 0o700)
    os.chown(run_dir.path, NOBODY, NOBODY)
    with pytest.raises(UntrustedPathError, match=f'uid {NOBODY}'):
        run_dir.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to give a parent directory to another user')
def test_a_parent_of_another_user_is_refused(tmp_path):
    parent = tmp_path / 'alice'
    parent.mkdir()
    os.chown(parent, NOBODY, NOBODY)
    with pytest.raises(UntrustedPathError, match='could redirect'):
        RunDir(str(parent / 'vm')).exists()


def test_open_permissions(run_dir):
    os.mkdir(run_dir.path)
    os.chmod(run_dir.path, 0o777)
    with pytest.raises(UntrustedPathError, match='writable by other users'):
        run_dir.exists()
    os.chmod(run_dir.path, 0o755)
    assert run_dir.exists() and stat.S_IMODE(os.stat(run_dir.path).st_mode) == 0o700


def test_record_is_private_atomic_and_never_read_through_a_link(run_dir, tmp_path):
    run_dir.create()
    assert run_dir.read_record() is None
    run_dir.write_record({'state': 'running', 'definition': {'memory': 1}})
    assert run_dir.read_record()['definition'] == {'memory': 1}
    assert stat.S_IMODE(os.stat(run_dir.record).st_mode) == 0o600
    assert sorted(os.listdir(run_dir.path)) == ['vm.json']
    os.unlink(run_dir.record)
    secret = tmp_path / 'secret'
    secret.write_text('{"version": 1}')
    os.symlink(secret, run_dir.record)
    with pytest.raises(UntrustedPathError, match='symbolic link'):
        run_dir.read_record()
    run_dir.write_record({'state': 'stopped'})  # replaces the link, writes nothing through it
    assert secret.read_text() == '{"version": 1}' and not os.path.islink(run_dir.record)


def test_pid_file_planted_as_fifo_or_garbage(run_dir):
    run_dir.create()
    os.mkfifo(run_dir.pidfile)
    started = time.monotonic()
    with pytest.raises(UntrustedPathError, match='not a regular file'):
        run_dir.read_pid()  # O_NONBLOCK: no hang on a FIFO
    assert time.monotonic() - started < 5
    os.unlink(run_dir.pidfile)
    with open(run_dir.pidfile, 'w', encoding='ascii') as handle:
        handle.write('1\n')
    assert run_dir.read_pid() is None
    with open(run_dir.pidfile, 'w', encoding='ascii') as handle:
        handle.write('x' * 100)
    with pytest.raises(UntrustedPathError, match='larger than'):
        run_dir.read_pid()


def test_lock_file_link_is_refused(run_dir, tmp_path):
    run_dir.create()
    victim = tmp_path / 'victim'
    victim.write_text('keep')
    os.symlink(victim, run_dir.lockfile)
    with pytest.raises(UntrustedPathError, match='lock file is a symbolic link'):
        with run_dir.locked(True, 1, 'lock'):
            pass
    assert victim.read_text() == 'keep'


def test_lock_serialises_and_times_out(run_dir):
    with run_dir.locked(True, 5, 'lock') as fresh:
        assert fresh is True
        with pytest.raises(QemuTimeoutError, match='another task holds the lock'):
            with run_dir.locked(True, 0.3, 'lock'):
                pass
    with run_dir.locked(False, 1, 'lock') as fresh:
        assert fresh is False


def test_no_lock_and_nothing_created_for_a_missing_vm(run_dir):
    with run_dir.locked(False, 1, 'lock') as fresh:
        assert fresh is None
    assert not os.path.exists(run_dir.path)


def test_a_waiter_notices_the_directory_was_removed_and_starts_over(run_dir):
    seen = []
    holding = threading.Event()

    def remover():
        with run_dir.locked(True, 5, 'lock'):
            holding.set()
            time.sleep(0.3)
            run_dir.remove()

    thread = threading.Thread(target=remover)
    thread.start()
    holding.wait(5)
    with run_dir.locked(True, 5, 'lock') as fresh:
        seen.append(fresh)
        assert os.path.exists(run_dir.lockfile)
    thread.join()
    assert seen == [True]  # it made the directory again, and holds the lock of the new one


def test_clear_runtime_removes_leftovers_only(run_dir):
    run_dir.create()
    for path in (run_dir.qmp, run_dir.pidfile, run_dir.serial_log):
        open(path, 'w', encoding='ascii').close()
    os.symlink('/etc/passwd', run_dir.qga)
    run_dir.clear_runtime()
    assert sorted(os.listdir(run_dir.path)) == ['serial.log'] and os.path.exists('/etc/passwd')
