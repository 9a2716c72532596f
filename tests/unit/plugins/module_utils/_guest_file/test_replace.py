# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""state=present against a real filesystem: the shell scripts of _guest_file.replace run on this
machine (with its /bin/sh and coreutils, and with busybox's applets alone, as in the test guest),
through harness.local_guest. A test acts between two steps of the module the way a guest user
racing it would (hooks), which a real guest cannot show deterministically.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from harness.local_guest import BUSYBOX, LocalAgent, busybox_path

from ansible_collections.qemu.vm.plugins.module_utils._guest_file import replace
from ansible_collections.qemu.vm.plugins.module_utils._guest_file import state as gf
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import (
    GuestDanglingLinkError,
    GuestDirectoryMissingError,
    GuestFileChangedError,
    GuestFileError,
    GuestIsADirectoryError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.files import GuestFileSystem
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.local import Source

SECRET = b'root:$6$not-for-alice$:20000:0:99999:7:::\n'


@pytest.fixture(params=['sh', 'busybox'])
def agent(request, tmp_path):
    if request.param == 'busybox':
        assert os.path.exists(BUSYBOX), 'busybox-static is needed (make deps; the test guest is built from it)'
        return LocalAgent(busybox_path(str(tmp_path / 'bin')))
    return LocalAgent()


@pytest.fixture
def home(tmp_path):
    """A directory a guest user could write (alice's home), and a root-only file elsewhere."""
    directory = tmp_path / 'home'
    directory.mkdir()
    secret = tmp_path / 'shadow'
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    return directory


def secret_of(home):
    path = home.parent / 'shadow'
    return path.read_bytes(), path.stat().st_mode & 0o7777, path.stat().st_ino


def put(agent, path, data, check_mode=False, diff_mode=False, **desired):
    guest = GuestFileSystem(agent, 4096)
    result = gf.ensure_present(guest, Source(data=data), gf.Desired(str(path), **desired), check_mode, diff_mode)
    result['warnings'] = guest.warnings
    return result


def umask():
    value = os.umask(0o022)
    os.umask(value)
    return value


def listing(directory):
    return sorted(os.listdir(str(directory)))


# -- the ordinary cases ------------------------------------------------------------------------------


def test_new_file_gets_the_umask_mode_and_nothing_is_left_beside_it(agent, home):
    result = put(agent, home / 'f', b'hello\n')
    assert (result['changed'], result['compared_by'], result['atomic']) == (True, 'missing', True)
    assert (home / 'f').read_bytes() == b'hello\n'
    assert (home / 'f').stat().st_mode & 0o777 == 0o666 & ~umask()
    assert listing(home) == ['f']
    again = put(agent, home / 'f', b'hello\n')
    assert (again['changed'], again['compared_by']) == (False, 'sha256sum')


def test_a_replaced_file_keeps_its_mode_and_is_a_new_file(agent, home):
    target = home / 'f'
    target.write_bytes(b'old')
    target.chmod(0o604)
    inode = target.stat().st_ino
    result = put(agent, target, b'newer')
    assert (result['changed'], result['compared_by']) == (True, 'size')
    assert target.read_bytes() == b'newer' and target.stat().st_mode & 0o777 == 0o604
    assert target.stat().st_ino != inode and listing(home) == ['f']


def test_attributes_alone_change_in_place(agent, home):
    target = home / 'f'
    target.write_bytes(b'same')
    inode = target.stat().st_ino
    me = str(os.getuid())
    result = put(agent, target, b'same', mode=0o640, owner=me, group=str(os.getgid()))
    assert result['changed'] and 'atomic' not in result
    assert (target.stat().st_ino, target.stat().st_mode & 0o777) == (inode, 0o640)
    assert [argv[3] for argv in agent.execs if argv[:2] == ['sh', '-c']] == ['qemu-vm-attributes']


def test_missing_directory_and_directory_errors(agent, home):
    with pytest.raises(GuestDirectoryMissingError) as caught:
        put(agent, home / 'nodir' / 'f', b'x')
    assert f'{home}/nodir does not exist' in str(caught.value)
    with pytest.raises(GuestIsADirectoryError):
        put(agent, home, b'x')
    with pytest.raises(GuestIsADirectoryError):
        gf.ensure_absent(GuestFileSystem(agent, 4096), str(home))


# -- what a guest user plants ------------------------------------------------------------------------


def test_a_link_at_the_path_is_replaced_never_written_through(agent, home):
    """~alice/.profile -> /etc/shadow, and the task gives the file to alice: the link becomes a file."""
    before = secret_of(home)
    profile = home / '.profile'
    profile.symlink_to(home.parent / 'shadow')
    result = put(agent, profile, b'export PS1=x\n', diff_mode=True, mode=0o644, owner=str(os.getuid()))
    assert (result['changed'], result['compared_by']) == (True, 'link')
    assert not profile.is_symlink() and profile.read_bytes() == b'export PS1=x\n'
    assert profile.stat().st_mode & 0o777 == 0o644
    assert secret_of(home) == before
    diffs = result['diff']
    assert diffs[0]['before'] == '' and diffs[-1]['before']['state'] == 'link'
    assert 'not-for-alice' not in repr(diffs)  # what the link points to was never read
    assert 'guest_target' not in result and listing(home) == ['.profile']


def test_follow_writes_the_file_the_link_points_to(agent, home):
    real = home / 'real.conf'
    real.write_bytes(b'old')
    (home / 'link.conf').symlink_to('real.conf')
    result = put(agent, home / 'link.conf', b'new', follow=True)
    assert result['guest_target'] == str(real) and real.read_bytes() == b'new'
    assert (home / 'link.conf').is_symlink()
    (home / 'dangling').symlink_to('nowhere')
    with pytest.raises(GuestDanglingLinkError):
        put(agent, home / 'dangling', b'x', follow=True)
    assert put(agent, home / 'dangling', b'x')['compared_by'] == 'link'
    assert not (home / 'dangling').is_symlink() and not (home / 'nowhere').exists()


def test_a_hard_link_to_another_file_is_replaced_not_changed(agent, home):
    """Where links to others' files are allowed (fs.protected_hardlinks=0), a file with several names is
    given its attributes as a new file: the other name keeps its mode."""
    before = secret_of(home)
    target = home / 'f'
    os.link(str(home.parent / 'shadow'), str(target))
    result = put(agent, target, SECRET, mode=0o644)
    assert result['changed'] and result['atomic'] is True
    assert secret_of(home) == before
    assert target.stat().st_ino != before[2] and target.stat().st_mode & 0o777 == 0o644


def test_absent_deletes_the_link_not_what_it_points_to(agent, home):
    before = secret_of(home)
    (home / 'l').symlink_to(home.parent / 'shadow')
    assert gf.ensure_absent(GuestFileSystem(agent, 4096), str(home / 'l'))['changed']
    assert listing(home) == [] and secret_of(home) == before


# -- a guest user racing the task --------------------------------------------------------------------


def once(agent, command, action, when=lambda arguments: True):
    def hook(arguments):
        if when(arguments):
            del agent.hooks[command]
            action()
    agent.hooks[command] = hook


@pytest.mark.parametrize('existed', [True, False])
def test_a_path_swapped_for_a_link_while_the_content_is_written_is_left_alone(agent, home, existed):
    before = secret_of(home)
    target = home / 'f'
    if existed:
        target.write_bytes(b'old content')

    def swap():
        if existed:
            target.unlink()
        target.symlink_to(home.parent / 'shadow')
    once(agent, 'guest-file-write', swap)
    with pytest.raises(GuestFileChangedError) as caught:
        put(agent, target, b'new content', mode=0o644, owner=str(os.getuid()))
    assert str(target) in str(caught.value) and 'left as it is' in str(caught.value)
    assert target.is_symlink() and secret_of(home) == before
    assert listing(home) == ['f']  # the private directory and file are gone


def test_the_private_directory_swapped_for_a_link_reaches_nothing(agent, home, tmp_path):
    """She renames the private directory away and links its name to a directory of hers: the agent's
    open of the (secret) file name there finds nothing and creates nothing."""
    target = home / 'f'
    target.write_bytes(b'old')
    trap = tmp_path / 'trap'
    trap.mkdir()

    def swap():
        private = next(home.glob('.f.qemu-vm-*.tmp'))
        private.rename(home / 'moved')
        private.symlink_to(trap)
    once(agent, 'guest-file-open', swap, when=lambda arguments: '.qemu-vm-' in arguments['path'])
    with pytest.raises(GuestFileChangedError):
        put(agent, target, b'new content')
    assert target.read_bytes() == b'old' and listing(trap) == []


def test_a_file_swapped_before_its_attributes_change_is_left_alone(agent, home):
    before = secret_of(home)
    target = home / 'f'
    target.write_bytes(SECRET)

    def swap():
        target.unlink()
        target.symlink_to(home.parent / 'shadow')
    once(agent, 'guest-exec', swap, when=lambda arguments: 'qemu-vm-attributes' in arguments.get('arg', []))
    with pytest.raises(GuestFileChangedError):
        put(agent, target, SECRET, mode=0o640)
    assert secret_of(home) == before and target.is_symlink()


def test_without_proc_attributes_change_by_replacing_the_file(agent, home, monkeypatch):
    monkeypatch.setattr(replace, 'IN_PLACE', 'exit 101')
    target = home / 'f'
    target.write_bytes(b'same')
    result = put(agent, target, b'same', mode=0o600)
    assert result['atomic'] is True and target.stat().st_mode & 0o777 == 0o600 and target.read_bytes() == b'same'


# -- what earlier runs left ----------------------------------------------------------------------------


def test_leftovers_of_killed_runs_are_deleted_and_nothing_else(agent, home, tmp_path):
    target = home / 'f'
    old_file = home / '.f.qemu-vm-0000000a.tmp'  # an earlier version's temporary file
    old_file.write_bytes(b'partial')
    ours = home / '.f.qemu-vm-0000000b.tmp'  # a killed run's private directory
    ours.mkdir(mode=0o700)
    (ours / 'qvm0123456789abcdef').write_bytes(b'partial')
    foreign = home / '.f.qemu-vm-0000000c.tmp'  # not ours (open to others): not emptied, not removed
    foreign.mkdir(mode=0o755)
    (foreign / 'keep').write_bytes(b'hers')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir(mode=0o700)
    (elsewhere / 'keep').write_bytes(b'root data')
    (home / '.f.qemu-vm-0000000d.tmp').symlink_to(elsewhere)  # a link with our name: removed, not followed
    result = put(agent, target, b'data')
    assert listing(home) == ['.f.qemu-vm-0000000c.tmp', 'f']
    assert (foreign / 'keep').read_bytes() == b'hers' and (elsewhere / 'keep').read_bytes() == b'root data'
    assert len([w for w in result['warnings'] if 'an interrupted earlier run left' in w]) == 3


def test_a_failed_chown_leaves_the_target_and_no_temporary_file(agent, home):
    target = home / 'f'
    target.write_bytes(b'old')
    with pytest.raises(GuestFileError) as caught:
        put(agent, target, b'new', owner='no-such-user-qvm')
    assert 'is unchanged' in str(caught.value) and 'no-such-user-qvm' in str(caught.value)
    assert target.read_bytes() == b'old' and listing(home) == ['f']


def test_names():
    name = replace.temp_dir_name('/etc/app/config.yml')
    assert name.startswith('.config.yml.qemu-vm-') and name.endswith('.tmp')
    assert len(replace.temp_dir_name('/x/' + 'n' * 300)) < 255
    assert replace.temp_dir_name('/a') != replace.temp_dir_name('/a')
    assert (replace.owner_spec('alice', 'staff'), replace.owner_spec(None, 'staff'), replace.owner_spec(None, None)) == \
        ('alice:staff', ':staff', '')


def test_checksums_agree_with_the_guest_sha256sum(agent, home):
    data = os.urandom(10000)
    put(agent, home / 'blob', data)
    assert hashlib.sha256((home / 'blob').read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
