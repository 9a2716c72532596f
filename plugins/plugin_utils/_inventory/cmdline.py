# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This plugin_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""What a QEMU command line says about a VM, and host names for VMs. Pure functions, no I/O.

Used by the qemu.vm.qemu inventory plugin (discovery lives in discovery.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError

AGENT_PORT_NAME = 'org.qemu.guest_agent.0'
_TRUE = frozenset(['on', 'yes', 'true', 'y'])
# Options whose value we read; every other option's value is skipped.
_WANTED = frozenset(['name', 'uuid', 'qmp', 'qmp-pretty', 'chardev', 'mon', 'device', 'runas', 'run-with', 'pidfile'])
_NIL_UUID = '00000000-0000-0000-0000-000000000000'


def is_qemu_argv(argv):
    """True when argv[0] names a QEMU system emulator."""
    if not argv or not argv[0]:
        return False
    program = os.path.basename(argv[0])
    return program.startswith('qemu-system-') or program in ('qemu-kvm', 'kvm')


def split_opts(text):
    """Split a QemuOpts string on single commas; a doubled comma is a literal comma."""
    parts = []
    current = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == ',':
            if text[i + 1:i + 2] == ',':
                current.append(',')
                i += 2
                continue
            parts.append(''.join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append(''.join(current))
    return parts


def parse_opts(text, implied=None):
    """'guest=a,process=b' or 'a,process=b' (with implied='guest') -> {'guest': 'a', 'process': 'b'}.

    A bare word after the first is a flag ('server' means server=on); JSON objects
    (QEMU's JSON form of -device) are read as such. When a key repeats, the last wins, as in QEMU.
    """
    stripped = text.lstrip()
    if stripped.startswith('{'):
        try:
            loaded = json.loads(stripped)
        except ValueError:
            return {}
        if not isinstance(loaded, dict):
            return {}
        return dict((str(k), _json_text(v)) for k, v in loaded.items())
    opts = {}
    for index, part in enumerate(split_opts(text)):
        if '=' in part:
            key, value = part.split('=', 1)
        elif index == 0 and implied:
            key, value = implied, part
        elif part:
            key, value = part, 'on'
        else:
            continue
        opts[key] = value
    return opts


def _json_text(value):
    if isinstance(value, bool):
        return 'on' if value else 'off'
    return str(value)


def iter_options(argv):
    """(option, value) for the options we read; value None when the command line ends early."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith('-') or arg == '-':
            continue
        option = arg[2:] if arg.startswith('--') else arg[1:]
        if option in _WANTED:
            value = argv[i] if i < len(argv) else None
            i += 1
            yield option, value


def _resolve(path, cwd):
    if os.path.isabs(path) or not cwd:
        return path
    return os.path.normpath(os.path.join(cwd, path))


def socket_address(opts, cwd=None):
    """Address of a listening socket chardev ('path' or 'host:port'), else None."""
    if opts.get('server', 'off').lower() not in _TRUE:
        return None  # a client-mode chardev connects to someone else's socket
    if opts.get('path'):
        return _resolve(opts['path'], cwd)
    if opts.get('port'):
        return '{0}:{1}'.format(opts.get('host') or 'localhost', opts['port'])
    return None


def legacy_chardev_address(spec, cwd=None):
    """Address of a -qmp style chardev ('unix:PATH,server=on', 'tcp:HOST:PORT,server'), else None."""
    opts = parse_opts(spec, implied='backend')
    backend = opts.pop('backend', '')
    if backend.startswith('unix:'):
        opts['path'] = backend[len('unix:'):]
    elif backend.startswith('tcp:'):
        host, _sep, port = backend[len('tcp:'):].rpartition(':')
        opts['host'], opts['port'] = host.strip('[]'), port
    else:
        return None
    return socket_address(opts, cwd)


def parse_cmdline(argv, cwd=None):
    """What a QEMU argv says about its VM.

    Returns {'name', 'uuid', 'qmp': [addresses of QMP monitors, in order], 'qga': agent socket or None,
    'drops_root': whether QEMU is told to switch to another user (-runas USER, -run-with user=USER),
    'pidfile': the -pidfile path or None}.
    Relative socket paths are resolved against `cwd` (QEMU's working directory) when it is known.
    """
    info = {'name': None, 'uuid': None, 'qmp': [], 'qga': None, 'drops_root': False, 'pidfile': None}
    chardevs = {}
    monitors = []
    agent_chardev = None
    for option, value in iter_options(argv):
        if value is None:
            break
        if option == 'name':
            info['name'] = parse_opts(value, implied='guest').get('guest') or None
        elif option == 'uuid':
            info['uuid'] = value.strip().lower() or None
        elif option == 'pidfile':
            info['pidfile'] = _resolve(value, cwd) if value else None
        elif option == 'runas':
            info['drops_root'] = info['drops_root'] or bool(value)
        elif option == 'run-with':
            info['drops_root'] = info['drops_root'] or bool(parse_opts(value).get('user'))
        elif option in ('qmp', 'qmp-pretty'):
            monitors.append(('address', legacy_chardev_address(value, cwd)))
        elif option == 'chardev':
            opts = parse_opts(value, implied='backend')
            if opts.get('backend') == 'socket' and opts.get('id'):
                chardevs[opts['id']] = socket_address(opts, cwd)
        elif option == 'mon':
            opts = parse_opts(value, implied='chardev')
            if opts.get('mode') == 'control' and opts.get('chardev'):
                monitors.append(('chardev', opts['chardev']))
        elif option == 'device':
            opts = parse_opts(value, implied='driver')
            if (opts.get('driver') == 'virtserialport' and opts.get('name') == AGENT_PORT_NAME
                    and opts.get('chardev') and agent_chardev is None):
                agent_chardev = opts['chardev']
    for kind, ref in monitors:
        address = ref if kind == 'address' else chardevs.get(ref)
        if address and address not in info['qmp']:
            info['qmp'].append(address)
    if agent_chardev is not None:
        info['qga'] = chardevs.get(agent_chardev)
    return info


def qemu_vm_run_dir(info):
    """The run directory of a VM that qemu.vm.qemu_vm started, else None.

    Its layout says so: the pid file is <run_dir>/qemu.pid and the first QMP monitor <run_dir>/qmp.sock.
    """
    pidfile, qmp = info.get('pidfile'), (info.get('qmp') or [None])[0]
    if not pidfile or not isinstance(qmp, str) or os.path.basename(pidfile) != 'qemu.pid':
        return None
    run_dir = os.path.dirname(pidfile)
    return run_dir if qmp == os.path.join(run_dir, 'qmp.sock') else None


def normalize_uuid(text):
    """QEMU reports the nil UUID when none was set: that is no UUID."""
    if not text or text.lower() == _NIL_UUID:
        return None
    return text.lower()


# -- host names -------------------------------------------------------------------

_HOST_PORT = re.compile(r'^\[?(?P<host>[^\[\]/]+?)\]?:(?P<port>[0-9]{1,5})$')


def socket_label(address):
    """The name a VM without -name gets from its QMP socket: the directory's name, or host_port."""
    if not address:
        return None
    match = _HOST_PORT.match(address) if '/' not in address else None
    if match:
        return '{0}_{1}'.format(match.group('host'), match.group('port'))
    label = os.path.basename(os.path.dirname(os.path.normpath(address)))
    return label or None


def base_name(vm):
    """-name, else the QMP socket's directory name, else qemu-<pid>."""
    name = vm.get('name') or socket_label(vm.get('qmp'))
    if not name and vm.get('pid'):
        name = 'qemu-{0}'.format(vm['pid'])
    return name or 'qemu'


def _marked_name(base, vm):
    """The name a VM gets when others claim its name too: by pid, else by QMP socket."""
    if vm.get('pid'):
        return f"{base}-pid{vm['pid']}"
    digest = hashlib.sha256(str(vm.get('qmp') or '').encode('utf-8', 'surrogateescape')).hexdigest()[:8]
    return f'{base}-{digest}'


def assign_host_names(vms):
    """Unique host names for `vms` (same order), and the conflicts: [(name, [indices of the VMs claiming it])].

    A name that several VMs claim is given to none of them: which of them a play means cannot be known (a
    lower pid is no proof, another user can start a process first), so each gets a marked name,
    NAME-pid<pid> (NAME-<hash of the QMP socket> without a visible process), and a play for NAME matches no
    host instead of the wrong one. Names of VMs that claim no taken name never change.
    """
    bases = [base_name(vm) for vm in vms]
    claims = {}
    for index, base in enumerate(bases):
        claims.setdefault(base, []).append(index)
    names = list(bases)
    taken = set(bases)
    conflicts = []
    for base in sorted(base for base, indices in claims.items() if len(indices) > 1):
        indices = sorted(claims[base], key=lambda i: (vms[i].get('pid') or 0, str(vms[i].get('qmp') or '')))
        for index in indices:
            marked = candidate = _marked_name(base, vms[index])
            suffix = 2
            while candidate in taken:
                candidate = f'{marked}-{suffix}'
                suffix += 1
            names[index] = candidate
            taken.add(candidate)
        conflicts.append((base, indices))
    return names, conflicts


def describe_conflict(base, vms, names):
    """One warning naming every VM that claims `base`: host name, pid, user and sockets."""
    parts = []
    for vm, name in zip(vms, names):
        parts.append('{0} (pid {1}, user {2}, QMP {3}, agent {4})'.format(
            name, vm.get('pid') or 'not visible', vm.get('user') or 'unknown', vm.get('qmp') or 'none',
            vm.get('qga') or 'none'))
    return (f'{len(vms)} VMs claim the name {base}, so none of them is {base} and a play for {base} matches no host: '
            + '; '.join(parts) + '. Give each VM its own -name, and list in owners only users you trust.')


# -- socket patterns --------------------------------------------------------------

def glob_regex(pattern):
    """A regex matching what glob matches for `pattern`, with one group per wildcard."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == '*':
            while pattern[i + 1:i + 2] == '*':
                i += 1
            out.append('([^/]*)')
        elif char == '?':
            out.append('([^/])')
        elif char == '[':
            end = pattern.find(']', i + 2 if pattern[i + 1:i + 2] in ('!', ']') else i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1:end]
                if body.startswith('!'):
                    body = '^' + body[1:]
                out.append('([{0}])'.format(body.replace('\\', '\\\\')))
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile('^' + ''.join(out) + '$')


def agent_address(template, qmp_path, qmp_pattern):
    """The agent socket for a QMP socket matched by `qmp_pattern`, from the `qga` template.

    Placeholders: {dir} (the QMP socket's directory), {dirname} (that directory's name),
    {file} (the QMP socket's file name), {stem} (without its extension), and {0}, {1}, ...
    (the text the first, second, ... wildcard of the pattern matched).
    """
    if not template:
        return None
    match = glob_regex(qmp_pattern).match(qmp_path)
    groups = match.groups() if match else ()
    directory = os.path.dirname(qmp_path)
    file_name = os.path.basename(qmp_path)
    try:
        return template.format(*groups, dir=directory, dirname=os.path.basename(directory),
                               file=file_name, stem=os.path.splitext(file_name)[0])
    except (IndexError, KeyError, ValueError) as exc:
        raise ParameterError('sockets', f'sockets: qga {template!r} for qmp {qmp_pattern!r}: unknown or bad placeholder ({exc}); '
                             'use {dir}, {dirname}, {file}, {stem} or {0}, {1}, ... for the '
                             'wildcards')


def has_wildcard(pattern):
    return any(char in pattern for char in '*?[')
