# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This plugin_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Discovery for the qemu.vm.qemu inventory plugin: find VMs, then ask each one, read-only and bounded.

Every socket (a VM's QMP monitor, its agent) is asked in its own thread with its own
Deadline and its own Runner: _transport's shared Runner is one event loop per process,
and an asyncio loop must only be driven from one thread at a time. A socket that is
held by another client or an agent that does not answer costs its thread at most the
bound; the others are not held up, and the VM is still listed with what is known.
"""

from __future__ import annotations

import asyncio
import glob
import ipaddress
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.cmdline import (
    agent_address,
    has_wildcard,
    is_qemu_argv,
    normalize_uuid,
    parse_cmdline,
)
from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, ParameterError, QemuVMError
from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import SocketLock
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import QGASession
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import QMPSession
from ansible_collections.qemu.vm.plugins.module_utils._transport.sockets import Deadline, Runner, parse_address

#: Threads asking sockets at once; more sockets than this wait for a free thread.
MAX_WORKERS = 64
#: The agent commands whose answers become host variables, each optional.
AGENT_FACTS = (
    ('guest_os', 'guest-get-osinfo'),
    ('guest_hostname', 'guest-get-host-name'),
    ('guest_ips', 'guest-network-get-interfaces'),
)


def new_vm(**known):
    vm = {'name': None, 'uuid': None, 'pid': None, 'qmp': None, 'qga': None, 'status': None,
          'version': None, 'agent_available': False, 'guest_os': None, 'guest_hostname': None,
          'guest_ips': None, 'notes': []}
    vm.update(known)
    return vm


# -- finding VMs ------------------------------------------------------------------

def scan_processes(proc_root='/proc'):
    """(pid, argv, cwd) of every QEMU process whose command line we can read.

    A process that exits mid-scan or whose /proc entry we may not read is skipped;
    cwd is None when we may not read it.
    """
    found = []
    try:
        entries = os.listdir(proc_root)
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        base = os.path.join(proc_root, entry)
        try:
            with open(os.path.join(base, 'cmdline'), 'rb') as handle:
                raw = handle.read()
        except OSError:
            continue  # gone (ENOENT, ESRCH) or hidden from us (EACCES)
        argv = [part.decode('utf-8', 'surrogateescape') for part in raw.split(b'\0')]
        if argv and argv[-1] == '':
            argv.pop()
        if not is_qemu_argv(argv):
            continue
        try:
            cwd = os.readlink(os.path.join(base, 'cwd'))
        except OSError:
            cwd = None
        found.append((int(entry), argv, cwd))
    return sorted(found)


def vms_from_processes(processes):
    """One VM per QEMU process: its -name, -uuid, first QMP monitor and agent socket."""
    vms = []
    for pid, argv, cwd in processes:
        info = parse_cmdline(argv, cwd)
        vm = new_vm(pid=pid, name=info['name'], uuid=normalize_uuid(info['uuid']),
                    qmp=info['qmp'][0] if info['qmp'] else None, qga=info['qga'])
        vm['all_qmp'] = info['qmp']
        vms.append(vm)
    return vms


def _is_socket(path):
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _key(address):
    return os.path.realpath(address) if '/' in address else address


def vms_from_sockets(entries, processes=()):
    """VMs from the `sockets` option: each entry {'qmp': glob or host:port, 'qga': template}.

    A unix pattern adds one VM per matching socket (none when nothing matches); a
    host:port always adds one. A visible process owning the QMP socket adds its pid,
    -name, -uuid and (when the entry has no qga) its agent socket.
    """
    owners = {}
    for vm in vms_from_processes(processes):
        for address in vm['all_qmp']:
            owners.setdefault(_key(address), vm)
    vms = []
    seen = set()
    for index, entry in enumerate(entries or ()):
        if not isinstance(entry, dict):
            raise ParameterError('sockets', f'sockets[{index}]: each entry is a mapping with qmp (and qga), not {entry!r}')
        unknown = sorted(set(entry) - set(['qmp', 'qga']))
        if unknown:
            raise ParameterError('sockets', 'sockets[{0}]: unknown key(s) {1}; the keys are qmp and qga'.format(
                index, ', '.join(map(str, unknown))))
        pattern = entry.get('qmp')
        if not pattern or not isinstance(pattern, str):
            raise ParameterError('sockets', f'sockets[{index}]: qmp (a glob pattern or host:port) is required')
        try:
            address = parse_address(pattern)
        except ValueError as exc:
            raise ParameterError('sockets', f'sockets[{index}]: qmp {pattern!r}: {exc}')
        if isinstance(address, tuple):
            matches = [pattern]
        elif has_wildcard(pattern):
            matches = [path for path in sorted(glob.glob(pattern)) if _is_socket(path)]
        else:
            matches = [pattern] if _is_socket(pattern) else []
        for qmp in matches:
            if _key(qmp) in seen:
                continue
            seen.add(_key(qmp))
            qga = agent_address(entry.get('qga'), qmp, pattern) if '/' in qmp else entry.get('qga')
            if qga and '/' in qga and not os.path.exists(qga):
                qga = None
            owner = owners.get(_key(qmp), {})
            vms.append(new_vm(qmp=qmp, qga=qga or owner.get('qga'), pid=owner.get('pid'),
                              name=owner.get('name'), uuid=owner.get('uuid')))
    return vms


# -- asking VMs ---------------------------------------------------------------------

def _remaining(deadline):
    return max(deadline.remaining(), 0.001)


class _Probe:
    """One socket asked within one deadline, on an event loop of its own (this thread's)."""

    def __init__(self, address, timeout):
        self.address = address
        self.deadline = Deadline(timeout)
        self.runner = Runner()
        self.lock = SocketLock(parse_address(address), existing_only=True)

    def take_lock(self):
        self.lock.acquire(_remaining(self.deadline))

    def close(self):
        self.lock.release()
        loop = self.runner.loop
        try:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            loop.close()


def query_qmp(address, timeout):
    """Run state, version, name and UUID from a QMP monitor; {'notes': [why not]} when it fails."""
    facts = {'notes': []}
    probe = _Probe(address, timeout)
    try:
        probe.take_lock()
        with QMPSession(address, timeout=_remaining(probe.deadline), lock=False, runner=probe.runner) as qmp:
            facts['version'] = qmp.version_string
            facts['status'] = qmp.execute('query-status', timeout=_remaining(probe.deadline))['status']
            name = qmp.execute('query-name', timeout=_remaining(probe.deadline)).get('name')
            if name:
                facts['name'] = name
            facts['uuid'] = normalize_uuid(qmp.execute('query-uuid', timeout=_remaining(probe.deadline)).get('UUID'))
    except QemuVMError as exc:
        facts['notes'].append(f'QMP {address}: {exc}')
    finally:
        probe.close()
    return facts


def guest_ips(interfaces):
    """Addresses from guest-network-get-interfaces, without loopback and link-local ones."""
    ips = []
    for interface in interfaces or ():
        for entry in interface.get('ip-addresses') or ():
            text = entry.get('ip-address')
            try:
                parsed = ipaddress.ip_address(text.split('%')[0])
            except (AttributeError, ValueError):
                continue
            if parsed.is_loopback or parsed.is_link_local:
                continue
            if text not in ips:
                ips.append(text)
    return ips


def _fact_value(key, reply):
    if key == 'guest_os':
        return dict((str(k).replace('-', '_'), v) for k, v in (reply or {}).items())
    if key == 'guest_hostname':
        return (reply or {}).get('host-name')
    return guest_ips(reply)


def query_qga(address, timeout):
    """Whether the agent answers, and the guest's OS, host name and addresses when it does."""
    facts = {'notes': [], 'agent_available': False}
    probe = _Probe(address, timeout)
    try:
        probe.take_lock()
        remaining = _remaining(probe.deadline)
        with QGASession(address, timeout=remaining, lock=False, runner=probe.runner,
                        sync_timeout=remaining) as qga:
            facts['agent_available'] = True
            for key, command in AGENT_FACTS:
                try:
                    facts[key] = _fact_value(key, qga.execute(command, timeout=_remaining(probe.deadline)))
                except CommandError as exc:
                    facts['notes'].append(f'QGA {address}: {exc}')
    except QemuVMError as exc:
        facts['notes'].append(f'QGA {address}: {exc}')
    finally:
        probe.close()
    return facts


def query_all(vms, timeout, workers=MAX_WORKERS):
    """Ask every VM's QMP monitor and agent in parallel; update `vms` in place and return it."""
    jobs = []
    for vm in vms:
        if vm.get('qmp'):
            jobs.append((vm, query_qmp, vm['qmp']))
        if vm.get('qga'):
            jobs.append((vm, query_qga, vm['qga']))
    if jobs:
        results = []
        guard = threading.Lock()

        def run(job):
            vm, query, address = job
            try:
                facts = query(address, timeout)
            except Exception as exc:  # pylint: disable=broad-except
                # One VM's surprise (an address we cannot parse, a library error we did not
                # expect) must not cost the inventory the other VMs.
                facts = {'notes': [f'{address}: {type(exc).__name__}: {exc}']}
            with guard:
                results.append((vm, facts))

        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs)))) as pool:
            for future in [pool.submit(run, job) for job in jobs]:
                future.result()
        for vm, facts in results:
            vm['notes'].extend(facts.pop('notes'))
            for key, value in facts.items():
                if key in ('name', 'uuid') and vm.get(key):
                    continue  # the command line said it first
                vm[key] = value
    for vm in vms:
        vm.pop('all_qmp', None)
    return vms


def discover(sockets=None, timeout=3.0, proc_root='/proc'):
    """The VMs of the `sockets` option, or every visible QEMU process when it is empty, queried."""
    processes = scan_processes(proc_root)
    vms = vms_from_sockets(sockets, processes) if sockets else vms_from_processes(processes)
    return query_all(vms, timeout)
