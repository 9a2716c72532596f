# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fake QEMU 5.2 QMP monitor: no snapshot-save jobs, only HMP savevm/loadvm/delvm.

It speaks enough QMP for qemu_snapshot and qemu_snapshot_info: the greeting (version 5.2),
qmp_capabilities, query-commands, query-status, query-block, query-named-block-nodes,
query-jobs and human-monitor-command. HMP behaves like QEMU 5.2's: text output instead of
QMP errors, every writable disk involved, savevm silently replaces an existing tag, and a
failed loadvm leaves the VM in restore-vm. STOP/RESUME events carry timestamps 120 ms apart.
"""

from __future__ import annotations

import threading

from harness.fake_peers import FakePeer, qmp_greeting

COMMANDS = ['qmp_capabilities', 'query-commands', 'query-status', 'query-block', 'query-named-block-nodes',
            'query-jobs', 'job-dismiss', 'human-monitor-command', 'stop', 'cont', 'query-version']

STOP_MS = 120


def parse_hmp_string(text):
    """QEMU's HMP string argument: a bare word, or a double-quoted string with backslash escapes.
    Returns (value, rest) or raises ValueError like HMP's parser would complain."""
    text = text.lstrip(' ')
    if not text.startswith('"'):
        word = text.split(' ', 1)
        return word[0], (word[1] if len(word) > 1 else '')
    out = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == '\\':
            nxt = text[i + 1:i + 2]
            mapped = {'\\': '\\', '"': '"', "'": "'", 'n': '\n', 'r': '\r'}.get(nxt)
            if mapped is None:
                raise ValueError('unsupported escape code')
            out.append(mapped)
            i += 2
            continue
        if char == '"':
            return ''.join(out), text[i + 1:]
        out.append(char)
        i += 1
    raise ValueError('unterminated string')


class FakeQemu52:
    """disks: list of (node_name, driver, read_only). The first writable qcow2 keeps the VM state."""

    def __init__(self, disks=(('disk0', 'qcow2', False), ('disk1', 'qcow2', False)), status='running'):
        self.disks = [dict(node=n, drv=d, ro=ro, snapshots=[], next_id=1) for n, d, ro in disks]
        self.status = status
        self.hmp_lines = []
        self.commands = []
        self.fail_next_hmp = None
        self.clock = 1700000000.0
        self.lock = threading.Lock()
        self.peer = FakePeer(self.serve)
        self.path = self.peer.path

    def close(self):
        self.peer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- helpers for tests ------------------------------------------------------------

    def tags(self, node):
        return [s['name'] for s in self._disk(node)['snapshots']]

    def add_snapshot(self, node, name, vm_state_size=0, date=None):
        disk = self._disk(node)
        disk['snapshots'].append(self._record(disk, name, vm_state_size, date or self._tick()))

    @property
    def errors(self):
        return self.peer.errors

    # -- the QMP side -----------------------------------------------------------------

    def serve(self, conn):
        conn.send(qmp_greeting(5, 2, 0))
        while True:
            request = conn.read_request()
            name = request.get('execute')
            with self.lock:
                self.commands.append(name)
                handler = getattr(self, 'cmd_' + name.replace('-', '_'), None)
                if handler is None or name not in COMMANDS:
                    conn.error(request, 'CommandNotFound', f'The command {name} has not been found')
                    continue
                handler(conn, request, request.get('arguments') or {})

    def cmd_qmp_capabilities(self, conn, request, args):
        conn.reply(request, {})

    def cmd_query_commands(self, conn, request, args):
        conn.reply(request, [{'name': c} for c in COMMANDS])

    def cmd_query_status(self, conn, request, args):
        conn.reply(request, {'status': self.status, 'running': self.status == 'running', 'singlestep': False})

    def cmd_query_jobs(self, conn, request, args):
        conn.reply(request, [])

    def cmd_query_block(self, conn, request, args):
        conn.reply(request, [{
            'device': '', 'qdev': '/machine/peripheral/vd{0}/virtio-backend'.format(chr(ord('a') + i)),
            'locked': False, 'removable': False, 'type': 'unknown',
            'inserted': {'node-name': d['node'], 'drv': d['drv'], 'ro': d['ro'], 'file': self._file(d)},
        } for i, d in enumerate(self.disks)])

    def cmd_query_named_block_nodes(self, conn, request, args):
        nodes = []
        for disk in self.disks:
            image = {'filename': self._file(disk), 'format': disk['drv'], 'virtual-size': 16 << 20}
            if disk['snapshots']:
                image['snapshots'] = [dict(s) for s in disk['snapshots']]
            nodes.append({'node-name': disk['node'], 'drv': disk['drv'], 'ro': disk['ro'], 'file': self._file(disk),
                          'image': image})
            nodes.append({'node-name': disk['node'] + '-file', 'drv': 'file', 'ro': disk['ro'],
                          'file': self._file(disk), 'image': {'filename': self._file(disk), 'format': 'file'}})
        conn.reply(request, nodes)

    def cmd_stop(self, conn, request, args):
        if self.status == 'running':
            self.status = 'paused'
        conn.reply(request, {})

    def cmd_cont(self, conn, request, args):
        self.status = 'running'
        conn.reply(request, {})

    def cmd_human_monitor_command(self, conn, request, args):
        line = args['command-line']
        self.hmp_lines.append(line)
        verb, _space, rest = line.partition(' ')
        if self.fail_next_hmp is not None:
            text, self.fail_next_hmp = self.fail_next_hmp, None
            conn.reply(request, text)
            return
        try:
            tag, extra = parse_hmp_string(rest)
        except ValueError as exc:
            conn.reply(request, f'{verb}: {exc}\r\nTry "help {verb}" for more information\r\n')
            return
        if extra.strip():
            conn.reply(request, f'{verb}: extraneous characters at the end of line\r\n')
            return
        handler = {'savevm': self.hmp_savevm, 'loadvm': self.hmp_loadvm, 'delvm': self.hmp_delvm}.get(verb)
        if handler is None:
            conn.reply(request, f'unknown command: \'{verb}\'\r\n')
            return
        conn.reply(request, handler(conn, tag))

    # -- HMP, as QEMU 5.2 does it ----------------------------------------------------------

    def _writable(self):
        return [d for d in self.disks if not d['ro']]

    def _cannot_snapshot(self):
        for disk in self._writable():
            if disk['drv'] != 'qcow2':
                return "Error: Device '{0}' is writable but does not support snapshots\r\n".format(disk['node'])
        return None

    def _stop(self, conn):
        """STOP the guest if it runs; returns (was_running, when)."""
        when = self._tick()
        was_running = self.status == 'running'
        if was_running:
            conn.send({'event': 'STOP', 'data': {}, 'timestamp': self._stamp(when)})
        return was_running, when

    def _resume(self, conn):
        conn.send({'event': 'RESUME', 'data': {}, 'timestamp': self._stamp(self._tick(STOP_MS / 1000.0))})
        self.status = 'running'

    def hmp_savevm(self, conn, tag):
        problem = self._cannot_snapshot()
        if problem:
            return problem
        was_running, date = self._stop(conn)
        for index, disk in enumerate(self._writable()):
            disk['snapshots'] = [s for s in disk['snapshots'] if s['name'] != tag]  # savevm replaces silently
            disk['snapshots'].append(self._record(disk, tag, 104857600 if index == 0 else 0, date))
        if was_running:
            self._resume(conn)
        return ''

    def hmp_loadvm(self, conn, tag):
        problem = self._cannot_snapshot()
        if problem:
            return problem
        was_running = self._stop(conn)[0]
        self.status = 'restore-vm'
        for disk in self._writable():
            if tag not in [s['name'] for s in disk['snapshots']]:
                return "Error: Device '{0}' does not have the requested snapshot '{1}'\r\n".format(disk['node'], tag)
        if was_running:
            self._resume(conn)
        return ''

    def hmp_delvm(self, conn, tag):
        problem = self._cannot_snapshot()
        if problem:
            return problem
        for disk in self._writable():
            disk['snapshots'] = [s for s in disk['snapshots'] if s['name'] != tag]
        return ''

    # -- internals --------------------------------------------------------------------

    def _disk(self, node):
        return [d for d in self.disks if d['node'] == node][0]

    @staticmethod
    def _file(disk):
        return '/fake/{0}.{1}'.format(disk['node'], disk['drv'])

    def _tick(self, seconds=1.0):
        self.clock += seconds
        return self.clock

    @staticmethod
    def _stamp(when):
        return {'seconds': int(when), 'microseconds': int(round((when - int(when)) * 1e6))}

    @staticmethod
    def _record(disk, name, vm_state_size, date):
        record = {'id': str(disk['next_id']), 'name': name, 'vm-state-size': vm_state_size,
                  'date-sec': int(date), 'date-nsec': 0, 'vm-clock-sec': 42, 'vm-clock-nsec': 500000000}
        disk['next_id'] += 1
        return record
