# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real OpenSSH servers for the tests that reach a "hypervisor" over SSH, and the user who does.

  SSHD(workdir, authorized_key)   Debian's /usr/sbin/sshd on 127.0.0.1 and a free port, with its own
                                  host key and sshd_config (no system sshd is touched); root may log
                                  in with `authorized_key` only. start() waits until it listens.
  ControllerUser()                a throwaway local user (useradd) with a home, an SSH client key and
                                  known_hosts, who runs ansible-playbook: they cannot open the VMs'
                                  sockets locally (the harness keeps them in root's 0700 directories),
                                  so a test passes only through SSH. close() ends their ssh master
                                  connections and removes them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid

SSHD_PROGRAM = '/usr/sbin/sshd'
SYSTEM_PYTHON = '/usr/bin/python3'


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def keygen(path, comment='qemu.vm-test'):
    """An ed25519 key pair at path and path.pub, without passphrase; the public key's text."""
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', str(path)],
                   check=True, capture_output=True, timeout=60)
    with open(f'{path}.pub', encoding='ascii') as handle:
        return handle.read().strip()


class SSHD:
    """One sshd instance (a "hypervisor") on 127.0.0.1."""

    def __init__(self, workdir, authorized_key, extra_config=()):
        self.extra_config = list(extra_config)
        self.workdir = str(workdir)
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)
        self.host_key = os.path.join(self.workdir, 'host_key')
        self.host_public_key = keygen(self.host_key, 'host')
        self.authorized_keys = os.path.join(self.workdir, 'authorized_keys')
        with open(self.authorized_keys, 'w', encoding='ascii') as handle:
            handle.write(authorized_key + '\n')
        os.chmod(self.authorized_keys, 0o600)
        self.config = os.path.join(self.workdir, 'sshd_config')
        self.log = os.path.join(self.workdir, 'sshd.log')
        self.port = None
        self.proc = None

    def _write_config(self):
        with open(self.config, 'w', encoding='ascii') as handle:
            handle.write('\n'.join([
                f'Port {self.port}',
                'ListenAddress 127.0.0.1',
                f'HostKey {self.host_key}',
                'PidFile none',
                f'AuthorizedKeysFile {self.authorized_keys}',
                'PubkeyAuthentication yes',
                'PasswordAuthentication no',
                'KbdInteractiveAuthentication no',
                'PermitRootLogin prohibit-password',
                'AllowUsers root',
                'UsePAM no',
                'StrictModes no',  # its files sit under /tmp, which is world-writable
                'MaxSessions 64',
                'MaxStartups 64',
                'LogLevel VERBOSE',
                'Subsystem sftp internal-sftp',
            ] + self.extra_config + ['']))

    def start(self, timeout=30):
        os.makedirs('/run/sshd', mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.port = _free_port()
        self._write_config()
        with open(self.log, 'wb') as log:
            self.proc = subprocess.Popen([SSHD_PROGRAM, '-D', '-e', '-f', self.config], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while b'Server listening on' not in self._log_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = self._log_text().decode(errors='replace')
                self.stop()
                raise RuntimeError(f'sshd did not start listening within {timeout} s: {text}')
            time.sleep(0.05)
        return self

    def _log_text(self):
        with open(self.log, 'rb') as handle:
            return handle.read()

    def known_hosts_line(self):
        return f'[127.0.0.1]:{self.port} {self.host_public_key}'

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
            self.proc = None


class ControllerUser:
    """A throwaway user with a home, a client key pair (~/.ssh/id_ed25519) and a known_hosts file."""

    def __init__(self):
        self.name = f'qvmctl{uuid.uuid4().hex[:8]}'
        self.base = tempfile.mkdtemp(prefix='qvmctl')
        os.chmod(self.base, 0o755)
        self.home = os.path.join(self.base, 'home')
        subprocess.run(['useradd', '--create-home', '--home-dir', self.home, '--shell', '/bin/sh', self.name],
                       check=True, capture_output=True, timeout=60)
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.ssh_dir = os.path.join(self.home, '.ssh')
        self.mkdir(self.ssh_dir, 0o700)
        self.key = os.path.join(self.ssh_dir, 'id_ed25519')
        self.public_key = keygen(self.key)
        for path in (self.key, self.key + '.pub'):
            os.chown(path, self.uid, self.gid)
        self.known_hosts = os.path.join(self.ssh_dir, 'known_hosts')
        self.write(self.known_hosts, '')

    def mkdir(self, path, mode=0o700):
        os.makedirs(path, mode=mode, exist_ok=True)
        os.chmod(path, mode)
        os.chown(path, self.uid, self.gid)
        return path

    def write(self, path, text, mode=0o600):
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write(text)
        os.chmod(path, mode)
        os.chown(path, self.uid, self.gid)
        return path

    def trust(self, *servers):
        """Add the servers' host keys to known_hosts."""
        with open(self.known_hosts, 'a', encoding='ascii') as handle:
            for server in servers:
                handle.write(server.known_hosts_line() + '\n')

    def ansible_argv(self, tool, *args):
        """argv running the Ansible command `tool` as this user can: the test venv's Python lives under
        root's home, closed to others, so Debian's python3 (the same 3.11) runs the venv's packages."""
        return [SYSTEM_PYTHON, os.path.join(os.path.dirname(sys.executable), tool)] + list(args)

    def env(self, base):
        """`base` (an ansible_env()) for this user: their HOME, the venv's packages, no runtime dir of root's."""
        env = dict(base, HOME=self.home, USER=self.name, LOGNAME=self.name, ANSIBLE_PYTHON_INTERPRETER=SYSTEM_PYTHON,
                   PYTHONPATH=sysconfig.get_paths()['purelib'])
        for name in ('XDG_RUNTIME_DIR', 'SSH_AUTH_SOCK', 'TMPDIR'):
            env.pop(name, None)
        return env

    def run(self, argv, env, timeout=600, merge_output=True):
        """Run argv as this user in their home; CompletedProcess with text output (stderr into stdout when merged)."""
        return subprocess.run(argv, user=self.uid, group=self.gid, extra_groups=[], env=env, cwd=self.home,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
                              text=True, timeout=timeout, check=False)

    def control_sockets(self):
        """Their ssh master connections' control sockets (qemu.vm keeps them in ~/.cache/qemu-vm/ssh,
        Ansible's ssh connection in ~/.ansible/cp)."""
        found = []
        for root in (os.path.join(self.home, '.cache', 'qemu-vm', 'ssh'), f'/run/user/{self.uid}/qemu-vm/ssh',
                     os.path.join(self.home, '.ansible', 'cp')):
            if os.path.isdir(root):
                found.extend(os.path.join(root, name) for name in sorted(os.listdir(root)))
        return found

    def close(self):
        for path in self.control_sockets():
            subprocess.run(['ssh', '-o', f'ControlPath={path}', '-O', 'exit', 'unused'], user=self.uid,
                           group=self.gid, extra_groups=[], capture_output=True, timeout=30, check=False)
        deadline = time.monotonic() + 30
        while self._processes() and time.monotonic() < deadline:
            time.sleep(0.1)  # the masters exit once asked
        for pid in self._processes():  # started by the tests as this user: none may outlive them
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while self._processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(self.base, ignore_errors=True)
        subprocess.run(['userdel', self.name], check=True, capture_output=True, timeout=60)

    def _processes(self):
        """Pids of the processes that run as this user."""
        pids = []
        for entry in os.listdir('/proc'):
            if entry.isdigit():
                try:
                    if os.stat(f'/proc/{entry}').st_uid == self.uid:
                        pids.append(int(entry))
                except OSError:
                    continue
        return pids
