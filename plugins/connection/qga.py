# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: qga
short_description: Run tasks inside a QEMU guest through its guest agent, without SSH or network
version_added: 0.2.0
description:
  - Runs every task of a play inside a QEMU guest by talking to the guest agent (qemu-ga) socket
    directly, the host side of the C(org.qemu.guest_agent.0) virtio-serial port. The guest needs no
    network, no SSH server and no management layer such as libvirt; it needs qemu-ga with C(guest-exec),
    C(guest-exec-status) and the C(guest-file-*) commands enabled, a POSIX shell, and Python for
    modules (or C(ansible.builtin.raw)).
  - Commands run through C(guest-exec), as the agent's user (normally root), with C(HOME=/root) and a
    standard C(PATH); module input goes through the agent's C(input-data), so pipelining works.
  - Files move with C(guest-file-read)/C(guest-file-write) in 1 MiB chunks (the agent is no faster with larger ones), streamed with bounded memory.
  - A fetched file is read up to the size the guest file has when the fetch begins (a file that grows meanwhile is cut
    there, with a warning), within C(timeout) plus a second per MiB, and only when that size fits in the free space
    of the destination's filesystem. A path with no size (a device such as C(/dev/zero), a pseudo file) is read up
    to 1 MiB and refused past it. Nothing is left behind when a fetch fails.
  - The fetched file is private (V(0600)) from its first byte and gets the guest file's permission bits, minus the
    controller's umask (as C(sftp) gives them), before it is renamed into place; V(0600) when the guest cannot tell
    them (C(guest-exec) or C(stat) missing).
  - Become works through Ansible's become plugins (C(su), C(sudo) where the guest has it) without a tty.
    The agent runs as root, so neither asks for a password; password prompts are not supported.
  - The host running this plugin must be able to open the agent socket (the hypervisor, or a controller
    with access to it), or, with O(qemu_host), reach the hypervisor with SSH. A task takes the collection's per-socket lock and connects at its first command or
    transfer, keeps that one session for the task's other commands and transfers (every new connection
    waits up to 0.1 s for qemu-ga to notice it), and lets go at the end of the task, so C(qemu.vm) modules
    delegated to the hypervisor can use the same socket between tasks. A command still running after
    2 seconds is polled on a fresh connection every half second, so other clients of the socket get their
    turn while it runs.
  - "Over SSH (O(qemu_host)): O(qga) is a path on the hypervisor, reached through the system's OpenSSH client.
    Each session runs a small relay on the hypervisor with its C(python3) (shipped in the command line; nothing
    is installed and nothing stays running): it takes the per-socket lock there, the lock C(qemu.vm) modules
    running there take, connects to the socket and moves bytes until the session ends. C(ssh) reads
    C(~/.ssh/config) and checks host keys as configured there (an unknown key is refused: add it to
    C(known_hosts) first), never prompts (C(BatchMode=yes)), and by default shares one master connection
    across tasks (C(ControlPersist)), with its control socket in a private directory of the user
    (C(/run/qemu-vm/ssh) for root). Errors name the hypervisor: unreachable, authentication refused, unknown
    host key, no C(python3), the socket missing or not permitted there, the connection lost."
author:
  - qemu.vm maintainers (@qemu-vm)
extends_documentation_fragment:
  - ansible.builtin.connection_pipelining
options:
  qga:
    description:
      - The guest agent socket of the VM, as given to QEMU with C(-chardev socket,path=...,server=on,wait=off).
      - A unix socket path, or C(host:port) (C([v6addr]:port) for IPv6).
    type: str
    required: true
    vars:
      - name: ansible_qemu_qga
    env:
      - name: ANSIBLE_QEMU_QGA
  timeout:
    description:
      - Seconds, the bound on connecting, waiting for the socket lock, the agent handshake, and each agent
        reply. File transfers get one more second per MiB moved.
      - It does not bound how long a command runs; use the task keyword C(timeout) for that (the command
        is then killed in the guest).
      - Over SSH (O(qemu_host)), connecting to the hypervisor gets this bound too (C(ConnectTimeout)), before the
        one on the lock and the socket there.
    type: float
    default: 30
    vars:
      - name: ansible_qemu_qga_timeout
    env:
      - name: ANSIBLE_QEMU_QGA_TIMEOUT
  qemu_host:
    description:
      - The hypervisor on which O(qga) is, reached with SSH; by default the socket is on the controller.
      - A host name or address as C(ssh) takes it (a C(Host) alias of C(~/.ssh/config) works).
    type: str
    version_added: 0.3.0
    vars:
      - name: ansible_qemu_host
    env:
      - name: ANSIBLE_QEMU_HOST
  qemu_host_user:
    description: The user to log in as on O(qemu_host); by default C(ssh)'s (C(~/.ssh/config), else the local user).
    type: str
    version_added: 0.3.0
    vars:
      - name: ansible_qemu_host_user
    env:
      - name: ANSIBLE_QEMU_HOST_USER
  qemu_host_port:
    description: The SSH port of O(qemu_host); by default C(ssh)'s.
    type: int
    version_added: 0.3.0
    vars:
      - name: ansible_qemu_host_port
    env:
      - name: ANSIBLE_QEMU_HOST_PORT
  qemu_host_private_key_file:
    description: The private key to log in to O(qemu_host) with (C(ssh -i)); a key with a passphrase must be in an C(ssh-agent).
    type: path
    version_added: 0.3.0
    vars:
      - name: ansible_qemu_host_private_key_file
    env:
      - name: ANSIBLE_QEMU_HOST_PRIVATE_KEY_FILE
  qemu_host_ssh_args:
    description:
      - Arguments given to C(ssh) before the ones the plugin sets (C(ControlPath) unless given here, C(BatchMode=yes),
        C(ConnectTimeout) from O(timeout), and the port, user and key above).
      - The default shares one SSH connection across tasks for 60 seconds after the last one, as Ansible's C(ssh)
        connection does.
    type: str
    default: -o ControlMaster=auto -o ControlPersist=60s
    version_added: 0.3.0
    vars:
      - name: ansible_qemu_host_ssh_args
    env:
      - name: ANSIBLE_QEMU_HOST_SSH_ARGS
requirements:
  - The C(qemu.qmp) Python library, version 0.0.6 exactly (C(qemu.qmp==0.0.6)), in the Python that runs Ansible
    on the controller (the plugin runs there, not on the hypervisor). The collection overrides private parts of
    it, so it pins the version it was tested with; another version works with a warning.
notes:
  - Windows guests are not supported (yet); the plugin runs commands through C(/bin/sh).
  - Command output comes back when the command ends and is capped by the agent (16 MiB per stream on qemu-ga 7.2).
  - Errors name the cause - a missing socket, an agent that does not answer, C(guest-exec) or C(guest-file-*)
    blocked by the agent configuration (qemu-ga C(--block-rpcs)/C(--allow-rpcs)), or frozen guest filesystems.
seealso:
  - module: qemu.vm.qemu_guest_exec
  - module: qemu.vm.qemu_guest_file
'''

EXAMPLES = r'''
# inventory.yml
# all:
#   hosts:
#     web1:
#       ansible_connection: qemu.vm.qga
#       ansible_qemu_qga: /run/qemu/web1/qga.sock
#       ansible_python_interpreter: /usr/bin/python3
#       ansible_pipelining: true

- name: Configure a guest that has no network
  hosts: web1
  tasks:
    - name: Copy a file in
      ansible.builtin.copy:
        src: app.conf
        dest: /etc/app.conf
        mode: '0644'

# The same guest from a laptop or a bastion: the socket is on the hypervisor hv1, reached with SSH.
# inventory.yml
# all:
#   hosts:
#     web1:
#       ansible_connection: qemu.vm.qga
#       ansible_qemu_host: hv1.example.com
#       ansible_qemu_host_user: root
#       ansible_qemu_qga: /run/qemu/web1/qga.sock
#       ansible_python_interpreter: /usr/bin/python3
'''

import contextlib
import os
import time

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError
from ansible_collections.qemu.vm.plugins.module_utils._guest.session import AgentSession
from ansible_collections.qemu.vm.plugins.module_utils._guest.process import FIRST_POLL, GuestExec
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.files import guest_file_mode
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.local import fetched_mode
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.transfer import fetch_file, put_file
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import QMP_IMPORT_ERROR, Deadline, parse_address, qmp_version_warning
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import wait_until
from ansible_collections.qemu.vm.plugins.plugin_utils._errors import connection_error
from ansible_collections.qemu.vm.plugins.plugin_utils._remote.ssh import RelayConnector, SSHHost

display = Display()

GUEST_ENV = {
    'HOME': '/root',
    'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'SHELL': '/bin/sh',
    'USER': 'root',
    'LOGNAME': 'root',
}
#: Poll a running command on one session this long, at most this far apart ...
HOLD_SECONDS = 2.0
MAX_POLL = 0.1
#: ... then reconnect for each poll, this far apart, letting other clients use the socket between.
LONG_POLL = 0.5


class Connection(ConnectionBase):
    """Tasks inside a QEMU guest, through its guest agent socket."""

    transport = 'qemu.vm.qga'
    has_pipelining = True
    has_tty = False

    def __init__(self, play_context, new_stdin, *args, **kwargs):
        super().__init__(play_context, new_stdin, *args, **kwargs)
        self._address = None
        self._hypervisor = None
        self._held_session = None

    def _connect(self):
        if QMP_IMPORT_ERROR is not None:
            raise AnsibleError('qemu.vm.qga needs the qemu.qmp Python library on the controller, in the Python '
                               f'that runs Ansible (pip install qemu.qmp==0.0.6):\n{QMP_IMPORT_ERROR}')
        if not self._connected and qmp_version_warning():
            display.warning('qemu.vm.qga: ' + qmp_version_warning())
        if not self._connected:
            address = self.get_option('qga')
            if not address:
                raise AnsibleConnectionFailure('qemu.vm.qga: set ansible_qemu_qga (or ANSIBLE_QEMU_QGA) to the '
                                               'guest agent socket of the VM')
            try:
                self._address = parse_address(address)
            except ValueError as exc:
                raise AnsibleConnectionFailure(f'qemu.vm.qga: ansible_qemu_qga {address!r}: {exc}')
            self._hypervisor = self._ssh_host()
            via = f'{self._hypervisor.shown}:{address} over SSH' if self._hypervisor else address
            display.vvv(f'QGA CONNECTION via {via}', host=self._play_context.remote_addr)
            self._connected = True
        return self

    def _ssh_host(self):
        """The hypervisor to reach over SSH (qemu_host), or None for a socket on this host."""
        host = self.get_option('qemu_host')
        if not host:
            return None
        port = self.get_option('qemu_host_port')
        if port is not None and not 0 < port < 65536:
            raise AnsibleConnectionFailure(f'qemu.vm.qga: ansible_qemu_host_port {port} is not a port number')
        return SSHHost(host, user=self.get_option('qemu_host_user'), port=port,
                       private_key_file=self.get_option('qemu_host_private_key_file'),
                       ssh_args=self.get_option('qemu_host_ssh_args') or '')

    def _session(self):
        # Opening it first thaws a freeze an interrupted quiesced run of ours left.
        if not self._connected:
            self._connect()
        connector = RelayConnector(self._hypervisor, self.get_option('qga')) if self._hypervisor else None
        return AgentSession(self.get_option('qga'), timeout=float(self.get_option('timeout')), connector=connector)

    @contextlib.contextmanager
    def _held(self):
        """The task's session: opened at its first use, kept for the task's next commands and transfers
        (qemu-ga polls a host side with no client only every 0.1 s, so each new connection waits up to
        that long), closed by close() at the end of the task, or at once after an error."""
        if self._held_session is None:
            session = self._session()
            session.open()
            self._held_session = session
        try:
            yield self._held_session
        except BaseException:
            self._let_go()
            raise

    def _let_go(self):
        session, self._held_session = self._held_session, None
        if session is not None:
            session.close()

    def exec_command(self, cmd, in_data=None, sudoable=True):
        """Run cmd with /bin/sh -c through guest-exec; in_data becomes the agent's input-data."""
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        argv = ['/bin/sh', '-c', to_text(cmd, errors='surrogate_or_strict')]
        display.vvv('EXEC {0}{1}'.format(argv, f', with {len(in_data)} bytes of stdin' if in_data else ''),
                    host=self._play_context.remote_addr)
        started = time.monotonic()
        try:
            result = self._run(argv, None if in_data is None else to_bytes(in_data))
        except QemuVMError as exc:
            raise connection_error(self.transport, exc)
        for name in ('stdout', 'stderr'):
            if getattr(result, name + '_truncated'):
                display.warning(f'qemu.vm.qga: the guest agent truncated the {name} of a command at its cap')
        display.vvvv(f'EXEC rc={result.rc} in {time.monotonic() - started:.3f} s',
                     host=self._play_context.remote_addr)
        return result.rc, result.stdout, result.stderr

    def _run(self, argv, stdin):
        """Start argv and wait for it: on one session for HOLD_SECONDS, then one session per poll,
        so that other clients of the socket (qemu.vm modules) get their turn during long commands."""
        pid = None
        try:
            with self._held() as qga:
                runner = GuestExec(qga)
                pid = runner.start(argv, env=GUEST_ENV, stdin=stdin)
                result = wait_until(lambda: runner.status(pid), Deadline(HOLD_SECONDS), 'guest command',
                                    interval=FIRST_POLL, max_interval=MAX_POLL, default=None)
            if result is None:
                self._let_go()
                result = wait_until(lambda: self._status(pid), _Forever(), 'guest command', interval=LONG_POLL)
            pid = None
            return result
        finally:
            if pid is not None:
                # Interrupted (the task keyword timeout, an error): do not leave it running in the guest.
                self._kill_quietly(pid)

    def _status(self, pid):
        with self._session() as qga:
            return GuestExec(qga).status(pid)

    def _kill_quietly(self, pid):
        self._let_go()  # the lock is not re-entrant: a fresh session needs the held one gone
        try:
            with self._session() as qga:
                GuestExec(qga).kill(pid)
        except QemuVMError:
            pass

    @staticmethod
    def _guest_path(path):
        path = to_text(path, errors='surrogate_or_strict')
        return path if path.startswith('/') else '/' + path

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        out_path = self._guest_path(out_path)
        display.vvv(f'PUT {in_path} TO {out_path}', host=self._play_context.remote_addr)
        local = to_bytes(in_path, errors='surrogate_or_strict')
        if not os.path.isfile(local):
            raise AnsibleFileNotFound(f'file or module does not exist: {to_native(in_path)}')
        started = time.monotonic()
        try:
            with self._held() as qga:
                digest, size = put_file(qga, local, out_path)
        except QemuVMError as exc:
            raise connection_error(self.transport, exc)
        display.vvvv(f'PUT {size} bytes in {time.monotonic() - started:.3f} s, sha256 {digest}',
                     host=self._play_context.remote_addr)

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        in_path = self._guest_path(in_path)
        display.vvv(f'FETCH {in_path} TO {out_path}', host=self._play_context.remote_addr)
        started = time.monotonic()
        try:
            with self._held() as qga:
                mode = fetched_mode(guest_file_mode(qga, in_path))
                digest, size = fetch_file(qga, in_path, to_bytes(out_path, errors='surrogate_or_strict'), mode=mode,
                                          warn=lambda text: display.warning(f'qemu.vm.qga: {text}'))
        except QemuVMError as exc:
            raise connection_error(self.transport, exc, missing_file=True)
        display.vvvv(f'FETCH {size} bytes in {time.monotonic() - started:.3f} s, sha256 {digest}',
                     host=self._play_context.remote_addr)

    def reset(self):
        """Nothing is kept open between commands: forget the address, the next command starts afresh."""
        self.close()

    def close(self):
        self._let_go()
        self._connected = False
        self._address = None
        self._hypervisor = None


class _Forever(Deadline):
    """A deadline that never expires: a command runs as long as it runs (the task keyword timeout bounds it)."""

    def __init__(self):
        super().__init__(0)

    def remaining(self):
        return LONG_POLL

    @property
    def expired(self):
        return False
