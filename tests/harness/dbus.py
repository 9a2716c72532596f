"""A private D-Bus bus and real org.qemu.VMState1 helpers for the tests.

Stdlib only (the helpers themselves use jeepney, in their own processes), no Ansible.

  bus = Bus(workdir).start()          # dbus-daemon --config-file=... --nofork --print-address=1
  bus.address                         # 'unix:path=/tmp/qvmbus.../bus,guid=...'
  helper = bus.helper('net0', state=b'...')   # tests/harness/vmstate_helper.py, started, queued
  helper.set_state(b'...'); helper.loaded(); helper.calls()
  bus.stop()                          # stops the helpers, then the daemon
"""

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HELPER_SCRIPT = os.path.join(HERE, 'vmstate_helper.py')
DBUS_DAEMON = os.environ.get('QEMU_VM_DBUS_DAEMON', 'dbus-daemon')

# A bus for one test: only our uid may connect (EXTERNAL auth), and everyone on it may
# own any name and talk to anyone.
BUS_CONFIG = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
'''


class BusError(RuntimeError):
    """The bus or a helper did not start or answer in time."""


def _read_line(proc, timeout, what):
    """One line from proc.stdout within `timeout` seconds (raw fd reads, no buffering surprises)."""
    deadline = time.monotonic() + timeout
    buf = b''
    fd = proc.stdout.fileno()
    while b'\n' not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BusError(f'{what} printed nothing within {timeout} s (got {buf!r})')
        readable = select.select([fd], [], [], remaining)[0]
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise BusError(f'{what} exited with status {proc.wait(5)} before it was ready (output {buf!r})')
        buf += chunk
    return buf.split(b'\n', 1)[0].decode()


def _stop_process(proc, timeout=10):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    if proc.stdout is not None:
        proc.stdout.close()


class Bus:
    """A private dbus-daemon; its socket lives in a short /tmp directory."""

    def __init__(self, workdir):
        self.workdir = os.path.abspath(str(workdir))
        os.makedirs(self.workdir, exist_ok=True)
        self.socket_dir = tempfile.mkdtemp(prefix='qvmbus')
        self.socket_path = os.path.join(self.socket_dir, 'bus')
        self.config_path = os.path.join(self.workdir, 'bus.conf')
        self.log_path = os.path.join(self.workdir, 'dbus-daemon.log')
        self.address = None
        self.proc = None
        self.helpers = []

    def start(self, timeout=10):
        with open(self.config_path, 'w') as f:
            f.write(BUS_CONFIG.format(socket=self.socket_path))
        with open(self.log_path, 'ab') as log:
            self.proc = subprocess.Popen(
                [DBUS_DAEMON, '--config-file=' + self.config_path, '--nofork', '--print-address=1'],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        try:
            self.address = _read_line(self.proc, timeout, 'dbus-daemon')
        except BaseException:
            self.stop()
            raise
        if not self.address.startswith('unix:'):
            self.stop()
            raise BusError(f'unexpected dbus-daemon address {self.address!r}')
        return self

    def helper(self, helper_id, state=b'', name=None, timeout=10, **flags):
        """Start a helper with Id `helper_id` and current state `state`; wait until it is on the bus.

        flags: do_not_queue, no_id_property, save_error, hang (see vmstate_helper.py).
        """
        helper = Helper(self, helper_id, state, name or f'h{len(self.helpers)}', flags)
        self.helpers.append(helper)
        helper.start(timeout)
        return helper

    def stop(self):
        for helper in reversed(self.helpers):
            helper.stop()
        if self.proc is not None:
            _stop_process(self.proc)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Helper:
    """One vmstate_helper.py process and the files it reads and writes."""

    def __init__(self, bus, helper_id, state, name, flags):
        self.bus = bus
        self.id = helper_id
        self.name = name
        base = os.path.join(bus.workdir, name)
        self.state_file = base + '.state'
        self.loaded_file = base + '.loaded'
        self.log_file = base + '.calls'
        self.stderr_path = base + '.stderr'
        self.flags = dict(flags)
        self.unique_name = None
        self.request_result = None
        self.proc = None
        self.set_state(state)

    def start(self, timeout=10):
        argv = [sys.executable, HELPER_SCRIPT, '--address', self.bus.address, '--id', self.id,
                '--state-file', self.state_file, '--loaded-file', self.loaded_file,
                '--log-file', self.log_file]
        for flag, value in sorted(self.flags.items()):
            if value:
                argv.append('--' + flag.replace('_', '-'))
        with open(self.stderr_path, 'ab') as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=err, start_new_session=True)
        try:
            line = _read_line(self.proc, timeout, f'helper {self.name}')
        except BusError as exc:
            self.stop()
            raise BusError(f'{exc}; stderr: {self.stderr()}')
        words = line.split()
        if len(words) != 3 or words[0] != 'READY':
            self.stop()
            raise BusError(f'helper {self.name} said {line!r}')
        self.unique_name, self.request_result = words[1], words[2]
        return self

    def stop(self):
        if self.proc is not None:
            _stop_process(self.proc)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def set_state(self, data):
        with open(self.state_file, 'wb') as f:
            f.write(data)

    def state(self):
        with open(self.state_file, 'rb') as f:
            return f.read()

    def loaded(self):
        """The bytes the last Load() received, or None if Load was never called."""
        try:
            with open(self.loaded_file, 'rb') as f:
                return f.read()
        except FileNotFoundError:
            return None

    def calls(self, name=None):
        """Logged calls (dicts with 'call'), optionally only those named `name`."""
        try:
            with open(self.log_file) as f:
                entries = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            entries = []
        return [e for e in entries if name is None or e.get('call') == name]

    def stderr(self):
        try:
            with open(self.stderr_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')[-2000:]
        except OSError:
            return ''

    def __repr__(self):
        return f'<Helper {self.name} id={self.id!r} {self.unique_name}>'
