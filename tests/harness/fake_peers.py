# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""In-process fake QMP / guest-agent peers for protocol edge cases a real VM cannot
produce on demand: stale bytes, garbage, hangs, disconnects mid-reply.

Each accepted connection is handed to `handler(conn)`, running in a thread; the
handler scripts the peer's side with the small helpers on `PeerConnection`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading


class PeerConnection:
    def __init__(self, sock):
        self.sock = sock
        self.received = b''

    def send(self, data):
        if isinstance(data, dict):
            data = json.dumps(data).encode() + b'\n'
        self.sock.sendall(data)

    def read_until(self, marker, timeout=10):
        """Read until `marker` is in what was received; return everything up to and including it."""
        self.sock.settimeout(timeout)
        while marker not in self.received:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('client closed')
            self.received += chunk
        head, _marker, self.received = self.received.partition(marker)
        return head + marker

    def read_request(self, timeout=10):
        """One JSON request (the client sends one object per write; objects end with '}')."""
        self.sock.settimeout(timeout)
        decoder = json.JSONDecoder()
        while True:
            text = self.received.lstrip(b'\xff').decode('utf-8', 'replace').lstrip()
            if text:
                try:
                    obj, end = decoder.raw_decode(text)
                    self.received = text[end:].encode()
                    return obj
                except ValueError:
                    pass
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('client closed')
            self.received += chunk

    def answer_sync(self, stale=(), delimited=True):
        """Answer the client's guest-sync-delimited, after sending `stale` bytes first."""
        first = self.sock.recv(1, socket.MSG_PEEK)
        request = self.read_request()
        assert request['execute'] == 'guest-sync-delimited', request
        for chunk in stale:
            self.send(chunk)
        prefix = b'\xff' if delimited else b''
        self.send(prefix + json.dumps({'return': request['arguments']['id']}).encode() + b'\n')
        return first

    def reply(self, request, value):
        self.send({'return': value, 'id': request.get('id')})

    def error(self, request, error_class, desc):
        self.send({'error': {'class': error_class, 'desc': desc}, 'id': request.get('id')})

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class FakePeer:
    """A unix-socket server running `handler(conn)` for each connection in a thread."""

    def __init__(self, handler, path=None):
        self.handler = handler
        self._dir = None
        if path is None:
            self._dir = tempfile.mkdtemp(prefix='qvmfake')
            path = os.path.join(self._dir, 'peer.sock')
        self.path = path
        self.errors = []
        self.connections = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(4)
        self._stop = threading.Event()
        self._threads = []
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)
        self._accept_thread.start()

    def _accept(self):
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                sock = self._server.accept()[0]
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock):
        conn = PeerConnection(sock)
        try:
            self.handler(conn)
        except (EOFError, OSError):
            pass
        except Exception as exc:  # pylint: disable=broad-except
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self):
        self._stop.set()
        self._server.close()
        for thread in self._threads:
            thread.join(5)
        self._accept_thread.join(5)
        if os.path.exists(self.path):
            os.unlink(self.path)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)  # also our lock file

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def qmp_greeting(major=7, minor=2, micro=0):
    return {'QMP': {'version': {'qemu': {'major': major, 'minor': minor, 'micro': micro},
                                'package': 'fake'}, 'capabilities': ['oob']}}


def serve_qmp_handshake(conn, version=(7, 2, 0)):
    conn.send(qmp_greeting(*version))
    request = conn.read_request()
    assert request['execute'] == 'qmp_capabilities', request
    conn.reply(request, {})
