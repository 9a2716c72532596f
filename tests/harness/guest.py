"""Real-VM test harness: boot the tiny test guest under QEMU and observe it.

Stdlib only, Python 3.8+, no Ansible imports. The QMP/QGA helpers here talk to raw
sockets on purpose: they let tests observe the VM independently of the collection's
own transport code.

The guest itself is built by ``tests/guest/build-guest.sh`` (see ``ensure_guest``).

Sockets:
  * ``VM.qmp_path``          QMP monitor for the code under test.
  * ``VM.harness_qmp_path``  a second QMP monitor used only by the harness (``qmp()``,
                             ``stop()``), so the harness never queues behind a client of the
                             code under test (a QMP socket serves one client at a time).
  * ``VM.qga_path``          the guest agent (one client at a time: do not call
                             ``guest_exec``/``qga`` while the code under test holds it open).
"""

import base64
import collections
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_SCRIPT = os.path.join(REPO_ROOT, 'tests', 'guest', 'build-guest.sh')
QEMU_BINARY = os.environ.get('QEMU_VM_QEMU', 'qemu-system-x86_64')
QEMU_IMG = os.environ.get('QEMU_VM_QEMU_IMG', 'qemu-img')

# Unix socket paths are limited to 107 bytes; stay well below.
_MAX_SOCKET_PATH = 100

GuestImages = collections.namedtuple('GuestImages', 'kernel initrd data_disk cache_dir')

_guest_images = None
_guest_lock = threading.Lock()

# Every QEMU started by this process: pid -> Popen (kept so the process can be reaped).
_started = {}
_started_lock = threading.Lock()


class VMError(RuntimeError):
    """The VM failed to start, stop or answer in time."""


class QMPCommandError(RuntimeError):
    """A QMP or QGA command returned an error. ``error_class`` and ``desc`` come from QEMU."""

    def __init__(self, command, error_class, desc):
        super().__init__(f'{command} failed: {error_class}: {desc}')
        self.command = command
        self.error_class = error_class
        self.desc = desc


def ensure_guest():
    """Build (or reuse) the cached test guest and return its paths as ``GuestImages``.

    Runs build-guest.sh once per process; the script itself returns fast when cached.
    """
    global _guest_images
    with _guest_lock:
        if _guest_images is None:
            res = subprocess.run(['bash', BUILD_SCRIPT], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, check=False)
            if res.returncode != 0:
                raise VMError(f'build-guest.sh failed (rc={res.returncode}):\n{res.stdout}')
            cache_root = os.environ.get('QEMU_VM_CACHE') or os.path.join(REPO_ROOT, '.cache')
            cache_dir = os.path.join(os.path.abspath(cache_root), 'guest')
            images = GuestImages(
                kernel=os.path.join(cache_dir, 'vmlinuz'),
                initrd=os.path.join(cache_dir, 'initrd.img'),
                data_disk=os.path.join(cache_dir, 'data.qcow2'),
                cache_dir=cache_dir,
            )
            for path in images[:3]:
                if not os.path.isfile(path):
                    raise VMError(f'build-guest.sh did not produce {path}')
            _guest_images = images
        return _guest_images


def running_qemu_pids():
    """Pids of QEMU processes started by this process that are still alive."""
    with _started_lock:
        return {pid for pid, proc in _started.items() if proc.poll() is None}


def kill_leftover_qemu():
    """Kill (and reap) every QEMU started by this process that is still alive; return their pids."""
    killed = []
    with _started_lock:
        procs = list(_started.items())
    for pid, proc in procs:
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            killed.append(pid)
    return killed


# --------------------------------------------------------------------------- raw sockets

class _Stream:
    """A unix stream socket with line reading and an overall deadline."""

    def __init__(self, path, timeout):
        self.deadline = time.monotonic() + timeout
        self.buf = b''
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(max(0.1, timeout))
            self.sock.connect(path)
        except Exception:
            self.sock.close()
            raise

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if not isinstance(data, bytes):
            data = json.dumps(data).encode()
        self.sock.sendall(data)

    def _fill(self):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout('timed out')
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError('connection closed by peer')
        self.buf += chunk

    def skip_to(self, marker):
        """Discard input up to and including ``marker``."""
        while marker not in self.buf:
            self.buf = b''
            self._fill()
        self.buf = self.buf[self.buf.index(marker) + len(marker):]

    def read_line(self):
        while b'\n' not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b'\n', 1)
        return line

    def read_message(self):
        """Next JSON object (lines that are not JSON objects are skipped)."""
        while True:
            line = self.read_line().strip().lstrip(b'\xff')
            if not line:
                continue
            try:
                msg = json.loads(line.decode('utf-8', 'replace'))
            except ValueError:
                continue
            if isinstance(msg, dict):
                return msg

    def read_reply(self, msg_id):
        """Skip events and replies for other ids; return the reply carrying ``msg_id``."""
        while True:
            msg = self.read_message()
            if msg.get('id') == msg_id and ('return' in msg or 'error' in msg):
                return msg


def _new_id():
    return random.randint(1, 2 ** 62)


def _result(command, reply):
    if 'error' in reply:
        err = reply['error']
        raise QMPCommandError(command, err.get('class'), err.get('desc'))
    return reply.get('return')


def qmp_command(path, cmd, args=None, timeout=30.0):
    """One QMP command on a fresh connection: greeting, qmp_capabilities, execute."""
    with _Stream(path, timeout) as stream:
        greeting = stream.read_message()
        while 'event' in greeting and 'QMP' not in greeting:
            # QEMU can send a new client events ahead of the greeting (see _transport/sockets.py)
            greeting = stream.read_message()
        if 'QMP' not in greeting:
            raise VMError(f'unexpected QMP greeting: {greeting!r}')
        caps_id = _new_id()
        stream.send({'execute': 'qmp_capabilities', 'id': caps_id})
        _result('qmp_capabilities', stream.read_reply(caps_id))
        msg_id = _new_id()
        request = {'execute': cmd, 'id': msg_id}
        if args:
            request['arguments'] = args
        stream.send(request)
        return _result(cmd, stream.read_reply(msg_id))


def _qga_sync(stream):
    """guest-sync-delimited handshake: 0xFF flushes the agent's parser, match our id."""
    sync_id = _new_id()
    stream.send(b'\xff' + json.dumps({'execute': 'guest-sync-delimited',
                                      'arguments': {'id': sync_id}}).encode())
    while True:
        stream.skip_to(b'\xff')
        line = stream.read_line()
        try:
            msg = json.loads(line.decode('utf-8', 'replace'))
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get('return') == sync_id:
            return


def qga_command(path, cmd, args=None, timeout=30.0, expect_reply=True):
    """One guest agent command on a fresh connection (synced first)."""
    with _Stream(path, timeout) as stream:
        _qga_sync(stream)
        msg_id = _new_id()
        request = {'execute': cmd, 'id': msg_id}
        if args:
            request['arguments'] = args
        stream.send(request)
        if not expect_reply:
            return None
        return _result(cmd, stream.read_reply(msg_id))


def _tail(path, max_bytes=4000):
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode('utf-8', 'replace')
    except OSError as exc:
        return f'<{exc}>'


# --------------------------------------------------------------------------- VM

class VM:
    """One QEMU process running the tiny test guest.

    ``workdir`` holds disk0.qcow2 (overlay of the cached data disk), extra disks,
    console.log (guest serial console), qemu.log (QEMU stdout/stderr) and, when the path is
    short enough, the sockets. Disks are created at the first start() and kept, so a VM can
    be stopped and started again with its disk state. Extra ``disks`` are dicts: ``format``
    (qcow2 or raw), ``size``, ``readonly``, ``read_bps`` (reads of the disk throttled to that).
    """

    qmp_timeout = 30.0

    def __init__(self, workdir, agent=True, ga_block=(), disks=None, memory=256, nic=False,
                 extra_args=(), name=None, images=None, no_shutdown=True, python=False, without=(),
                 ignore_file_size_signal=False):
        self.workdir = os.path.abspath(str(workdir))
        os.makedirs(self.workdir, exist_ok=True)
        self.agent = bool(agent)
        self.ga_block = tuple(ga_block)
        # Programs the guest's init deletes before the agent starts (e.g. 'chpasswd').
        self.without = tuple(without)
        self.memory = int(memory)
        self.nic = bool(nic)
        self.extra_args = tuple(str(a) for a in extra_args)
        self.name = name
        # QEMU's default (False) is to exit when the guest powers off; -no-shutdown keeps it.
        self.no_shutdown = bool(no_shutdown)
        self.uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, 'qemu.vm-test:' + name)) if name else None
        self.images = images
        # python=True: attach the read-only python disk (build-guest.sh) and have the init
        # link it in, so /usr/bin/python3 exists in the guest (for real Ansible modules).
        self.python = bool(python)
        # QEMU starts with SIGXFSZ ignored (as Python has it), so a test can lower its RLIMIT_FSIZE
        # (resource.prlimit) and QEMU's writes past it fail with EFBIG instead of killing it.
        self.ignore_file_size_signal = bool(ignore_file_size_signal)
        self.proc = None
        self.boot_seconds = None  # QEMU launch -> agent answering (set by start())
        self._log = None

        self.console_log = os.path.join(self.workdir, 'console.log')
        self.qemu_log = os.path.join(self.workdir, 'qemu.log')
        if len(os.path.join(self.workdir, 'qmp-harness.sock')) <= _MAX_SOCKET_PATH:
            self.socket_dir = self.workdir
            self._own_socket_dir = False
        else:
            self.socket_dir = tempfile.mkdtemp(prefix='qvm')
            self._own_socket_dir = True
        self.qmp_path = os.path.join(self.socket_dir, 'qmp.sock')
        self.harness_qmp_path = os.path.join(self.socket_dir, 'qmp-harness.sock')
        self.qga_path = os.path.join(self.socket_dir, 'qga.sock')

        self.disks = [self._disk_entry(0, 'qcow2', None, False)]
        for spec in disks or ():
            spec = dict(spec)
            fmt = spec.pop('format', 'qcow2')
            size = spec.pop('size', '16M')
            readonly = bool(spec.pop('readonly', False))
            read_bps = spec.pop('read_bps', None)
            if spec:
                raise ValueError(f'unknown disk keys: {sorted(spec)}')
            if fmt not in ('qcow2', 'raw'):
                raise ValueError(f'disk format must be qcow2 or raw, not {fmt!r}')
            self.disks.append(self._disk_entry(len(self.disks), fmt, size, readonly))
            self.disks[-1]['read_bps'] = read_bps
        self.node_names = [d['node'] for d in self.disks]

    def _disk_entry(self, index, fmt, size, readonly):
        return {
            'node': f'disk{index}',
            'file_node': f'disk{index}-file',
            'device': 'vd' + chr(ord('a') + index),
            'path': os.path.join(self.workdir, f'disk{index}.{fmt}'),
            'format': fmt,
            'size': size,
            'readonly': readonly,
        }

    # -- properties -----------------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- setup --------------------------------------------------------------------

    def _create_disks(self):
        for disk in self.disks:
            if os.path.exists(disk['path']):
                continue
            if disk['node'] == 'disk0':
                cmd = [QEMU_IMG, 'create', '-q', '-f', 'qcow2', '-b', self.images.data_disk,
                       '-F', 'qcow2', disk['path']]
            else:
                cmd = [QEMU_IMG, 'create', '-q', '-f', disk['format'], disk['path'], disk['size']]
            res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, check=False)
            if res.returncode != 0:
                raise VMError('{} failed: {}'.format(' '.join(cmd), res.stdout))

    def kernel_append(self):
        words = ['console=ttyS0', 'quiet', 'panic=-1']
        if not self.agent:
            words.append('qemu_vm.noagent=1')
        if self.ga_block:
            words.append('qemu_vm.ga_block=' + ','.join(self.ga_block))
        if self.python:
            words.append('qemu_vm.python=1')
        if self.without:
            words.append('qemu_vm.without=' + ','.join(self.without))
        return ' '.join(words)

    def command(self):
        """The QEMU argv (needs ``self.images``)."""
        if self.images is None:
            self.images = ensure_guest()
        cmd = [
            QEMU_BINARY, '-machine', 'pc', '-accel', 'tcg', '-m', str(self.memory), '-smp', '1',
            '-nodefaults', '-no-user-config', '-display', 'none', '-vga', 'none',
            '-serial', 'file:' + self.console_log,
            '-kernel', self.images.kernel, '-initrd', self.images.initrd,
            '-append', self.kernel_append(),
            '-qmp', f'unix:{self.qmp_path},server=on,wait=off',
            '-chardev', f'socket,id=hmon0,path={self.harness_qmp_path},server=on,wait=off',
            '-mon', 'chardev=hmon0,mode=control',
            '-chardev', f'socket,path={self.qga_path},server=on,wait=off,id=qga0',
            '-device', 'virtio-serial-pci',
            '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0',
            '-global', 'PIIX4_PM.disable_s3=0',
        ]
        if self.no_shutdown:
            cmd.append('-no-shutdown')
        for disk in self.disks:
            file_opts = {'driver': 'file', 'filename': disk['path'], 'node-name': disk['file_node']}
            fmt_opts = {'driver': disk['format'], 'file': disk['file_node'], 'node-name': disk['node']}
            if disk['readonly']:
                file_opts['read-only'] = True
                fmt_opts['read-only'] = True
            if disk.get('read_bps'):
                # A throttle filter under the format node: everything that reads the disk (the
                # guest, a block job) reads at most read_bps bytes per second.
                group = disk['node'] + '-throttle'
                cmd += ['-object', 'throttle-group,id={},x-bps-read={}'.format(group, int(disk['read_bps'])),
                        '-blockdev', json.dumps(file_opts)]
                file_opts = {'driver': 'throttle', 'throttle-group': group, 'file': disk['file_node'],
                             'node-name': group}
                fmt_opts['file'] = group
            cmd += ['-blockdev', json.dumps(file_opts), '-blockdev', json.dumps(fmt_opts),
                    '-device', 'virtio-blk-pci,drive={},id={}'.format(disk['node'], disk['device'])]
        if self.python:
            # Shared by every VM, read-only; the init finds it by its label, not its device name.
            python_disk = os.path.join(self.images.cache_dir, 'python.qcow2')
            cmd += ['-blockdev', json.dumps({'driver': 'file', 'filename': python_disk, 'node-name': 'python-file',
                                             'read-only': True}),
                    '-blockdev', json.dumps({'driver': 'qcow2', 'file': 'python-file', 'node-name': 'python',
                                             'read-only': True}),
                    '-device', 'virtio-blk-pci,drive=python,id=python']
        if self.name:
            cmd += ['-name', self.name, '-uuid', self.uuid]
        if self.nic:
            cmd += ['-netdev', 'user,id=net0,restrict=on', '-device', 'virtio-net-pci,netdev=net0']
        cmd += list(self.extra_args)
        return cmd

    # -- lifecycle ------------------------------------------------------------------

    def start(self, wait_agent=None, timeout=60):
        """Launch QEMU; wait for QMP and (by default, when the agent is enabled) the agent."""
        if self.is_running():
            raise VMError(f'VM already running (pid {self.pid})')
        if wait_agent is None:
            wait_agent = self.agent
        if self.images is None:
            self.images = ensure_guest()
        os.makedirs(self.socket_dir, exist_ok=True)
        for path in (self.qmp_path, self.harness_qmp_path, self.qga_path):
            if os.path.exists(path):
                os.unlink(path)
        self._create_disks()
        cmd = self.command()
        self._log = open(self.qemu_log, 'ab')
        self._log.write(('+ {}\n'.format(' '.join(cmd))).encode())
        self._log.flush()
        started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=self.workdir,
                                     start_new_session=True, restore_signals=not self.ignore_file_size_signal)
        with _started_lock:
            _started[self.proc.pid] = self.proc
        deadline = started + timeout
        try:
            self._wait_qmp(deadline)
            if wait_agent:
                self.wait_agent(deadline - time.monotonic())
                self.boot_seconds = time.monotonic() - started
                self._log.write(f'+ guest agent answered {self.boot_seconds:.1f} s after launch\n'.encode())
                self._log.flush()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_qmp(self, deadline):
        last = None
        while True:
            self._check_alive()
            if os.path.exists(self.harness_qmp_path) and os.path.exists(self.qmp_path):
                try:
                    qmp_command(self.harness_qmp_path, 'query-status',
                                timeout=max(1.0, deadline - time.monotonic()))
                    return
                except (OSError, VMError) as exc:
                    last = exc
            if time.monotonic() > deadline:
                raise self._error(f'QMP did not answer in time ({last})')
            time.sleep(0.05)

    def wait_agent(self, timeout=60):
        """Wait until the guest agent answers guest-sync-delimited; return the seconds waited."""
        started = time.monotonic()
        deadline = started + max(0.0, timeout)
        last = None
        while True:
            self._check_alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._error(f'guest agent did not answer within {timeout:.0f} s ({last})')
            try:
                with _Stream(self.qga_path, min(remaining, 5.0)) as stream:
                    _qga_sync(stream)
                return time.monotonic() - started
            except (OSError, ValueError) as exc:
                last = exc
                time.sleep(0.1)

    def _check_alive(self):
        if self.proc is None:
            raise VMError('VM not started')
        if self.proc.poll() is not None:
            raise self._error(f'QEMU exited with status {self.proc.returncode}')

    def _error(self, message):
        return VMError(f'{message}\n--- {self.qemu_log} (tail) ---\n{_tail(self.qemu_log)}\n--- {self.console_log} (tail) ---\n{_tail(self.console_log)}')

    def stop(self, timeout=20):
        """Stop QEMU (QMP quit, then SIGTERM, then SIGKILL) and reap it. Idempotent."""
        proc = self.proc
        if proc is not None:
            if proc.poll() is None:
                try:
                    qmp_command(self.harness_qmp_path, 'quit', timeout=5)
                except (OSError, ValueError, RuntimeError):
                    pass
                try:
                    proc.wait(max(1, timeout / 2))
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(max(1, timeout / 4))
                    except subprocess.TimeoutExpired:
                        proc.kill()
            proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self):
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- observation helpers -----------------------------------------------------------

    def qmp(self, cmd, **args):
        """Run one QMP command on the harness monitor. Argument names are passed verbatim,
        so use ``vm.qmp('x', **{'node-name': 'disk0'})`` for dashed names.
        Returns the 'return' value; raises QMPCommandError on a QMP error."""
        return qmp_command(self.harness_qmp_path, cmd, args, timeout=self.qmp_timeout)

    def qga(self, cmd, args=None, timeout=30, expect_reply=True):
        """Run one guest agent command on a fresh, synced connection."""
        return qga_command(self.qga_path, cmd, args, timeout=timeout, expect_reply=expect_reply)

    def guest_exec(self, argv, timeout=30, input=None, env=None):
        """Run ``argv`` in the guest via guest-exec; return (exitcode, stdout, stderr).

        exitcode is negative (-signal) if the process was killed by a signal."""
        argv = [str(a) for a in argv]
        deadline = time.monotonic() + timeout
        args = {'path': argv[0], 'arg': argv[1:], 'capture-output': True}
        if input is not None:
            args['input-data'] = base64.b64encode(input).decode()
        if env is not None:
            args['env'] = ['{}={}'.format(*kv) for kv in sorted(env.items())]
        with _Stream(self.qga_path, timeout) as stream:
            _qga_sync(stream)
            msg_id = _new_id()
            stream.send({'execute': 'guest-exec', 'arguments': args, 'id': msg_id})
            pid = _result('guest-exec', stream.read_reply(msg_id))['pid']
            while True:
                msg_id = _new_id()
                stream.send({'execute': 'guest-exec-status', 'arguments': {'pid': pid},
                             'id': msg_id})
                status = _result('guest-exec-status', stream.read_reply(msg_id))
                if status.get('exited'):
                    break
                if time.monotonic() > deadline:
                    raise VMError(f'guest-exec {argv!r} did not finish within {timeout} s')
                time.sleep(0.05)
        out = base64.b64decode(status.get('out-data', ''))
        err = base64.b64decode(status.get('err-data', ''))
        if 'exitcode' in status:
            code = status['exitcode']
        else:
            code = -int(status.get('signal', 0))
        return code, out, err

    def status(self):
        """QMP query-status 'status' (e.g. 'running', 'shutdown', 'suspended')."""
        return self.qmp('query-status')['status']

    def wait_status(self, wanted, timeout=30):
        """Poll query-status until it reports ``wanted`` (str or collection); return it."""
        wanted_set = {wanted} if isinstance(wanted, str) else set(wanted)
        deadline = time.monotonic() + timeout
        while True:
            current = self.status()
            if current in wanted_set:
                return current
            if time.monotonic() > deadline:
                raise self._error(f'VM status is {current!r}, not {wanted!r} after {timeout} s')
            time.sleep(0.1)

    def console_text(self):
        try:
            with open(self.console_log, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def __repr__(self):
        return f'<VM {self.name or self.workdir} pid={self.pid}>'
