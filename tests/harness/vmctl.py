# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start and stop a tiny test VM from the command line (molecule create/destroy, demos).

    python tests/harness/vmctl.py start WORKDIR [--name NAME]   prints the VM's sockets as JSON
    python tests/harness/vmctl.py stop WORKDIR

`start` leaves QEMU running after it exits and records it in WORKDIR/vm.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.guest import VM, ensure_guest, qmp_command  # noqa: E402  pylint: disable=wrong-import-position


def start(workdir, name):
    os.makedirs(workdir, exist_ok=True)
    vm = VM(workdir, name=name, images=ensure_guest())
    vm.start(timeout=90)
    state = {'name': name, 'pid': vm.pid, 'qmp': vm.qmp_path, 'qga': vm.qga_path,
             'harness_qmp': vm.harness_qmp_path, 'workdir': os.path.abspath(workdir)}
    with open(os.path.join(workdir, 'vm.json'), 'w') as handle:
        json.dump(state, handle)
    print(json.dumps(state))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(workdir):
    path = os.path.join(workdir, 'vm.json')
    if not os.path.exists(path):
        print(json.dumps({'stopped': False, 'reason': 'no vm.json'}))
        return
    with open(path) as handle:
        state = json.load(handle)
    pid = state['pid']
    try:
        qmp_command(state['harness_qmp'], 'quit', timeout=10)
    except Exception:  # pylint: disable=broad-except
        pass  # already gone, or wedged: the signals below handle it
    for sig, wait in ((None, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if sig is not None and _alive(pid):
            os.kill(pid, sig)
        end = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < end:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        if not _alive(pid):
            break
    os.unlink(path)
    print(json.dumps({'stopped': not _alive(pid), 'pid': pid}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('action', choices=['start', 'stop'])
    parser.add_argument('workdir')
    parser.add_argument('--name', default='qemu-vm-test')
    args = parser.parse_args()
    if args.action == 'start':
        start(args.workdir, args.name)
    else:
        stop(args.workdir)


if __name__ == '__main__':
    main()
