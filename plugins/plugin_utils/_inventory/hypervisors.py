# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This plugin_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The inventory's `hypervisors`: which hosts to scan, scanning them in parallel, and the VMs' host names.

`localhost` is this host's own scan (discovery.discover). Another host is scanned over SSH
(plugin_utils/_remote): discovery.find runs there, shipped to its python3, and says which VMs it runs
and which sockets each one holds; then each socket is asked from here through a relay on that host,
which waits for the per-socket lock there as the local inventory does here. Every hypervisor runs in
its own thread and costs at most its bound; one that cannot be reached is a warning (or, strict, an error).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, QemuVMError
from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.cmdline import assign_host_names
from ansible_collections.qemu.vm.plugins.plugin_utils._inventory.discovery import discover, query_all
from ansible_collections.qemu.vm.plugins.plugin_utils._remote.ssh import RelayConnector, SSHHost

LOCAL = 'localhost'
FIND = 'ansible_collections.qemu.vm.plugins.plugin_utils._inventory.discovery'
#: Sockets asked at once on one remote hypervisor: each is an SSH session on the shared connection,
#: and sshd allows 10 per connection by default (MaxSessions).
REMOTE_WORKERS = 8
_KEYS = ('host', 'user', 'port', 'private_key_file', 'ssh_args', 'name')
_SPEC = re.compile(r'^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]\s]+\]|[^:@\s\[\]]+)(?::(?P<port>[0-9]{1,5}))?$')


def parse_hypervisor(index, entry):
    """A `hypervisors` entry ('[user@]host[:port]' or a mapping) -> {host, user, port, private_key_file, ssh_args, name}."""
    where = f'hypervisors[{index}]'
    if isinstance(entry, str):
        match = _SPEC.match(entry.strip())
        if not match:
            raise ParameterError('hypervisors', f'{where}: {entry!r} is not [user@]host[:port]')
        entry = dict((key, value) for key, value in match.groupdict().items() if value)
        entry['host'] = entry['host'].strip('[]')
    if not isinstance(entry, dict):
        raise ParameterError('hypervisors', f'{where}: a string [user@]host[:port] or a mapping, not {entry!r}')
    unknown = sorted(set(entry) - set(_KEYS))
    if unknown:
        raise ParameterError('hypervisors', '{0}: unknown key(s) {1}; the keys are {2}'.format(
            where, ', '.join(map(str, unknown)), ', '.join(_KEYS)))
    host = entry.get('host')
    if not isinstance(host, str) or not host or host.startswith('-'):
        raise ParameterError('hypervisors', f'{where}: host (a host name or address) is required')
    port = entry.get('port')
    if port is not None:
        try:
            port = int(port)
        except (TypeError, ValueError):
            port = 0
        if not 0 < port < 65536:
            raise ParameterError('hypervisors', f"{where}: port {entry.get('port')!r} is not a port number")
    for key in ('user', 'private_key_file', 'ssh_args', 'name'):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise ParameterError('hypervisors', f'{where}: {key} must be a string')
    return {'host': host, 'user': entry.get('user'), 'port': port, 'private_key_file': entry.get('private_key_file'),
            'ssh_args': entry.get('ssh_args'), 'name': entry.get('name') or host}


def parse_hypervisors(entries):
    """The `hypervisors` option, checked: names are unique (a name is an inventory host to delegate to)."""
    parsed = [parse_hypervisor(index, entry) for index, entry in enumerate(entries or ())]
    names = [entry['name'] for entry in parsed]
    repeated = sorted(set(name for name in names if names.count(name) > 1))
    if repeated:
        raise ParameterError('hypervisors', 'hypervisors: each entry needs its own name; repeated: ' + ', '.join(repeated))
    return parsed


def ssh_host(entry):
    return SSHHost(entry['host'], user=entry['user'], port=entry['port'], private_key_file=entry['private_key_file'],
                   ssh_args=entry['ssh_args'])


def scan_remote(entry, sockets, timeout, owners):
    """(VMs, warnings) of a hypervisor over SSH; a QemuVMError (HypervisorError) when it cannot be scanned."""
    host = ssh_host(entry)
    reply = host.call(FIND, 'find_as_json', {'sockets': sockets or [], 'timeout': timeout, 'owners': list(owners or ())},
                      timeout)
    try:
        found = json.loads(reply.decode('utf-8'))
        vms, warnings = list(found['vms']), list(found['warnings'])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise host.failure(f'the scan answered {reply[:200]!r}, not its JSON', 0)
    query_all(vms, timeout, workers=REMOTE_WORKERS, connect=lambda address: RelayConnector(host, address, lock='existing'))
    return vms, warnings


def scan(entry, sockets, timeout, owners):
    """(VMs, warnings, error) of one hypervisor; each VM knows its hypervisor (name, and the entry when remote)."""
    try:
        if entry['host'] == LOCAL:
            vms, warnings = discover(sockets, timeout, owners=owners)
        else:
            vms, warnings = scan_remote(entry, sockets, timeout, owners)
    except ParameterError:
        raise
    except QemuVMError as exc:
        return [], [], f"hypervisor {entry['name']} cannot be scanned: {exc}"
    for vm in vms:
        vm['hypervisor'] = entry['name']
        vm['ssh'] = None if entry['host'] == LOCAL else dict(entry)
    return vms, [f"{entry['name']}: {warning}" for warning in warnings], None


def scan_all(entries, sockets, timeout, owners):
    """(VMs, warnings, errors) of every hypervisor, scanned in parallel."""
    if not entries:
        return [], [], []
    with ThreadPoolExecutor(max_workers=len(entries)) as pool:
        results = list(pool.map(lambda entry: scan(entry, sockets, timeout, owners), entries))
    vms, warnings, errors = [], [], []
    for found, said, error in results:
        vms.extend(found)
        warnings.extend(said)
        if error:
            errors.append(error)
    return vms, warnings, errors


def host_names(vms):
    """Unique host names for `vms` (same order) and the conflicts within one hypervisor, as assign_host_names.

    Within one hypervisor, the rule of assign_host_names. A name that VMs of more than one hypervisor
    get is given to none of them either: each becomes NAME@HYPERVISOR (the hypervisor's name).
    """
    by_hypervisor = {}
    for index, vm in enumerate(vms):
        by_hypervisor.setdefault(vm.get('hypervisor'), []).append(index)
    names = [None] * len(vms)
    conflicts = []
    for indices in by_hypervisor.values():
        local_names, local_conflicts = assign_host_names([vms[i] for i in indices])
        for index, name in zip(indices, local_names):
            names[index] = name
        conflicts.extend((base, [indices[i] for i in claimants]) for base, claimants in local_conflicts)
    owners = {}
    for index, name in enumerate(names):
        owners.setdefault(name, set()).add(vms[index].get('hypervisor'))
    for index, name in enumerate(names):
        if len(owners[name]) > 1:
            names[index] = f"{name}@{vms[index].get('hypervisor')}"
    return names, conflicts
