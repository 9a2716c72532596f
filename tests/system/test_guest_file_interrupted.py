# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_guest_file when a run is killed mid-transfer, temporary files' modes, and relative dest.

A run is killed while it is provably inside the transfer: for a put, once the module process
has read the first chunk of src (its file position, from /proc, is past 0: the temporary
guest file exists by then); for a fetch, once the local temporary file has data in it.
"""

from __future__ import annotations

import glob
import os

from harness.ansible import run_module, run_playbook
from harness.runs import kill_when, module_pids, start_module

MIB = 1024 * 1024
#: Long enough to be mid-transfer for seconds under TCG (the agent moves a few MB/s).
BIG = 24 * MIB


def module_read_past_start(proc, path):
    """Whether the run's module process (not the controller, which peeks at src for a vault header)
    has `path` open with its file position past 0."""
    for pid in module_pids(proc):
        for fd_link in glob.glob(f'/proc/{pid}/fd/*'):
            try:
                if os.readlink(fd_link) != path:
                    continue
                with open('/proc/{}/fdinfo/{}'.format(pid, fd_link.rsplit('/', 1)[1])) as info:
                    if int(info.readline().split()[1]) > 0:
                        return True
            except (OSError, ValueError, IndexError):
                continue
    return False


def guest_leftovers(vm, directory, name):
    """[kind, mode, owner, size] of each private directory a run left beside `name`, and of what is in it."""
    code, out, _err = vm.guest_exec(['sh', '-c', 'for f in "$1/.$2".qemu-vm-*.tmp "$1/.$2".qemu-vm-*.tmp/*; do '
                                     '[ -e "$f" ] && stat -c "%F %a %U %s" "$f" | sed "s/regular \\(empty \\)*file/file/"; done; true',
                                     'sh', directory, name])
    assert code == 0
    return [line.split() for line in out.decode().splitlines()]


def test_killed_put_leaves_a_private_temp_file_the_next_run_removes(vm, tmp_path):
    src = tmp_path / 'secret.bin'
    src.write_bytes(os.urandom(BIG))
    args = {'qga': vm.qga_path, 'path': '/tmp/secret.bin', 'src': str(src), 'mode': '0644', 'timeout': 300}
    run = start_module('qemu_guest_file', args)
    kill_when(run, lambda: module_read_past_start(run, str(src)))
    leftovers = guest_leftovers(vm, '/tmp', 'secret.bin')
    assert len(leftovers) == 2, leftovers
    # Mid-transfer (part of the content is in it) the file is readable by its owner only, in a private directory.
    assert leftovers[0][:3] == ['directory', '700', 'root'], leftovers
    kind, mode, owner, size = leftovers[1]
    assert (kind, mode, owner) == ('file', '600', 'root') and int(size) < BIG, leftovers
    assert vm.guest_exec(['test', '-e', '/tmp/secret.bin'])[0] != 0  # the target was never touched

    again = run_module('qemu_guest_file', {'qga': vm.qga_path, 'path': '/tmp/secret.bin', 'content': 'small',
                                           'mode': '0640'})
    assert again.changed and not again.failed, again['output']
    assert 'an interrupted earlier run left' in again['output']
    assert guest_leftovers(vm, '/tmp', 'secret.bin') == []
    code, out, _err = vm.guest_exec(['stat', '-c', '%a %s', '/tmp/secret.bin'])
    assert (code, out.decode().split()) == (0, ['640', '5'])


def test_killed_fetch_leaves_a_temp_file_the_next_run_removes(vm, tmp_path):
    code, _out, err = vm.guest_exec(['dd', 'if=/dev/urandom', 'of=/tmp/big.bin', 'bs=1M', f'count={BIG // MIB}'])
    assert code == 0, err
    dest = tmp_path / 'big.bin'
    pattern = str(tmp_path / '.big.bin.*.qemu-vm.tmp')

    def temp_has_data():
        return any(os.path.getsize(p) > 0 for p in glob.glob(pattern) if os.path.exists(p))
    run = start_module('qemu_guest_file', {'qga': vm.qga_path, 'path': '/tmp/big.bin', 'state': 'fetched',
                                           'dest': str(dest), 'timeout': 300})
    kill_when(run, temp_has_data)
    assert len(glob.glob(pattern)) == 1 and not dest.exists()

    again = run_module('qemu_guest_file', {'qga': vm.qga_path, 'path': '/tmp/big.bin', 'state': 'fetched',
                                           'dest': str(dest), 'timeout': 300})
    assert again.changed and not again.failed, again['output']
    assert 'an interrupted earlier run left' in again['output']
    assert glob.glob(pattern) == [] and dest.stat().st_size == BIG


def test_relative_dest_is_resolved_like_fetch(vm, tmp_path):
    assert vm.guest_exec(['sh', '-c', 'echo hello > /tmp/rel.txt'])[0] == 0
    workdir = tmp_path / 'adhoc'
    (workdir / 'out').mkdir(parents=True)
    result = run_module('qemu_guest_file', {'qga': vm.qga_path, 'path': '/tmp/rel.txt', 'state': 'fetched',
                                            'dest': 'out/rel.txt'}, cwd=str(workdir))
    assert result.changed and not result.failed, result['output']
    assert result['dest_path'] == str(workdir / 'out' / 'rel.txt')
    assert (workdir / 'out' / 'rel.txt').read_text() == 'hello\n'

    # In a playbook, relative to the playbook's directory, not to where ansible-playbook runs.
    playdir = tmp_path / 'play'
    (playdir / 'got').mkdir(parents=True)
    playbook = playdir / 'fetch.yml'
    playbook.write_text('''
- hosts: localhost
  gather_facts: false
  tasks:
    - qemu.vm.qemu_guest_file:
        qga: {}
        path: /tmp/rel.txt
        state: fetched
        dest: got/
      register: fetched
    - ansible.builtin.assert:
        that: fetched.dest_path == "{}"
'''.format(vm.qga_path, playdir / 'got' / 'rel.txt'))
    proc = run_playbook(str(playbook), cwd=str(workdir))
    assert proc.returncode == 0, proc.stdout
    assert (playdir / 'got' / 'rel.txt').read_text() == 'hello\n'
    assert not (workdir / 'got').exists()

    bad = run_module('qemu_guest_file', {'qga': vm.qga_path, 'path': '/tmp/x', 'src': 'rel/src',
                                         'remote_src': True})
    assert bad.failed and 'src rel/src is relative' in bad['msg'], bad['output']
