# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-socket lock and runtime files: where they live, and that nothing planted steers them.

Each test points the runtime directory at its own tmp_path (monkeypatched runtime_dir); the
choice of the real directory is tested on its own. Planting another user's files needs root
(chown); the tests run as root here, as the system tests do.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from ansible_collections.qemu.vm.plugins.module_utils import _errors as errors
from ansible_collections.qemu.vm.plugins.module_utils._transport import lock
from ansible_collections.qemu.vm.plugins.module_utils._transport.errors import RuntimeFileError

OTHER_UID = 65534  # nobody

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason='planting another uid\'s files needs root')


@pytest.fixture
def rundir(tmp_path, monkeypatch):
    path = tmp_path / 'run' / 'qemu-vm'
    (tmp_path / 'run').mkdir()
    monkeypatch.setattr(lock, 'runtime_dir', lambda: str(path))
    return path


@pytest.fixture
def target(tmp_path):
    """A file standing for /etc/passwd: what a planted link points at."""
    path = tmp_path / 'passwd'
    path.write_bytes(b'root:x:0:0:root:/root:/bin/bash\n')
    return path


def snapshot(path):
    info = os.stat(path)
    return path.read_bytes(), info.st_mode, info.st_uid, info.st_mtime_ns, info.st_ctime_ns


def in_bounded_time(func, seconds=5):
    """Run func in a thread; fail if it has not returned within `seconds` (no hang); return what it raised."""
    outcome = {}

    def run():
        try:
            outcome['value'] = func()
        except BaseException as exc:  # pylint: disable=broad-except
            outcome['error'] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f'still blocked after {seconds} s'
    return outcome.get('error')


# -- where ---------------------------------------------------------------------------

def test_root_uses_run_and_nobody_uses_a_shared_tmp_name():
    assert lock.runtime_dir(euid=0, environ={}) == '/run/qemu-vm'
    nobody = pwd.getpwuid(OTHER_UID)
    path = lock.runtime_dir(euid=OTHER_UID, environ={})
    assert path == os.path.join(nobody.pw_dir, '.cache', 'qemu-vm')  # no XDG_RUNTIME_DIR, no /run/user/65534
    assert not path.startswith(tempfile.gettempdir())


@needs_root
def test_non_root_takes_its_own_xdg_runtime_dir_only(tmp_path):
    xdg = tmp_path / 'xdg'
    xdg.mkdir(mode=0o700)
    os.chown(xdg, OTHER_UID, OTHER_UID)
    assert lock.runtime_dir(euid=OTHER_UID, environ={'XDG_RUNTIME_DIR': str(xdg)}) == str(xdg / 'qemu-vm')
    # Someone else's directory in XDG_RUNTIME_DIR is passed over, not used.
    os.chown(xdg, 0, 0)
    assert lock.runtime_dir(euid=OTHER_UID, environ={'XDG_RUNTIME_DIR': str(xdg)}) != str(xdg / 'qemu-vm')


def test_a_uid_without_home_or_runtime_dir_is_a_clear_error():
    with pytest.raises(RuntimeFileError) as caught:
        lock.runtime_dir(euid=4012345678, environ={})
    assert 'XDG_RUNTIME_DIR' in str(caught.value)


def test_key_is_the_resolved_socket_path_or_host_and_port(tmp_path, rundir):
    real = tmp_path / 'qga.sock'
    real.write_bytes(b'')
    link = tmp_path / 'link.sock'
    link.symlink_to(real)
    assert lock.lock_path_for(str(link)) == lock.lock_path_for(str(real))
    assert os.path.dirname(lock.lock_path_for(str(real))) == str(rundir)
    assert lock.lock_path_for(('localhost', 4444)) != lock.lock_path_for(('localhost', 4445))


# -- the directory -------------------------------------------------------------------

def test_directory_is_created_private_whatever_the_umask(rundir):
    old = os.umask(0)
    try:
        fd, path = lock.open_runtime_dir()
    finally:
        os.umask(old)
    os.close(fd)
    info = os.lstat(path)
    assert path == str(rundir)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()


def test_symlinked_directory_is_refused_and_its_target_untouched(tmp_path, rundir):
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir(mode=0o700)
    rundir.symlink_to(elsewhere)
    with pytest.raises(RuntimeFileError) as caught:
        lock.SocketLock(str(tmp_path / 'qga.sock')).acquire(1)
    assert str(rundir) in str(caught.value) and 'symbolic link' in str(caught.value)
    assert caught.value.details() == {'runtime_path': str(rundir)}
    assert not os.listdir(elsewhere)


@needs_root
def test_directory_of_another_uid_is_refused(tmp_path, rundir):
    rundir.mkdir(mode=0o700)
    os.chown(rundir, OTHER_UID, OTHER_UID)
    with pytest.raises(RuntimeFileError) as caught:
        lock.SocketLock(str(tmp_path / 'qga.sock')).acquire(1)
    assert f'belongs to uid {OTHER_UID}' in str(caught.value)
    assert not os.listdir(rundir)


def test_directory_open_to_others_is_refused(tmp_path, rundir):
    rundir.mkdir()
    rundir.chmod(0o755)
    with pytest.raises(RuntimeFileError) as caught:
        lock.SocketLock(str(tmp_path / 'qga.sock')).acquire(1)
    assert 'has mode 0755' in str(caught.value) and str(rundir) in str(caught.value)


# -- the lock file -------------------------------------------------------------------

def planted(rundir, sock):
    rundir.mkdir(mode=0o700, exist_ok=True)
    return rundir / os.path.basename(lock.lock_path_for(sock))


@pytest.mark.parametrize('existing_only', [False, True])
def test_symlink_at_the_lock_path_is_refused_and_not_followed(tmp_path, rundir, target, existing_only):
    sock = str(tmp_path / 'qga.sock')
    path = planted(rundir, sock)
    path.symlink_to(target)
    before = snapshot(target)
    error = in_bounded_time(lambda: lock.SocketLock(sock, existing_only=existing_only).acquire(1))
    assert isinstance(error, RuntimeFileError), error
    assert str(path) in str(error) and 'symbolic link' in str(error)
    assert snapshot(target) == before
    assert os.readlink(path) == str(target)


@pytest.mark.parametrize('existing_only', [False, True])
def test_fifo_at_the_lock_path_is_a_clear_error_not_a_hang(tmp_path, rundir, existing_only):
    sock = str(tmp_path / 'qga.sock')
    path = planted(rundir, sock)
    os.mkfifo(path, 0o600)
    error = in_bounded_time(lambda: lock.SocketLock(sock, existing_only=existing_only).acquire(30))
    assert isinstance(error, RuntimeFileError), error
    assert str(path) in str(error) and 'is a FIFO' in str(error)


@needs_root
def test_file_of_another_uid_at_the_lock_path_is_refused(tmp_path, rundir):
    sock = str(tmp_path / 'qga.sock')
    path = planted(rundir, sock)
    path.write_bytes(b'')
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(RuntimeFileError) as caught:
        lock.SocketLock(sock).acquire(1)
    assert f'belongs to uid {OTHER_UID}' in str(caught.value)


def test_hard_link_at_the_lock_path_is_refused(tmp_path, rundir, target):
    sock = str(tmp_path / 'qga.sock')
    path = planted(rundir, sock)
    os.link(target, path)
    before = snapshot(target)
    with pytest.raises(RuntimeFileError) as caught:
        lock.SocketLock(sock).acquire(1)
    assert 'hard links' in str(caught.value)
    assert snapshot(target)[:3] == before[:3]


def test_lock_file_is_private_and_removed_when_let_go(tmp_path, rundir):
    held = lock.SocketLock(str(tmp_path / 'qga.sock'))
    held.acquire(1)
    info = os.lstat(held.path)
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077 == 0
    held.release()
    assert not os.listdir(rundir)


def test_waiter_on_a_removed_file_takes_the_next_one(tmp_path, rundir):
    """The holder removes the file as it lets go; a waiter that held the old file retries and is alone."""
    sock = str(tmp_path / 'qga.sock')
    first = lock.SocketLock(sock)
    first.acquire(1)
    second = lock.SocketLock(sock)
    waiting = threading.Thread(target=second.acquire, args=(10,), daemon=True)
    waiting.start()
    time.sleep(0.3)  # let it open the file and block on it: the interleaving under test
    first.release()
    waiting.join(10)
    assert not waiting.is_alive()
    assert os.path.exists(second.path)
    with pytest.raises(errors.SocketBusyError):
        lock.SocketLock(sock).acquire(0.2)  # the new file is really held
    second.release()


def test_reader_without_lock_file_goes_ahead_and_creates_nothing(tmp_path, rundir):
    reader = lock.SocketLock(str(tmp_path / 'qga.sock'), existing_only=True)
    reader.acquire(1)
    reader.release()
    assert not rundir.exists()


def test_busy_lock_names_its_file(tmp_path, rundir):
    sock = str(tmp_path / 'qga.sock')
    holder = lock.SocketLock(sock)
    holder.acquire(1)
    try:
        with pytest.raises(errors.SocketBusyError) as caught:
            lock.SocketLock(sock).acquire(0.2)
    finally:
        holder.release()
    assert holder.path in str(caught.value)
    assert f'(pid {os.getpid()}, ' in str(caught.value)  # the kernel's lock table names who held it


def test_the_holder_of_a_lock_taken_by_another_process_is_told(tmp_path):
    path = tmp_path / 'held.lock'
    path.write_bytes(b'')
    script = tmp_path / 'AnsiballZ_qemu_backup.py'
    script.write_text('import fcntl, sys, time\n'
                      'f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); print("held", flush=True); time.sleep(60)\n')
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'held'
        pid = lock.lock_holder(os.stat(path))
        assert pid == proc.pid
        assert lock.describe_process(pid) == f' (pid {proc.pid}, qemu_backup)'
    finally:
        proc.kill()
        proc.wait()
    assert lock.lock_holder(os.stat(path)) is None  # let go with the process
    assert lock.describe_process(None) == ''


def test_an_unreadable_lock_table_tells_nobody(tmp_path):
    assert lock.lock_holder(os.stat(tmp_path), locks_path=str(tmp_path / 'missing')) is None


# -- runtime files (the freeze marker is one) ----------------------------------------

def test_runtime_file_round_trip(tmp_path, rundir):
    sock = str(tmp_path / 'qga.sock')
    assert not lock.runtime_file_exists(sock, '.frozen')
    lock.write_runtime_file(sock, '.frozen', b'123\n')
    path = lock.runtime_path(sock, '.frozen')
    assert open(path, 'rb').read() == b'123\n'
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert lock.runtime_file_exists(sock, '.frozen')
    lock.remove_runtime_file(sock, '.frozen')
    assert not lock.runtime_file_exists(sock, '.frozen')
    lock.remove_runtime_file(sock, '.frozen')  # already gone: fine


def test_symlinked_runtime_file_is_neither_written_through_nor_trusted(tmp_path, rundir, target):
    sock = str(tmp_path / 'qga.sock')
    rundir.mkdir(mode=0o700)
    path = rundir / os.path.basename(lock.runtime_path(sock, '.frozen'))
    path.symlink_to(target)
    before = snapshot(target)
    with pytest.raises(RuntimeFileError) as caught:
        lock.write_runtime_file(sock, '.frozen', b'1\n')
    assert str(path) in str(caught.value)
    with pytest.raises(RuntimeFileError):
        lock.runtime_file_exists(sock, '.frozen')
    assert snapshot(target) == before
    lock.remove_runtime_file(sock, '.frozen')  # removes the link, not what it points at
    assert not os.path.lexists(path) and snapshot(target) == before


def test_fifo_runtime_file_is_a_clear_error_not_a_hang(tmp_path, rundir):
    sock = str(tmp_path / 'qga.sock')
    rundir.mkdir(mode=0o700)
    path = rundir / os.path.basename(lock.runtime_path(sock, '.frozen'))
    os.mkfifo(path, 0o600)
    for call in (lambda: lock.write_runtime_file(sock, '.frozen', b'1\n'), lambda: lock.runtime_file_exists(sock, '.frozen')):
        error = in_bounded_time(call)
        assert isinstance(error, RuntimeFileError) and 'is a FIFO' in str(error), error
