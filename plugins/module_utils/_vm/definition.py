# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""A VM's definition read from qemu_vm's parameters: checked, normalised, typed. Pure, no I/O
beyond looking up a user name.

`parse_request(params)` -> VMRequest, or ParameterError naming the option. The request's
`definition` is the JSON-able dict that is recorded in vm.json and compared with the running
VM's (what makes a restart necessary); creation-only details (a disk's size and backing image)
are kept out of it, because an existing image is never changed.

No Ansible imports here.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import uuid
from typing import NamedTuple, Optional

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError

STATES = ('running', 'stopped', 'absent', 'restarted')
DEFAULT_RUN_ROOT = '/run/qemu-vm'
#: Unix socket paths are at most 107 bytes; the longest name we put in the run directory.
MAX_SOCKET_PATH = 107
LONGEST_SOCKET = 'monitor.sock'
#: The node name and device id of the cloud-init seed; a disk may not take it.
SEED_ID = 'cloud-init'

_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')
_ID = re.compile(r'^[A-Za-z][A-Za-z0-9_-]{0,31}$')
_SIZE = re.compile(r'^\s*([0-9]+)\s*(?:([KMGTkmgt])(?:i?[Bb])?)?\s*$')
_UNITS = {None: 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40}
_HOSTFWD = re.compile(r'^(?:(?:tcp|udp):)?([0-9.]*):([0-9]{1,5})-([0-9.]*):([0-9]{1,5})$')
_MAC = re.compile(r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$')


class DiskSpec(NamedTuple):
    path: str
    format: str
    size: Optional[int]
    backing: Optional[str]
    readonly: bool
    id: str

    def recorded(self):
        """What of this disk is compared with the running VM (size and backing only matter at creation)."""
        return {'id': self.id, 'path': self.path, 'format': self.format, 'readonly': self.readonly}


class VMRequest(NamedTuple):
    name: str
    state: str
    run_dir: str
    definition: dict
    disks: tuple
    seed_files: Optional[dict]
    uid: Optional[int]
    wait: str
    wait_timeout: float
    stop_timeout: float
    timeout: float
    restart: bool
    remove_disks: bool

    @property
    def starts(self):
        return self.state in ('running', 'restarted')


def parse_size(value, option, default_unit=None):
    """Bytes from an integer or a string such as 512M or 2G (binary units); `default_unit` for bare numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ParameterError(option, f'{option}: {value!r} is not a size')
    match = _SIZE.match(str(value))
    if not match:
        raise ParameterError(option, f'{option}: {value!r} is not a size; give a number with an optional unit K, M, G or T '
                                     '(binary: 1G is 1024M), for example 512M or 2G')
    unit = (match.group(2) or default_unit or '').lower() or None
    size = int(match.group(1)) * _UNITS[unit]
    if size <= 0:
        raise ParameterError(option, f'{option}: {value!r} must be greater than 0')
    return size


def parse_memory(value):
    """MiB from `memory` (a bare number is MiB)."""
    size = parse_size(value, 'memory', default_unit='M')
    if size % (1 << 20):
        raise ParameterError('memory', f'memory: {value!r} is not a whole number of MiB')
    return size // (1 << 20)


def check_name(name):
    if not name or not _NAME.match(name):
        raise ParameterError('name', f'name: {name!r} is not a VM name: use 1 to 64 letters, digits, ".", "_" or "-", '
                                     'starting with a letter or digit (no "/", no "..")')
    return name


def default_uuid(name):
    """Stable per name: the same name gets the same UUID on every run (UUID v5)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f'qemu.vm:{name}'))


def default_mac(name):
    """Stable per name, in QEMU's locally administered 52:54:00 range."""
    digest = hashlib.sha256(f'qemu.vm:{name}'.encode()).digest()
    return '52:54:00:' + ':'.join(f'{b:02x}' for b in digest[:3])


def check_absolute(path, option):
    if not path or not os.path.isabs(path):
        raise ParameterError(option, f'{option}: {path!r} is not an absolute path')
    return os.path.normpath(path)


def parse_disks(entries):
    disks, taken_nodes, paths = [], set([SEED_ID, SEED_ID + '-file']), set()
    for index, entry in enumerate(entries or []):
        where = f'disks[{index}]'
        path = check_absolute(entry.get('path'), f'{where}.path')
        disk_id = entry.get('id') or f'disk{index}'
        if not _ID.match(disk_id):
            raise ParameterError('disks', f'{where}.id: {disk_id!r} is not a device id: use up to 32 letters, digits, "_" or '
                                          '"-", starting with a letter')
        for node in (disk_id, disk_id + '-file'):
            if node in taken_nodes:
                raise ParameterError('disks', f'{where}.id: {disk_id!r} is used twice (ids, their "-file" nodes and '
                                              f'{SEED_ID!r} must all differ)')
            taken_nodes.add(node)
        if path in paths:
            raise ParameterError('disks', f'{where}.path: {path} is attached twice')
        paths.add(path)
        fmt = entry.get('format') or 'qcow2'
        backing = entry.get('backing')
        if backing is not None:
            backing = check_absolute(backing, f'{where}.backing')
            if fmt != 'qcow2':
                raise ParameterError('disks', f'{where}.backing: an overlay is a qcow2 image, not {fmt}')
            if backing == path:
                raise ParameterError('disks', f'{where}.backing: {path} cannot be its own backing image')
        size = entry.get('size')
        if size is not None:
            size = parse_size(size, f'{where}.size')
        disks.append(DiskSpec(path, fmt, size, backing, bool(entry.get('readonly')), disk_id))
    return tuple(disks)


def parse_network(params):
    mode = params.get('network') or 'none'
    hostfwd, mac = list(params.get('hostfwd') or []), params.get('mac')
    if mode == 'none':
        if hostfwd or mac:
            raise ParameterError('network', 'hostfwd and mac need network: user')
        return mode, [], None
    ports = set()
    for rule in hostfwd:
        match = _HOSTFWD.match(rule or '')
        if not match or not all(0 < int(p) < 65536 for p in (match.group(2), match.group(4))):
            raise ParameterError('hostfwd', f'hostfwd: {rule!r} is not a forwarding rule such as tcp:127.0.0.1:2222-:22 '
                                            '([tcp|udp:][hostaddr]:hostport-[guestaddr]:guestport, IPv4)')
        key = (rule.split(':')[0] if rule.startswith(('tcp:', 'udp:')) else 'tcp', match.group(1), match.group(2))
        if key in ports:
            raise ParameterError('hostfwd', f'hostfwd: host port {match.group(2)} is forwarded twice')
        ports.add(key)
    mac = (mac or default_mac(params['name'])).lower()
    if not _MAC.match(mac) or int(mac[:2], 16) & 1:
        raise ParameterError('mac', f'mac: {params.get("mac")!r} is not a unicast MAC address such as 52:54:00:12:34:56')
    return mode, hostfwd, mac


def seed_files(cloud_init, name, vm_uuid):
    """The NoCloud seed's files {file name: text}, or None without cloud_init."""
    if not cloud_init:
        return None
    files = {
        'user-data': cloud_init.get('user_data') or '',
        'meta-data': cloud_init.get('meta_data') or f'instance-id: {vm_uuid}\nlocal-hostname: {name}\n',
    }
    if cloud_init.get('network_config'):
        files['network-config'] = cloud_init['network_config']
    return files


def content_digest(files):
    if files is None:
        return None
    return 'sha256:' + hashlib.sha256(json.dumps(files, sort_keys=True).encode('utf-8')).hexdigest()


def lookup_user(user):
    if not user:
        return None
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ParameterError('user', f'user: no user {user!r} on this host') from None


def parse_request(params):
    """The checked request; ParameterError (naming the option) on the first bad value."""
    name = check_name(params['name'])
    run_dir = check_absolute(params.get('run_dir') or os.path.join(DEFAULT_RUN_ROOT, name), 'run_dir')
    if ',' in run_dir:
        raise ParameterError('run_dir', f'run_dir: {run_dir} contains a comma, which QEMU\'s option syntax cannot carry')
    if len(os.path.join(run_dir, LONGEST_SOCKET).encode()) > MAX_SOCKET_PATH:
        raise ParameterError('run_dir', f'run_dir: {run_dir} is too long for unix sockets in it '
                                        f'({LONGEST_SOCKET} must fit in {MAX_SOCKET_PATH} bytes)')
    try:
        vm_uuid = str(uuid.UUID(params['uuid'])) if params.get('uuid') else default_uuid(name)
    except ValueError:
        raise ParameterError('uuid', f'uuid: {params["uuid"]!r} is not a UUID') from None
    cpus = 1 if params.get('cpus') is None else params['cpus']
    if cpus < 1 or cpus > 1024:
        raise ParameterError('cpus', f'cpus: {cpus} is not between 1 and 1024')
    kernel = check_absolute(params['kernel'], 'kernel') if params.get('kernel') else None
    for option in ('initrd', 'append'):
        if params.get(option) and not kernel:
            raise ParameterError(option, f'{option} needs kernel (direct kernel boot)')
    initrd = check_absolute(params['initrd'], 'initrd') if params.get('initrd') else None
    disks = parse_disks(params.get('disks'))
    network, hostfwd, mac = parse_network(params)
    files = seed_files(params.get('cloud_init'), name, vm_uuid)
    uid = lookup_user(params.get('user'))
    definition = {
        'name': name, 'uuid': vm_uuid, 'memory': parse_memory(1024 if params.get('memory') is None else params['memory']), 'cpus': cpus,
        'machine': params.get('machine') or 'q35', 'accel': params.get('accel') or 'auto', 'cpu': params.get('cpu'),
        'firmware': params.get('firmware') or 'bios', 'kernel': kernel, 'initrd': initrd, 'append': params.get('append'),
        'disks': [d.recorded() for d in disks], 'network': network, 'hostfwd': hostfwd, 'mac': mac,
        'cloud_init': content_digest(files), 'extra_args': list(params.get('extra_args') or []),
        'serial_log': bool(params.get('serial_log', True)), 'user': params.get('user'),
    }
    if ',' in definition['machine'] or ',' in (definition['cpu'] or ''):
        raise ParameterError('machine' if ',' in definition['machine'] else 'cpu',
                             'machine and cpu take a model name; give further properties in extra_args')
    return VMRequest(name, params.get('state') or 'running', run_dir, definition, disks, files, uid,
                     params.get('wait') or 'qmp', params['wait_timeout'], params['stop_timeout'], params['timeout'],
                     bool(params.get('restart')), bool(params.get('remove_disks')))


def differences(recorded, wanted):
    """The definition keys whose values differ (all of them when nothing is recorded)."""
    if not isinstance(recorded, dict):
        return sorted(wanted)
    return sorted(key for key in wanted if recorded.get(key) != wanted[key])
