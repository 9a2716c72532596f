# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This plugin_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Discovery for the qemu.vm.qemu inventory plugin: find VMs, then ask each one, read-only and bounded.

Only processes of trusted users are considered, and a socket is a VM's only when its process really
holds it (procfs.py). Every socket (a VM's QMP monitor, its agent) is asked in its own thread with its
own Deadline and its own Runner: _transport's shared Runner is one event loop per process, and an
asyncio loop must only be driven from one thread at a time. A socket that is held by another client or
an agent that does not answer costs its thread at most the bound; the others are not held up, and the
VM is still listed with what is known.
"""

from __future__ import annotations

import asyncio
import glob
import ipaddress
import json
import os
import pwd
import stat
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.cmdline import (
    agent_address,
    has_wildcard,
    normalize_uuid,
    parse_cmdline,
    qemu_vm_run_dir,
)
from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.procfs import holds, read_socket_tables, scan_processes
from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, ParameterError, QemuVMError
from ansible_collections.qemu.vm.plugins.module_utils._transport.lock import SocketLock
from ansible_collections.qemu.vm.plugins.module_utils._guest.session import AgentSession
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import SMALL_REPLY_BYTES
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
    vm = {'name': None, 'uuid': None, 'pid': None, 'uid': None, 'user': None, 'qmp': None, 'qga': None, 'run_dir': None,
          'status': None, 'version': None, 'agent_available': False, 'guest_os': None, 'guest_hostname': None,
          'guest_ips': None, 'notes': []}
    vm.update(known)
    return vm


# -- whom to trust ------------------------------------------------------------------

def trusted_uids(owners=()):
    """root, the user running the inventory, and the `owners` option (user names or uids)."""
    uids = set([0, os.geteuid()])
    for index, owner in enumerate(owners or ()):
        if isinstance(owner, int) and not isinstance(owner, bool) and owner >= 0:
            uids.add(owner)
        elif isinstance(owner, str) and owner.isdigit():
            uids.add(int(owner))
        elif isinstance(owner, str) and owner:
            try:
                uids.add(pwd.getpwnam(owner).pw_uid)
            except KeyError:
                raise ParameterError('owners', f'owners[{index}]: there is no user {owner!r} on this host')
        else:
            raise ParameterError('owners', f'owners[{index}]: a user name or uid, not {owner!r}')
    return frozenset(uids)


def user_name(uid):
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# -- finding VMs ------------------------------------------------------------------

def _held(process, address, tables, vm, what):
    held, why = holds(process, address, tables)
    if not held and process.get('sockets') is not None:
        vm['notes'].append(f"pid {process['pid']} names {what} {address} but does not own it: {why}")
    return held


def vm_from_process(process, tables):
    """A VM from a trusted process: its -name, -uuid, and the first QMP monitor and agent socket it holds."""
    info = parse_cmdline(process['argv'], process['cwd'])
    process['drops_root'] = info['drops_root']
    uid = process['uids'][1]
    vm = new_vm(pid=process['pid'], name=info['name'], uuid=normalize_uuid(info['uuid']), uid=uid, user=user_name(uid))
    if process.get('note'):
        vm['notes'].append(process['note'])
    vm['qmp'] = next((address for address in info['qmp'] if _held(process, address, tables, vm, 'QMP socket')), None)
    if info['qga'] and _held(process, info['qga'], tables, vm, 'agent socket'):
        vm['qga'] = info['qga']
    run_dir = qemu_vm_run_dir(info)
    if run_dir and vm['qmp'] == info['qmp'][0]:  # only when the process holds the qmp.sock it names
        vm['run_dir'] = run_dir
    vm['_info'] = info
    return vm


def vms_from_processes(processes, tables):
    return [vm_from_process(process, tables) for process in processes]


def _socket_owner(path):
    """uid owning the socket file at `path`, or None when it is not a socket (or gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_uid if stat.S_ISSOCK(st.st_mode) else None


def _key(address):
    return os.path.realpath(address) if '/' in address else address


def _matches(pattern, address):
    if isinstance(address, tuple):
        return [pattern]
    if has_wildcard(pattern):
        return sorted(glob.glob(pattern))
    return [pattern]


def _check_entry(index, entry):
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
        return parse_address(pattern)
    except ValueError as exc:
        raise ParameterError('sockets', f'sockets[{index}]: qmp {pattern!r}: {exc}')


def _owner_process(qmp, process_vms, tables, warnings):
    """The one trusted process that holds `qmp` ({} when none); several is a warning and none."""
    owners = []
    for process, vm in process_vms:
        if '/' in qmp:
            held = holds(process, qmp, tables)[0]
        else:  # a TCP monitor: the process names this very address and listens on its port
            held = qmp in vm['_info']['qmp'] and holds(process, qmp, tables)[0]
        if held:
            owners.append((process, vm))
    if len(owners) > 1:
        warnings.append('socket {0} is held by pids {1}: it is listed without any of their names'.format(
            qmp, ', '.join(str(process['pid']) for process, _vm in owners)))
        return None, {}
    return owners[0] if owners else (None, {})


def vms_from_sockets(entries, processes=(), tables=None, trusted=frozenset([0]), warnings=None):
    """VMs from the `sockets` option: each entry {'qmp': glob or host:port, 'qga': template}.

    A unix pattern adds one VM per matching socket whose file belongs to a trusted user (none when nothing
    matches); a host:port always adds one. A trusted process that holds the QMP socket adds its pid,
    -name, -uuid and (when the entry has no qga) the agent socket it holds.
    """
    tables = tables or {'unix': {}, 'tcp': {}}
    warnings = [] if warnings is None else warnings
    process_vms = [(process, vm_from_process(process, tables)) for process in processes]
    vms = []
    seen = set()
    for index, entry in enumerate(entries or ()):
        address = _check_entry(index, entry)
        pattern = entry['qmp']
        for qmp in _matches(pattern, address):
            uid = _socket_owner(qmp) if '/' in qmp else None
            if ('/' in qmp and uid is None) or _key(qmp) in seen:
                continue
            if uid is not None and uid not in trusted:
                warnings.append(f'{qmp} belongs to {user_name(uid)} (uid {uid}), who is not root, you or in owners: not listed')
                continue
            seen.add(_key(qmp))
            process, owner = _owner_process(qmp, process_vms, tables, warnings)
            vm = new_vm(qmp=qmp, pid=owner.get('pid'), name=owner.get('name'), uuid=owner.get('uuid'),
                        uid=owner['uid'] if owner else uid, user=owner['user'] if owner else user_name(uid))
            vm['notes'].extend(owner.get('notes', ()))
            qga = agent_address(entry.get('qga'), qmp, pattern) if '/' in qmp else entry.get('qga')
            if qga and '/' in qga:
                qga = _checked_agent(qga, process, tables, trusted, vm)
            vm['qga'] = qga or owner.get('qga')
            if owner.get('run_dir') and qmp == owner.get('qmp'):
                vm['run_dir'] = owner['run_dir']
            vms.append(vm)
    return vms


def _checked_agent(qga, process, tables, trusted, vm):
    """The agent socket of the `qga` template, when it exists and is the VM's (else None, with a note)."""
    uid = _socket_owner(qga)
    if uid is None:
        return None
    if uid not in trusted:
        vm['notes'].append(f'{qga} belongs to {user_name(uid)} (uid {uid}), who is not root, you or in owners: not used')
        return None
    if process is not None and process.get('sockets') is not None and not _held(process, qga, tables, vm, 'agent socket'):
        return None
    return qga


def drop_shared_sockets(vms, warnings):
    """A socket that two VMs claim is used by neither (a warning names them)."""
    for field, label in (('qmp', 'QMP'), ('qga', 'agent')):
        claims = {}
        for vm in vms:
            if vm.get(field):
                claims.setdefault(_key(vm[field]), []).append(vm)
        for address, claimants in sorted(claims.items()):
            if len(claimants) > 1:
                warnings.append('{0} socket {1} is held by pids {2}: used for none of them'.format(
                    label, address, ', '.join(str(vm.get('pid')) for vm in claimants)))
                for vm in claimants:
                    vm[field] = None
    return vms


# -- asking VMs ---------------------------------------------------------------------

def _remaining(deadline):
    return max(deadline.remaining(), 0.001)


class _Probe:
    """One socket asked within one deadline, on an event loop of its own (this thread's).

    With `connect` (a function of the address giving a connector, see _transport.sockets.ClientSession),
    the socket is on another host: the connector waits for the lock there, as below.
    """

    def __init__(self, address, timeout, connect=None):
        self.address = address
        self.deadline = Deadline(timeout)
        self.runner = Runner()
        self.connector = connect(address) if connect is not None else None
        # Waited for only while a task holds it, never created; a FIFO, a link or another user's file
        # at its path is a RuntimeFileError naming it: the socket is not asked (a note says why).
        self.lock = SocketLock(parse_address(address), existing_only=True) if connect is None else None

    def take_lock(self):
        if self.lock is not None:
            self.lock.acquire(_remaining(self.deadline))

    def close(self):
        if self.lock is not None:
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


def query_qmp(address, timeout, connect=None):
    """Run state, version, name and UUID from a QMP monitor; {'notes': [why not]} when it fails."""
    facts = {'notes': []}
    probe = _Probe(address, timeout, connect)
    try:
        probe.take_lock()
        with QMPSession(address, timeout=_remaining(probe.deadline), lock=False, runner=probe.runner,
                        connector=probe.connector) as qmp:
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


def query_qga(address, timeout, connect=None):
    """Whether the agent answers, and the guest's OS, host name and addresses when it does."""
    facts = {'notes': [], 'agent_available': False}
    probe = _Probe(address, timeout, connect)
    try:
        probe.take_lock()
        remaining = _remaining(probe.deadline)
        # Small replies only; opening it first thaws a freeze an interrupted quiesced run of ours left.
        with AgentSession(address, timeout=remaining, lock=False, runner=probe.runner,
                          sync_timeout=remaining, max_reply=SMALL_REPLY_BYTES, connector=probe.connector) as qga:
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


def query_all(vms, timeout, workers=MAX_WORKERS, connect=None):
    """Ask every VM's QMP monitor and agent in parallel; update `vms` in place and return it.

    With `connect`, the sockets are on another host (see _Probe).
    """
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
                facts = query(address, timeout, connect)
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
    return vms


def discover(sockets=None, timeout=3.0, owners=(), proc_root='/proc', tables=None):
    """(VMs, warnings): the VMs of the `sockets` option, or of every trusted QEMU process when it is empty, queried."""
    vms, warnings = find(sockets, timeout, owners, proc_root, tables)
    return query_all(vms, timeout), warnings


def find_as_json(sockets=None, timeout=3.0, owners=()):
    """find() on a hypervisor (plugin_utils/_remote ships this there): its result as JSON on stdout."""
    vms, warnings = find(sockets, timeout, owners)
    sys.stdout.write(json.dumps({'vms': vms, 'warnings': warnings}))
    return 0


def find(sockets=None, timeout=3.0, owners=(), proc_root='/proc', tables=None):
    """(VMs, warnings): the VMs of the `sockets` option, or of every trusted QEMU process, not asked yet."""
    trusted = trusted_uids(owners)
    warnings = []
    processes = scan_processes(proc_root, trusted)
    if tables is None:  # only a process' sockets need the kernel's table
        tables = read_socket_tables(timeout, proc_root) if processes else {'unix': {}, 'tcp': {}}
    if tables.get('note'):
        warnings.append(tables['note'])
    if sockets:
        vms = vms_from_sockets(sockets, processes, tables, trusted, warnings)
    else:
        vms = vms_from_processes(processes, tables)
    for vm in vms:
        vm.pop('_info', None)
    drop_shared_sockets(vms, warnings)
    return vms, warnings
