# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measuring instruments for bench/run.py (stdlib only; no Ansible imports).

* `AgentTap`: a relay between a client and the guest agent socket that timestamps the
  agent's replies to guest-fsfreeze-freeze and guest-fsfreeze-thaw. Every freeze window
  in figure 1 (the role, the naive play, the floor script) is measured by the same tap.
* `HostAgent`: the real qemu-ga binary running natively on this host as an unprivileged
  peer, with every command but sync/ping/info and the file commands blocked.
* `run_module_process`: runs a module file as a child process and returns its result,
  its wall time and the peak RSS of that one child (os.wait4).
"""

from __future__ import annotations

import json
import os
import platform
import pwd
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
COLLECTIONS = os.path.join(REPO, 'build', 'collections')
MIB = 1024 * 1024
TAPPED = ('guest-fsfreeze-freeze', 'guest-fsfreeze-thaw')


def median(values):
    return statistics.median(values) if values else None


# -- figure 1: the agent tap ----------------------------------------------------------------


class AgentTap:
    """Listen on `path`, relay each client to the agent at `upstream`, timestamp the replies.

    `replies` holds (time.perf_counter(), command) for every successful reply to a
    freeze or thaw command, in arrival order, stamped before the reply is relayed.
    """

    def __init__(self, upstream, path):
        self.upstream = upstream
        self.path = path
        self.replies = []
        self._lock = threading.Lock()
        self._server = None
        self._stopping = False
        self._threads = []

    def start(self):
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(4)
        thread = threading.Thread(target=self._accept, name='agent-tap', daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self):
        self._stopping = True
        if self._server is not None:
            try:
                # Wake accept() up.
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as poke:
                    poke.connect(self.path)
            except OSError:
                pass
            self._server.close()
            self._server = None
        for thread in self._threads:
            thread.join(10)
        if os.path.exists(self.path):
            os.unlink(self.path)

    def reset(self):
        with self._lock:
            self.replies = []

    def window_ms(self):
        """First freeze reply to the first thaw reply after it, in ms (None if not seen)."""
        with self._lock:
            replies = list(self.replies)
        frozen_at = None
        for stamp, command in replies:
            if command == 'guest-fsfreeze-freeze' and frozen_at is None:
                frozen_at = stamp
            elif command == 'guest-fsfreeze-thaw' and frozen_at is not None:
                return (stamp - frozen_at) * 1000.0
        return None

    def _accept(self):
        while not self._stopping:
            try:
                client, _address = self._server.accept()
            except OSError:
                return
            if self._stopping:
                client.close()
                return
            thread = threading.Thread(target=self._relay, args=(client,), name='agent-tap-relay', daemon=True)
            thread.start()
            self._threads.append(thread)

    def _relay(self, client):
        agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            agent.connect(self.upstream)
        except OSError:
            client.close()
            agent.close()
            return
        pending = {}
        requests = _RequestScanner()
        reply_buf = b''
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, agent)
        sel.register(agent, selectors.EVENT_READ, client)
        try:
            while True:
                for key, _mask in sel.select(timeout=1.0):
                    source, target = key.fileobj, key.data
                    data = source.recv(1 << 16)
                    if not data:
                        return
                    if source is client:
                        for request in requests.feed(data):
                            if request.get('execute') in TAPPED and 'id' in request:
                                pending[json.dumps(request['id'])] = request['execute']
                    else:
                        reply_buf += data
                        while b'\n' in reply_buf:
                            line, reply_buf = reply_buf.split(b'\n', 1)
                            self._note_reply(line, pending)
                    target.sendall(data)
                if self._stopping:
                    return
        except OSError:
            return
        finally:
            sel.close()
            client.close()
            agent.close()

    def _note_reply(self, line, pending):
        if not pending:
            return
        stamp = time.perf_counter()
        try:
            reply = json.loads(line.lstrip(b'\xff').decode('utf-8', 'replace'))
        except ValueError:
            return
        if not isinstance(reply, dict) or 'id' not in reply:
            return
        command = pending.pop(json.dumps(reply['id']), None)
        if command is not None and 'return' in reply:
            with self._lock:
                self.replies.append((stamp, command))


class _RequestScanner:
    """Splits the client's byte stream into JSON requests (0xFF resync bytes skipped)."""

    LIMIT = 1 << 20

    def __init__(self):
        self._text = ''
        self._decoder = json.JSONDecoder()

    def feed(self, data):
        self._text += data.decode('latin-1')
        found = []
        while True:
            text = self._text.lstrip(' \t\r\n\xff')
            if not text:
                self._text = ''
                break
            try:
                value, end = self._decoder.raw_decode(text)
            except ValueError:
                # Incomplete (or not JSON at all): keep it unless it grows without end.
                self._text = text if len(text) < self.LIMIT else ''
                break
            self._text = text[end:]
            if isinstance(value, dict):
                found.append(value)
        return found


# -- figure 3: the host agent peer ------------------------------------------------------------------


def qemu_ga_binary():
    for candidate in (shutil.which('qemu-ga'), '/usr/sbin/qemu-ga', '/usr/bin/qemu-ga'):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError('qemu-ga is not installed (Debian package qemu-guest-agent; make deps installs it)')


class HostAgent:
    """qemu-ga on this host, listening on a unix socket, as `nobody` when we are root.

    Only guest-sync*, guest-ping, guest-info and guest-file-* are left enabled, so it can
    read and write files in its own directory and nothing else (no exec, no freeze, no
    shutdown). The files it writes are owned by the user it runs as.
    """

    ALLOWED = ('guest-sync-delimited', 'guest-sync', 'guest-ping', 'guest-info', 'guest-file-open',
               'guest-file-close', 'guest-file-read', 'guest-file-write', 'guest-file-seek', 'guest-file-flush')

    def __init__(self, workdir):
        self.workdir = workdir
        self.socket = os.path.join(workdir, 'qga.sock')
        self.files = os.path.join(workdir, 'files')
        self.proc = None
        self.version = None

    def start(self, timeout=15.0):
        binary = qemu_ga_binary()
        listed = subprocess.run([binary, '-b', 'help'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, check=False).stdout.split()
        blocked = [name for name in listed if name.startswith('guest-') and name not in self.ALLOWED]
        os.makedirs(self.files, exist_ok=True)
        argv = [binary, '-m', 'unix-listen', '-p', self.socket, '-t', self.workdir, '-b', ','.join(blocked)]
        if os.geteuid() == 0:
            nobody = pwd.getpwnam('nobody')
            for path in (self.workdir, self.files):
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
            argv = ['setpriv', f'--reuid={nobody.pw_uid}', f'--regid={nobody.pw_gid}',
                    '--clear-groups'] + argv
        log = open(os.path.join(os.path.dirname(self.workdir), 'host-qemu-ga.log'), 'ab')
        try:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        end = time.monotonic() + timeout
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError(f'qemu-ga on the host did not create {self.socket}')
            time.sleep(0.05)
        return self

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None


# -- module processes --------------------------------------------------------------------------------


def module_file(name):
    return os.path.join(REPO, 'plugins', 'modules', name + '.py')


#: Runs one module process and reports its own peak RSS. Linux keeps the RSS a process had
#: before exec() in its ru_maxrss, and a child starts with its parent's RSS (fork copies it,
#: vfork shares it), so the module is started from this small launcher, not from the bench
#: process that holds 64 MiB buffers: the figure is then the module's own peak.
LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
with open(sys.argv[3], 'wb') as out:
    proc = subprocess.Popen([sys.executable, sys.argv[1], sys.argv[2]], stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
pid, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({'rc': proc.returncode, 'maxrss_kib': usage.ru_maxrss, 'wall': time.perf_counter() - started}))
"""


def run_module_process(name, args, workdir=None, timeout=3600):
    """Run plugins/modules/<name>.py directly on `args`; (result, wall seconds, peak RSS in KiB).

    The module reads {"ANSIBLE_MODULE_ARGS": args} from a file given as its argument, as
    AnsibleModule allows. Peak RSS is the module process's ru_maxrss from os.wait4() in
    LAUNCHER (what getrusage(RUSAGE_CHILDREN) gives a parent with this one child).
    """
    fd, args_path = tempfile.mkstemp(prefix='args-', suffix='.json', dir=workdir or os.path.join(BENCH_DIR, 'output'))
    with os.fdopen(fd, 'w') as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
    out_path = args_path[:-len('.json')] + '.out'
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    env.pop('ANSIBLE_COLLECTIONS_PATH', None)
    try:
        launched = subprocess.run([sys.executable, '-c', LAUNCHER, module_file(name), args_path, out_path],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env, timeout=timeout, check=False)
        with open(out_path, 'rb') as out:
            text = out.read().decode('utf-8', 'replace')
    finally:
        os.unlink(args_path)
        if os.path.exists(out_path):
            os.unlink(out_path)
    try:
        usage = json.loads(launched.stdout.decode('utf-8', 'replace').strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f'the module launcher failed: {launched.stdout[-2000:]}')
    result = _module_json(text)
    if result is None or result.get('failed') or usage['rc'] != 0:
        raise RuntimeError('{0} failed (rc={1}): {2}'.format(name, usage['rc'], text[-3000:]))
    return result, usage['wall'], usage['maxrss_kib']


def _module_json(text):
    start = text.find('{')
    while start >= 0:
        try:
            return json.JSONDecoder().raw_decode(text[start:])[0]
        except ValueError:
            start = text.find('{', start + 1)
    return None


# -- files --------------------------------------------------------------------------------------------


def random_file(path, size):
    """A file of `size` random bytes, written in 8 MiB pieces (reused when already that size)."""
    if os.path.isfile(path) and os.path.getsize(path) == size:
        return path
    with open(path, 'wb') as handle:
        left = size
        while left:
            piece = min(left, 8 * MIB)
            handle.write(os.urandom(piece))
            left -= piece
    return path


# -- the machine --------------------------------------------------------------------------------------


def _first_line(argv):
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             check=False).stdout
    except OSError as exc:
        return str(exc)
    return out.strip().splitlines()[0] if out.strip() else ''


def _cpu_model():
    try:
        with open('/proc/cpuinfo') as handle:
            for line in handle:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def _mem_total_gib():
    try:
        with open('/proc/meminfo') as handle:
            for line in handle:
                if line.startswith('MemTotal:'):
                    return round(int(line.split()[1]) / 1024.0 / 1024.0, 1)
    except OSError:
        pass
    return None


def _kvm():
    return os.access('/dev/kvm', os.R_OK | os.W_OK)


def machine(qemu_binary):
    """What the figures were measured on."""
    try:
        from importlib.metadata import version as dist_version
        ansible_core = dist_version('ansible-core')
        qmp = dist_version('qemu.qmp')
    except Exception:  # pylint: disable=broad-except
        ansible_core = qmp = 'unknown'
    commit = _first_line(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'])
    # The results files change between figures of one run: they are not the code being measured.
    dirty = _first_line(['git', '-C', REPO, 'status', '--porcelain', '--untracked-files=no', '--', '.',
                         ':!bench/results.json', ':!bench/results.md'])
    return {
        'cpu': _cpu_model(),
        'cores': os.cpu_count(),
        'ram_gib': _mem_total_gib(),
        'os': _first_line(['sh', '-c', '. /etc/os-release && echo "$PRETTY_NAME"']),
        'kernel': platform.release(),
        'qemu': _first_line([qemu_binary, '--version']),
        'accelerator': 'TCG (the harness always starts QEMU with -accel tcg; /dev/kvm {0})'.format(
            'exists on this host but is not used' if _kvm() else 'absent'),
        'python': platform.python_version(),
        'ansible_core': ansible_core,
        'qemu_qmp': qmp,
        'qemu_ga': _first_line([qemu_ga_binary(), '--version']),
        'load_average_at_start': [round(x, 2) for x in os.getloadavg()],
        'commit': commit + (' (with local changes)' if dirty else ''),
        'date_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }


def load_average():
    return [round(x, 2) for x in os.getloadavg()]


#: In the backup role's summary (one VM per run here).
FROZEN_MS = re.compile(r'"frozen_ms":\s*([0-9]+)')
DOWNTIME_MS = re.compile(r'"downtime_ms":\s*([0-9]+)')
