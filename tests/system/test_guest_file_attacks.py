# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A guest user against qemu_guest_file and the qemu.vm.qga connection, both running as root.

alice (uid 1000 in the test guest) owns her home; she plants links at the paths the tasks
use, or swaps one while a task works, acting as herself (busybox su). What her links point
to is a root-only file (/etc/qvm-secret, standing in for /etc/shadow) or /dev/zero. Every
outcome is observed through the harness' own guest-exec, never through the module.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import time

import pytest

from harness.ansible import run_module, run_playbook
from harness.runs import module_pids, start_module

MIB = 1024 * 1024
SECRET = 'root:$6$not-for-alice$hash:20000:0:99999:7:::\n'
SECRET_PATH = '/etc/qvm-secret'


def as_root(vm, script):
    code, out, err = vm.guest_exec(['sh', '-c', script])
    assert code == 0, (script, err)
    return out.decode()


def as_alice(vm, script):
    return as_root(vm, 'su alice -s /bin/sh -c ' + shlex.quote(script))


def secret_state(vm):
    """The secret's bytes (hash), mode, owner and inode: all must stay as they are."""
    return as_root(vm, f'sha256sum {SECRET_PATH}; stat -c "%a %U %G %i %h" {SECRET_PATH}')


def kind(vm, path):
    return as_root(vm, f'stat -c "%F %U %a" {shlex.quote(path)}').strip()


def leftovers(vm, directory):
    return as_root(vm, f'ls -a {directory}').split()


@pytest.fixture
def alice(vm):
    """alice's home is hers, as on any system; the root-only secret exists."""
    as_root(vm, f'chown alice:alice /home/alice && printf %s {shlex.quote(SECRET)} > {SECRET_PATH} && chmod 0600 {SECRET_PATH}')
    return vm


# -- qemu_guest_file state=present ------------------------------------------------------------------


def test_a_link_at_the_path_is_replaced_never_followed(alice, tmp_path):
    """~alice/.profile -> the secret, and the task gives .profile to alice: the secret stays root's and
    byte-identical, .profile becomes her regular file."""
    vm = alice
    as_alice(vm, f'ln -s {SECRET_PATH} /home/alice/.profile')
    before = secret_state(vm)
    result = run_module('qemu_guest_file', {'qga': vm.qga_path, 'path': '/home/alice/.profile', 'content': 'export PS1=ok\n',
                                            'owner': 'alice', 'mode': '0644'})
    assert result.changed and not result.failed, result['output']
    assert result['compared_by'] == 'link' and 'guest_target' not in result
    assert secret_state(vm) == before
    assert kind(vm, '/home/alice/.profile') == 'regular file alice 644'
    assert as_root(vm, 'cat /home/alice/.profile') == 'export PS1=ok\n'
    assert leftovers(vm, '/home/alice') == ['.', '..', '.profile']


def test_a_hard_link_to_the_secret_is_replaced_not_changed(alice):
    """Where the guest allows links to others' files (fs.protected_hardlinks=0), alice links the secret
    into her home; a task that only changes owner and mode (the content is the same) must not touch it."""
    vm = alice
    as_root(vm, 'echo 0 > /proc/sys/fs/protected_hardlinks')
    as_alice(vm, f'ln {SECRET_PATH} /home/alice/notes')
    before = secret_state(vm)
    assert before.split()[-1] == '2'  # two names now
    result = run_module('qemu_guest_file', {'qga': vm.qga_path, 'path': '/home/alice/notes', 'content': SECRET,
                                            'owner': 'alice', 'mode': '0644'})
    assert result.changed and not result.failed, result['output']
    assert result['compared_by'] == 'sha256sum' and result['atomic'] is True
    assert secret_state(vm).rsplit(' ', 1)[0] == before.rsplit(' ', 1)[0]  # bytes, mode, owner, inode (one name less)
    assert kind(vm, '/home/alice/notes') == 'regular file alice 644'


def _result(proc):
    out = proc.stdout.read().decode()
    proc.stdout.close()
    marker = out.find(' => ')
    assert marker >= 0, out
    body = json.JSONDecoder().raw_decode(out[marker + 4:].lstrip())[0]
    body['failed'] = 'FAILED!' in out[:marker].rsplit('\n', 1)[-1]
    return body


def test_a_path_swapped_while_the_content_is_written_is_left_alone(alice, tmp_path):
    """alice replaces .profile by a link to the secret while the task writes its new content.

    The swap is made deterministic: a root watcher in the guest waits for the task's private
    directory, then alice swaps the link in and the watcher says so on the serial console; the
    module process is held (SIGSTOP) from the moment it is provably mid-transfer until the
    console shows the swap, so the task's last check runs after it.
    """
    vm = alice
    as_alice(vm, 'printf old > /home/alice/.profile')
    before = secret_state(vm)
    swap = shlex.quote(f'rm -f /home/alice/.profile && ln -s {SECRET_PATH} /home/alice/.profile')
    watcher = ('i=0; while [ $i -lt 6000 ]; do for d in /home/alice/..profile.qemu-vm-*.tmp; do if [ -d "$d" ]; then '
               f'su alice -s /bin/sh -c {swap} && echo QVM-SWAPPED > /dev/console; exit 0; fi; done; '
               'usleep 10000; i=$((i+1)); done')
    as_root(vm, f'setsid sh -c {shlex.quote(watcher)} </dev/null >/dev/null 2>&1 &')
    src = tmp_path / 'profile.bin'
    src.write_bytes(os.urandom(16 * MIB))
    run = start_module('qemu_guest_file', {'qga': vm.qga_path, 'path': '/home/alice/.profile', 'src': str(src),
                                           'owner': 'alice', 'mode': '0644', 'timeout': 120})
    held = []
    try:
        deadline = time.monotonic() + 120
        while not held:  # mid-transfer: the module has read src past its start (its private file exists by then)
            for pid in module_pids(run):
                if 0 < _position(pid, str(src)):
                    os.kill(pid, signal.SIGSTOP)
                    held.append(pid)
                    # Held before its last chunk: the rename (and the check before it) is still to come.
                    assert _position(pid, str(src)) < 16 * MIB
            assert run.poll() is None and time.monotonic() < deadline, 'the run never got mid-transfer'
            time.sleep(0.01)
        while 'QVM-SWAPPED' not in vm.console_text():
            assert time.monotonic() < deadline, 'the watcher never swapped the link in'
            time.sleep(0.05)
    finally:
        for pid in held:
            os.kill(pid, signal.SIGCONT)
    run.wait(timeout=300)
    result = _result(run)
    assert result['failed'] and result['error_type'] == 'GuestFileChangedError', result
    assert '/home/alice/.profile' in result['msg'] and 'left as it is' in result['msg']
    assert as_root(vm, 'readlink /home/alice/.profile').strip() == SECRET_PATH  # her link, as she left it
    assert secret_state(vm) == before
    assert leftovers(vm, '/home/alice') == ['.', '..', '.profile']


def _position(pid, path):
    """How far the process `pid` has read the file `path` it holds open (0 when it does not hold it)."""
    try:
        descriptors = os.listdir(f'/proc/{pid}/fd')
    except OSError:
        return 0
    for fd in descriptors:
        try:
            if os.readlink(f'/proc/{pid}/fd/{fd}') == path:
                with open(f'/proc/{pid}/fdinfo/{fd}') as info:
                    return int(info.readline().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return 0


# -- reads: qemu_guest_file state=fetched and the connection's fetch_file ----------------------------


def test_fetching_a_link_to_dev_zero_stops_at_its_bound_and_leaves_nothing(alice, tmp_path):
    vm = alice
    as_alice(vm, 'ln -s /dev/zero /home/alice/app.log')
    out = tmp_path / 'out'
    out.mkdir()
    args = {'qga': vm.qga_path, 'path': '/home/alice/app.log', 'state': 'fetched', 'dest': str(out / 'app.log')}
    result = run_module('qemu_guest_file', args)
    assert result.failed and result['error_type'] == 'GuestFileTooLargeError', result['output']
    assert result['size_limit'] == MIB and 'reports no size' in result['msg']
    bounded = run_module('qemu_guest_file', dict(args, max_size='64K'))
    assert bounded.failed and bounded['size_limit'] == 64 * 1024, bounded['output']
    assert os.listdir(str(out)) == []


ACTION = '''
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """Fetch with the connection plugin's fetch_file alone (ansible.builtin.fetch would stat and slurp first)."""

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        self._connection.fetch_file(self._task.args['src'], self._task.args['dest'])
        return result
'''

PLAY = '''
- hosts: guest
  gather_facts: false
  tasks:
    - name: A link to /dev/zero
      qvm_fetch_file:
        src: /home/alice/app.log
        dest: "{{ out }}/zero"
      register: zero
      ignore_errors: true

    - name: The root-only secret and a public file
      qvm_fetch_file:
        src: "{{ item.src }}"
        dest: "{{ out }}/{{ item.name }}"
      loop:
        - {src: /etc/qvm-secret, name: secret}
        - {src: /data/hello.txt, name: hello}

    - name: Show
      ansible.builtin.debug:
        msg: "ZERO {{ zero.failed }} {{ zero.msg }}"
'''


def test_the_connection_fetch_is_bounded_and_keeps_the_guest_mode(alice, tmp_path):
    vm = alice
    as_alice(vm, 'ln -s /dev/zero /home/alice/app.log')
    plugins = tmp_path / 'action_plugins'
    plugins.mkdir()
    (plugins / 'qvm_fetch_file.py').write_text(ACTION)
    out = tmp_path / 'out'
    out.mkdir()
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text(f'guest ansible_connection=qemu.vm.qga ansible_qemu_qga={vm.qga_path}\n')
    proc = run_playbook(PLAY, extra_vars={'out': str(out)}, args=['-i', str(inventory)],
                        env={'ANSIBLE_ACTION_PLUGINS': str(plugins)})
    assert proc.returncode == 0, proc.stdout
    assert 'ZERO True ' in proc.stdout and 'qemu.vm.qga: /home/alice/app.log reports no size' in proc.stdout, proc.stdout
    assert 'Traceback' not in proc.stdout
    assert sorted(os.listdir(str(out))) == ['hello', 'secret']  # nothing of /dev/zero, no temporary file
    umask = os.umask(0o022)
    os.umask(umask)
    assert (out / 'secret').read_text() == SECRET and (out / 'secret').stat().st_mode & 0o777 == 0o600
    assert (out / 'hello').stat().st_mode & 0o777 == 0o644 & ~umask
