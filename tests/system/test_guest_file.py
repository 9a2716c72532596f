# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_guest_file against the real qemu-ga in the tiny guest.

Everything the module claims is observed independently: checksums and attributes
with guest-exec (sha256sum, stat) through the harness, never with the module itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import textwrap

import pytest

from harness.ansible import BIN, ansible_env, run_module, run_playbook

MIB = 1024 * 1024
FILE_COMMANDS = ('guest-file-open', 'guest-file-read', 'guest-file-write', 'guest-file-close')


# -- observation helpers ---------------------------------------------------------------------


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def sha256_of(path):
    hasher = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(MIB), b''):
            hasher.update(block)
    return hasher.hexdigest()


def guest_sha(vm, path):
    code, out, err = vm.guest_exec(['sha256sum', path], timeout=120)
    assert code == 0, err
    return out.split()[0].decode()


def guest_stat(vm, path):
    """(size, mode, owner, group) of a guest file, or None when it does not exist."""
    code, out, _err = vm.guest_exec(['stat', '-c', '%s %a %U %G', path])
    if code != 0:
        return None
    size, mode, owner, group = out.decode().split()
    return int(size), mode, owner, group


def guest_cat(vm, path):
    code, out, err = vm.guest_exec(['cat', path])
    assert code == 0, err
    return out


def guest_read(vm, path):
    """A small guest file through the agent's file commands (for guests without guest-exec)."""
    handle = vm.qga('guest-file-open', {'path': path, 'mode': 'rb'})
    try:
        reply = vm.qga('guest-file-read', {'handle': handle, 'count': MIB})
    finally:
        vm.qga('guest-file-close', {'handle': handle})
    return base64.b64decode(reply['buf-b64'])


def guest_listing(vm, directory):
    code, out, err = vm.guest_exec(['ls', '-a', directory])
    assert code == 0, err
    return sorted(out.decode().split())


def agent_open_files(vm):
    """Files (not pipes, sockets or devices) the guest agent holds open."""
    script = 'for f in /proc/$(pidof qemu-ga)/fd/*; do readlink "$f"; done'
    code, out, err = vm.guest_exec(['sh', '-c', script])
    assert code == 0, err
    return sorted(line for line in out.decode().splitlines() if line.startswith(('/data', '/tmp', '/sys', '/mnt')))


def random_file(directory, name, size):
    path = os.path.join(str(directory), name)
    with open(path, 'wb') as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 4 * MIB))
            handle.write(block)
            remaining -= len(block)
    return path


def four_steps(args, check_state=None):
    """check -> changed, real -> changed, check -> unchanged, real -> unchanged; returns the four results.

    `check_state()` runs after the first check-mode run and must show that nothing changed yet.
    """
    results = []
    for check, changed in ((True, True), (False, True), (True, False), (False, False)):
        result = run_module('qemu_guest_file', args, check=check)
        assert not result.failed, result.get('msg', result['output'])
        assert result.changed is changed, (check, result)
        results.append(result)
        if check and changed and check_state is not None:
            check_state()
    return results


def failure(args, check=False):
    result = run_module('qemu_guest_file', args, check=check)
    assert result.failed, result
    assert result.changed is False
    return result


@pytest.fixture
def qga(vm):
    return {'qga': vm.qga_path}


# -- byte-exact round trips ------------------------------------------------------------------


@pytest.mark.parametrize('size', [0, 1, MIB - 1, MIB, MIB + 1, 3 * MIB + 1])
def test_round_trip_is_byte_exact_at_chunk_boundaries(vm, qga, tmp_path, size):
    """Random binary data into the guest and back with 1 MiB chunks: same SHA-256 everywhere."""
    src = random_file(tmp_path, 'src.bin', size)
    expected = sha256_of(src)
    guest_path = f'/data/blob-{size}.bin'

    put = run_module('qemu_guest_file', dict(qga, path=guest_path, src=src, chunk_size='1M'))
    assert not put.failed, put.get('msg', put['output'])
    assert put.changed
    assert (put['checksum'], put['size'], put['compared_by']) == (expected, size, 'missing')
    assert put['transferred'] == size
    assert put['atomic'] is True
    assert guest_sha(vm, guest_path) == expected
    assert guest_stat(vm, guest_path)[0] == size

    dest = str(tmp_path / 'back.bin')
    got = run_module('qemu_guest_file', dict(qga, path=guest_path, state='fetched', dest=dest, chunk_size='1M'))
    assert not got.failed, got.get('msg', got['output'])
    assert got.changed
    assert (got['checksum'], got['size'], got['dest_path']) == (expected, size, dest)
    assert sha256_of(dest) == expected

    # No temporary file is left beside the target.
    assert [n for n in guest_listing(vm, '/data') if n.startswith('.blob')] == []


def test_large_file_round_trip_with_default_chunk(vm_factory, tmp_path):
    """A file over 64 MiB (not a multiple of the chunk) both ways with the default (1 MiB) chunks."""
    vm = vm_factory(memory=640)
    size = 64 * MIB + 12345
    src = random_file(tmp_path, 'big.bin', size)
    expected = sha256_of(src)
    args = {'qga': vm.qga_path, 'path': '/tmp/big.bin', 'src': src, 'timeout': 120}

    put = run_module('qemu_guest_file', args, timeout=900)
    assert not put.failed, put.get('msg', put['output'])
    assert (put['checksum'], put['size'], put['transferred']) == (expected, size, size)
    assert put['duration_ms'] > 0 and put['mb_per_s'] > 0
    assert guest_sha(vm, '/tmp/big.bin') == expected

    again = run_module('qemu_guest_file', args, timeout=900)
    assert not again.failed and not again.changed
    assert (again['compared_by'], again['transferred']) == ('sha256sum', 0)

    dest = str(tmp_path / 'big.back')
    got = run_module('qemu_guest_file', {'qga': vm.qga_path, 'path': '/tmp/big.bin', 'state': 'fetched',
                                         'dest': dest, 'timeout': 120}, timeout=900)
    assert not got.failed, got.get('msg', got['output'])
    assert (got['checksum'], got['size'], got['transferred']) == (expected, size, size)
    assert sha256_of(dest) == expected
    assert agent_open_files(vm) == []


# -- idempotency -----------------------------------------------------------------------------


def test_present_content_four_steps_with_attributes(vm, qga):
    path = '/data/motd'
    text = 'managed by qemu.vm\nline two\n'
    args = dict(qga, path=path, content=text, mode='0640', owner='alice', group='staff')

    def not_created():
        assert guest_stat(vm, path) is None

    results = four_steps(args, check_state=not_created)
    assert guest_cat(vm, path) == text.encode()
    assert guest_stat(vm, path) == (len(text), '640', 'alice', 'staff')
    assert results[1]['checksum'] == sha256(text.encode())
    assert results[2]['compared_by'] == results[3]['compared_by'] == 'sha256sum'
    assert results[3]['transferred'] == 0

    # New content of another size: replaced, and the attributes set before stay.
    changed = run_module('qemu_guest_file', dict(qga, path=path, content='short\n'))
    assert changed.changed and changed['compared_by'] == 'size'
    assert guest_cat(vm, path) == b'short\n'
    assert guest_stat(vm, path) == (6, '640', 'alice', 'staff')

    # Same size, other bytes: found by checksum.
    same_size = run_module('qemu_guest_file', dict(qga, path=path, content='SHORT\n'))
    assert same_size.changed and same_size['compared_by'] == 'sha256sum'
    assert guest_cat(vm, path) == b'SHORT\n'

    # Only an attribute differs: changed, content untouched.
    chmod = run_module('qemu_guest_file', dict(qga, path=path, content='SHORT\n', mode='0600'))
    assert chmod.changed and 'atomic' not in chmod
    assert guest_stat(vm, path) == (6, '600', 'alice', 'staff')


def test_present_check_mode_changes_nothing(vm, qga):
    before = guest_cat(vm, '/data/hello.txt')
    result = run_module('qemu_guest_file', dict(qga, path='/data/hello.txt', content='other text\n', mode='0600'),
                        check=True)
    assert result.changed and not result.failed
    assert result['checksum'] == sha256(b'other text\n')
    assert guest_cat(vm, '/data/hello.txt') == before
    assert guest_stat(vm, '/data/hello.txt')[1] == '644'
    new = run_module('qemu_guest_file', dict(qga, path='/data/new.txt', content='new text\n'), check=True)
    assert new.changed and guest_stat(vm, '/data/new.txt') is None


def test_new_file_gets_umask_mode_and_replaced_file_keeps_its_attributes(vm, qga):
    created = run_module('qemu_guest_file', dict(qga, path='/data/plain.txt', content='one\n'))
    assert created.changed
    assert guest_stat(vm, '/data/plain.txt') == (4, '644', 'root', 'root')
    code, _out, err = vm.guest_exec(['sh', '-c', 'chown alice:staff /data/plain.txt && chmod 0604 /data/plain.txt'])
    assert code == 0, err
    replaced = run_module('qemu_guest_file', dict(qga, path='/data/plain.txt', content='two!\n'))
    assert replaced.changed and replaced['atomic'] is True
    assert guest_stat(vm, '/data/plain.txt') == (5, '604', 'alice', 'staff')


def test_fetched_four_steps(vm, qga, tmp_path):
    dest = tmp_path / 'hello.txt'
    args = dict(qga, path='/data/hello.txt', state='fetched', dest=str(dest))

    def not_created():
        assert not dest.exists()

    results = four_steps(args, check_state=not_created)
    assert dest.read_bytes() == guest_cat(vm, '/data/hello.txt')
    assert all(r['checksum'] == sha256(dest.read_bytes()) for r in results)
    # Fetching always streams: every run read the whole file.
    assert all(r['transferred'] == dest.stat().st_size for r in results)

    # dest changed locally: fetched again.
    dest.write_bytes(b'local edit\n')
    again = run_module('qemu_guest_file', args)
    assert again.changed
    assert dest.read_bytes() == guest_cat(vm, '/data/hello.txt')


def test_fetched_check_mode_creates_nothing(vm, qga, tmp_path):
    directory = tmp_path / 'fetch'
    directory.mkdir()
    dest = directory / 'out'
    result = run_module('qemu_guest_file', dict(qga, path='/data/hello.txt', state='fetched', dest=str(dest)),
                        check=True)
    assert result.changed
    assert os.listdir(str(directory)) == []


def test_fetched_into_a_directory_with_mode(vm, qga, tmp_path):
    directory = tmp_path / 'fetch'
    directory.mkdir()
    args = dict(qga, path='/data/hello.txt', state='fetched', dest=str(directory), mode='0600')
    result = run_module('qemu_guest_file', args)
    assert result.changed
    dest = directory / 'hello.txt'
    assert result['dest_path'] == str(dest)
    assert oct(dest.stat().st_mode & 0o777) == '0o600'
    assert run_module('qemu_guest_file', args).changed is False
    assert sorted(os.listdir(str(directory))) == ['hello.txt']


def test_absent_four_steps(vm, qga):
    path = '/data/hello.txt'

    def still_there():
        assert guest_stat(vm, path) is not None

    four_steps(dict(qga, path=path, state='absent'), check_state=still_there)
    assert guest_stat(vm, path) is None
    assert 'hello.txt' not in guest_listing(vm, '/data')


def test_symlink_is_followed_only_with_follow(vm, qga):
    code, _out, err = vm.guest_exec(['ln', '-s', 'hello.txt', '/data/link'])
    assert code == 0, err
    result = run_module('qemu_guest_file', dict(qga, path='/data/link', content='through the link\n', follow=True))
    assert result.changed and result['guest_target'] == '/data/hello.txt'
    assert guest_cat(vm, '/data/hello.txt') == b'through the link\n'
    assert vm.guest_exec(['readlink', '/data/link']) == (0, b'hello.txt\n', b'')

    # By default (as ansible.builtin.copy) the link itself is replaced by the file.
    replaced = run_module('qemu_guest_file', dict(qga, path='/data/link', content='instead of the link\n'))
    assert replaced.changed and replaced['compared_by'] == 'link' and 'guest_target' not in replaced
    assert vm.guest_exec(['readlink', '/data/link'])[0] != 0
    assert guest_cat(vm, '/data/link') == b'instead of the link\n'
    assert guest_cat(vm, '/data/hello.txt') == b'through the link\n'

    code, _out, err = vm.guest_exec(['ln', '-s', 'nowhere', '/data/dangling'])
    assert code == 0, err
    dangling = failure(dict(qga, path='/data/dangling', content='x' * 20, follow=True))
    assert 'dangling symbolic link' in dangling['msg'] and dangling['error_type'] == 'GuestDanglingLinkError'


# -- src from the controller through ansible-playbook ---------------------------------------


def test_src_from_controller_in_a_playbook(vm, tmp_path):
    """src is found in the play's files/ directory; once read in place (local connection), once transferred
    to the managed host's temporary directory (become), and idempotent on the second run."""
    files = tmp_path / 'files'
    files.mkdir()
    payload = random_file(files, 'payload.bin', 2 * MIB + 3)
    expected = sha256_of(payload)
    secret = files / 'secret.txt'
    secret.write_text('the plain secret\n')
    password = tmp_path / 'vault-password'
    password.write_text('test-password\n')
    vault = subprocess.run([os.path.join(BIN, 'ansible-vault'), 'encrypt', '--vault-password-file', str(password),
                            str(secret)], env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, check=False)
    assert vault.returncode == 0, vault.stdout
    assert secret.read_text().startswith('$ANSIBLE_VAULT')
    playbook = tmp_path / 'play.yml'
    playbook.write_text(textwrap.dedent('''\
        - name: Copy from the controller into the guest
          hosts: localhost
          gather_facts: false
          module_defaults:
            group/qemu.vm.qemu:
              qga: {qga}
          tasks:
            - name: Read in place
              qemu.vm.qemu_guest_file:
                src: payload.bin
                path: /data/in-place.bin
                chunk_size: 1M
              register: in_place

            - name: Transferred to the managed host first
              qemu.vm.qemu_guest_file:
                src: payload.bin
                path: /data/transferred.bin
              become: true
              become_method: ansible.builtin.su
              register: transferred

            - name: Vault-encrypted src is decrypted, like ansible.builtin.copy does
              qemu.vm.qemu_guest_file:
                src: secret.txt
                path: /data/secret.txt
                mode: '0600'

            - name: Show the results
              ansible.builtin.debug:
                msg: "RESULT {{{{ in_place.checksum }}}} {{{{ transferred.checksum }}}} {{{{ transferred.size }}}}"
        ''').format(qga=vm.qga_path))

    vault_args = ('--vault-password-file', str(password))
    first = run_playbook(str(playbook), args=('-vvv',) + vault_args)
    assert first.returncode == 0, first.stdout
    assert f'RESULT {expected} {expected} {2 * MIB + 3}' in first.stdout
    assert 'changed=3' in first.stdout, first.stdout
    # The local connection logs every transfer: only the become task put payload.bin on the managed host.
    puts = re.findall(r'PUT (\S+) TO (\S+)', first.stdout)
    assert [(frm, to.rsplit('/', 1)[-1]) for frm, to in puts if 'payload' in frm] == \
        [(payload, 'qemu-guest-file-source')], puts
    # ... in a temporary directory that is gone after the task.
    assert not any(os.path.exists(os.path.dirname(to)) for frm, to in puts if 'payload' in frm)
    assert guest_sha(vm, '/data/in-place.bin') == expected
    assert guest_sha(vm, '/data/transferred.bin') == expected
    assert guest_cat(vm, '/data/secret.txt') == b'the plain secret\n'
    assert guest_stat(vm, '/data/secret.txt')[1] == '600'

    second = run_playbook(str(playbook), args=vault_args)
    assert second.returncode == 0, second.stdout
    assert 'changed=0' in second.stdout, second.stdout

    missing = run_playbook(textwrap.dedent('''\
        - name: Missing src
          hosts: localhost
          gather_facts: false
          tasks:
            - name: No such file
              qemu.vm.qemu_guest_file:
                qga: {qga}
                src: does-not-exist.bin
                path: /data/x.bin
        ''').format(qga=vm.qga_path))
    assert missing.returncode != 0
    assert 'does-not-exist.bin' in missing.stdout


# -- errors ------------------------------------------------------------------------------------


def test_clear_errors_leave_the_guest_untouched(vm, qga, tmp_path):
    before = guest_listing(vm, '/data')
    content = 'some content for the error cases\n'

    missing_dir = failure(dict(qga, path='/data/nodir/file.txt', content=content))
    assert 'directory /data/nodir does not exist' in missing_dir['msg']
    assert missing_dir['error_type'] == 'GuestDirectoryMissingError'

    for args in (dict(qga, path='/data', content=content), dict(qga, path='/data', state='absent'),
                 dict(qga, path='/data', state='fetched', dest=str(tmp_path / 'x'))):
        is_dir = failure(args)
        assert 'is a directory' in is_dir['msg'], is_dir['msg']
        assert is_dir['error_type'] == 'GuestIsADirectoryError'

    # sysfs refuses even root: a read-only attribute cannot be written, a write-only one cannot be read.
    denied = failure(dict(qga, path='/sys/kernel/vmcoreinfo', content=content))
    assert 'permission denied' in denied['msg'] and denied['error_type'] == 'GuestPermissionError'
    denied_read = failure(dict(qga, path='/sys/bus/pci/rescan', state='fetched', dest=str(tmp_path / 'x')))
    assert 'permission denied' in denied_read['msg'] and denied_read['error_type'] == 'GuestPermissionError'

    gone = failure(dict(qga, path='/data/nope', state='fetched', dest=str(tmp_path / 'x')))
    assert '/data/nope does not exist in the guest' in gone['msg'] and gone['error_type'] == 'GuestFileMissingError'

    # Parameter errors name the parameter and never reach the guest.
    for args, words in (
            (dict(qga, path='relative.txt', content=content), 'absolute path'),
            (dict(qga, path='/data/x', content=content, chunk_size='49M'), 'chunk_size'),
            (dict(qga, path='/data/x', content=content, mode='u+rw'), 'mode'),
            (dict(qga, path='/data/x', content=content, src='/etc/hostname'), 'mutually exclusive'),
            (dict(qga, path='/data/x', state='fetched'), 'dest'),
            (dict(qga, path='/data/x', content=content, dest='/tmp/x'), 'dest'),
            (dict(qga, path='/data/x', src=str(tmp_path)), 'directory'),
            (dict(qga, path='/data/x', src='/nonexistent/file', remote_src=True), 'No such file'),
            (dict(qga, path='/data/x', content=content, follow=True, state='absent'), 'follow'),
            (dict(qga, path='/data/x', content=content, max_size='1M'), 'max_size')):
        result = failure(args)
        assert words in result['msg'], (args, result['msg'])

    assert guest_listing(vm, '/data') == before
    assert not (tmp_path / 'x').exists()
    assert agent_open_files(vm) == []


def test_full_guest_filesystem_fails_cleanly(vm, qga, tmp_path):
    """ENOSPC part way: clear error, the old file intact, no temporary file, no handle left open."""
    script = 'mkdir -p /mnt/small && mount -t tmpfs -o size=2m tmpfs /mnt/small && echo old > /mnt/small/target'
    code, _out, err = vm.guest_exec(['sh', '-c', script])
    assert code == 0, err
    src = random_file(tmp_path, 'three.bin', 3 * MIB)
    result = failure(dict(qga, path='/mnt/small/target', src=src, chunk_size='1M'))
    assert 'full' in result['msg'], result['msg']
    assert result['error_type'] == 'GuestNoSpaceError'
    assert guest_cat(vm, '/mnt/small/target') == b'old\n'
    assert guest_listing(vm, '/mnt/small') == ['.', '..', 'target']
    assert agent_open_files(vm) == []


def test_handles_are_closed_after_success_and_failure(vm, qga, tmp_path):
    assert agent_open_files(vm) == []
    run_module('qemu_guest_file', dict(qga, path='/data/a.txt', content='handle test\n'))
    run_module('qemu_guest_file', dict(qga, path='/data/a.txt', state='fetched', dest=str(tmp_path / 'a')))
    # guest-file-open of a directory for reading succeeds; the read fails: the handle must still be closed.
    failure(dict(qga, path='/data', state='fetched', dest=str(tmp_path / 'b')))
    failure(dict(qga, path='/sys/kernel/vmcoreinfo', content='no way in here\n'))
    assert agent_open_files(vm) == []


# -- what the agent does not offer -------------------------------------------------------------


def test_file_commands_blocked(vm_factory, tmp_path):
    vm = vm_factory(ga_block=FILE_COMMANDS)
    for args in ({'path': '/data/x.txt', 'content': 'blocked content\n'},
                 {'path': '/data/hello.txt', 'state': 'fetched', 'dest': str(tmp_path / 'x')}):
        args['qga'] = vm.qga_path
        result = failure(args)
        assert result['error_type'] == 'CommandDisabledError', result
        assert 'file commands blocked' in result['msg']
        assert 'guest-file-open' in result['msg'] and 'RHEL' in result['msg']
    assert guest_stat(vm, '/data/x.txt') is None


def test_without_guest_exec(vm_factory, tmp_path):
    """No guest-exec: links cannot be told from files, so writing needs follow=true; then written in place,
    compared by streaming; attributes and deletion fail clearly."""
    vm = vm_factory(ga_block=('guest-exec',))
    qga = {'qga': vm.qga_path, 'follow': True}
    text = 'written in place\n'
    refused = failure({'qga': vm.qga_path, 'path': '/data/inplace.txt', 'content': text})
    assert refused['error_type'] == 'GuestExecUnavailableError' and 'follow=true' in refused['msg']
    results = four_steps(dict(qga, path='/data/inplace.txt', content=text))
    assert results[1]['atomic'] is False
    assert results[3]['compared_by'] == 'stream' and results[3]['transferred'] == len(text)
    assert guest_read(vm, '/data/inplace.txt') == text.encode()

    src = random_file(tmp_path, 'odd.bin', MIB + 1)
    put = run_module('qemu_guest_file', dict(qga, path='/data/odd.bin', src=src, chunk_size='1M'))
    assert put.changed and put['checksum'] == sha256_of(src)
    got = run_module('qemu_guest_file', {'qga': vm.qga_path, 'path': '/data/odd.bin', 'state': 'fetched',
                                         'dest': str(tmp_path / 'o')})
    assert got['checksum'] == sha256_of(src) and sha256_of(str(tmp_path / 'o')) == sha256_of(src)

    check_mode = run_module('qemu_guest_file', dict(qga, path='/data/inplace.txt', content='other\n'), check=True)
    assert check_mode.changed and guest_read(vm, '/data/inplace.txt') == text.encode()

    mode = failure(dict(qga, path='/data/inplace.txt', content=text, mode='0600'))
    assert 'guest-exec' in mode['msg'] and mode['error_type'] == 'GuestExecUnavailableError'

    qga = {'qga': vm.qga_path}
    absent = failure(dict(qga, path='/data/inplace.txt', state='absent'))
    assert 'guest-exec' in absent['msg'] and 'disabled' in absent['msg']
    # Nothing to delete: fine without guest-exec.
    nothing = run_module('qemu_guest_file', dict(qga, path='/data/never-was.txt', state='absent'))
    assert not nothing.failed and not nothing.changed
