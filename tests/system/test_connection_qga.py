# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The qemu.vm.qga connection plugin: whole playbooks inside the tiny guest (with its python disk).

Checked independently through the harness' own guest-exec: the copied file's SHA-256
and mode in the guest, the fetched file byte for byte on this side.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest

from harness.ansible import BIN, ansible_env, run_module, run_playbook
from harness.guest import VM

MIB = 1024 * 1024

PLAY = '''
- hosts: guest
  gather_facts: true
  tasks:
    - name: Facts come from the guest
      ansible.builtin.assert:
        that:
          - ansible_facts.hostname == 'qemuvm-guest'
          - ansible_facts.python.version.major == 3

    - name: A directory for this run
      ansible.builtin.file:
        path: "{{ guest_dir }}"
        state: directory
        mode: '0755'

    - name: Copy the 8 MiB binary file in
      ansible.builtin.copy:
        src: "{{ blob }}"
        dest: "{{ guest_dir }}/blob.bin"
        mode: '0640'

    - name: Edit a file
      ansible.builtin.lineinfile:
        path: "{{ guest_dir }}/settings.conf"
        line: answer = 42
        create: true
        mode: '0644'

    - name: Run a command
      ansible.builtin.command: grep -c answer {{ guest_dir }}/settings.conf
      register: counted
      changed_when: false

    - name: A failing command reports its rc
      ansible.builtin.command: sh -c 'echo nope >&2; exit 7'
      register: failing
      failed_when: false
      changed_when: false

    - name: Check the command results
      ansible.builtin.assert:
        that:
          - counted.rc == 0
          - counted.stdout == '1'
          - failing.rc == 7
          - failing.stderr == 'nope'

    - name: Fetch the file back
      ansible.builtin.fetch:
        src: "{{ guest_dir }}/blob.bin"
        dest: "{{ fetched }}"
        flat: true

    - name: Become nobody through su
      ansible.builtin.command: id -un
      become: true
      become_method: ansible.builtin.su
      become_user: nobody
      become_flags: -s /bin/sh
      register: who
      changed_when: false

    - name: Check who ran it
      ansible.builtin.assert:
        that:
          - who.stdout == 'nobody'
'''


@pytest.fixture(scope='module')
def python_vm(guest_images, tmp_path_factory):
    machine = VM(tmp_path_factory.mktemp('qga-conn'), images=guest_images, python=True)
    machine.start()
    yield machine
    machine.stop()


def inventory(tmp_path, vm):
    path = tmp_path / 'inventory.ini'
    path.write_text(f'guest ansible_connection=qemu.vm.qga ansible_qemu_qga={vm.qga_path} '
                    'ansible_python_interpreter=/usr/bin/python3\n')
    return str(path)


def sha256_of(path):
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.mark.parametrize('pipelining', [False, True], ids=['pipelining-off', 'pipelining-on'])
def test_playbook_in_the_guest(python_vm, tmp_path, pipelining):
    blob = tmp_path / 'blob.bin'
    data = os.urandom(8 * MIB)
    blob.write_bytes(data)
    fetched = tmp_path / 'fetched.bin'
    guest_dir = '/tmp/play-{0}'.format('on' if pipelining else 'off')
    proc = run_playbook(PLAY, extra_vars={'blob': str(blob), 'fetched': str(fetched), 'guest_dir': guest_dir},
                        args=['-i', inventory(tmp_path, python_vm)],
                        env={'ANSIBLE_PIPELINING': str(pipelining)})
    assert proc.returncode == 0, proc.stdout
    assert 'failed=0' in proc.stdout and 'unreachable=0' in proc.stdout
    assert 'Traceback' not in proc.stdout

    code, out, err = python_vm.guest_exec(['sh', '-c', 'sha256sum "$0"; stat -c %a "$0"',
                                           guest_dir + '/blob.bin'], timeout=120)
    assert code == 0, err
    digest, mode = out.decode().split()[0], out.decode().split()[-1]
    assert digest == hashlib.sha256(data).hexdigest()
    assert mode == '640'
    assert sha256_of(str(fetched)) == hashlib.sha256(data).hexdigest()
    assert fetched.read_bytes() == data
    # The fetched copy has the guest file's mode (0640) minus our umask, as sftp gives it.
    umask = os.umask(0o022)
    os.umask(umask)
    assert fetched.stat().st_mode & 0o777 == 0o640 & ~umask


def test_blocked_guest_exec_names_it(vm_factory, tmp_path):
    vm = vm_factory(ga_block=['guest-exec'])
    play = '''
- hosts: guest
  gather_facts: false
  tasks:
    - name: Anything that runs a command
      ansible.builtin.raw: "true"
'''
    proc = run_playbook(play, args=['-i', inventory(tmp_path, vm)])
    assert proc.returncode != 0
    assert 'guest-exec is blocked by the guest agent configuration' in proc.stdout, proc.stdout
    assert '--block-rpcs' in proc.stdout
    assert 'Traceback' not in proc.stdout


def test_modules_use_the_socket_while_a_long_command_runs(python_vm, tmp_path):
    """The plugin lets go of the socket while a long command runs, so a qemu.vm module gets in."""
    play = '''
- hosts: guest
  gather_facts: false
  tasks:
    - name: A long command
      ansible.builtin.raw: sleep 17
'''
    path = tmp_path / 'long.yml'
    path.write_text(play)
    cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', inventory(tmp_path, python_vm), str(path)]
    proc = subprocess.Popen(cmd, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            result = run_module('qemu_guest_exec', {'qga': python_vm.qga_path,
                                                    'cmd': 'cat /proc/[0-9]*/cmdline | tr "\\\\0" " "'})
            assert not result.failed, result
            if 'sleep 17' in result['stdout']:
                break
            assert time.monotonic() < deadline, 'the long command never showed up in the guest'
        # The module saw the command running: it used the socket while the playbook's command ran.
        assert proc.poll() is None
    finally:
        out, _err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out


def test_blocked_file_commands_are_named(vm_factory, tmp_path):
    vm = vm_factory(ga_block=['guest-file-open'], python=True)
    play = '''
- hosts: guest
  gather_facts: false
  tasks:
    - name: Fetch needs guest-file-open
      ansible.builtin.fetch:
        src: /etc/hostname
        dest: "{{ dest }}"
        flat: true
'''
    proc = run_playbook(play, extra_vars={'dest': str(tmp_path / 'hostname')},
                        args=['-i', inventory(tmp_path, vm)], env={'ANSIBLE_PIPELINING': 'True'})
    assert proc.returncode != 0
    assert 'guest-file-open is blocked by the guest agent configuration' in proc.stdout, proc.stdout
    assert '--allow-rpcs' in proc.stdout
    assert 'Traceback' not in proc.stdout
    assert not (tmp_path / 'hostname').exists()
