# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Guest account passwords through the guest agent (the logic of qemu_guest_user).

The decisions are pure functions without I/O (parse_account, password_state,
password_needs_update), unit-tested on their own; crypt_verify compares a password with the
guest's hash on the host, in a child process bounded in time and memory (the guest chooses the
hash's cost); read_account_file asks the agent. No Ansible imports.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, GuestFrozenError, ParameterError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import GuestFileError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.files import GuestFileSystem

_CRYPT_HASH = re.compile(r'^(\$[0-9a-z]+\$[^:\s]+|[./0-9A-Za-z]{13})$')
#: Bounds of one crypt(3) comparison against a hash the guest wrote (see crypt_verify): seconds (the
#: task's timeout when smaller) and bytes of memory beyond what the child Python already uses.
#: Common hashes take milliseconds (sha512crypt's default 5000 rounds) to a second (bcrypt cost 14).
CRYPT_TIMEOUT = 5.0
CRYPT_MEMORY = 512 * 1024 * 1024
_NO_LIBCRYPT = 3
# The child: reads {"password", "hash"} on stdin, caps its memory and CPU time, prints crypt(3)'s answer;
# exit 3 without libcrypt, 4 when crypt(3) refuses the hash (unknown method, out of memory).
_CRYPT_CHILD = r'''
import ctypes, json, os, resource, sys
memory, seconds = int(sys.argv[1]), int(sys.argv[2])
request = json.loads(sys.stdin.read())
library = None
for name in ("libcrypt.so.1", "libcrypt.so.2", "libcrypt.so"):
    try:
        library = ctypes.CDLL(name)
        break
    except OSError:
        pass
if library is None:
    sys.exit(3)
library.crypt.restype = ctypes.c_char_p
library.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
try:
    with open("/proc/self/statm") as handle:
        used = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (used + memory, used + memory))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
except (OSError, ValueError):
    pass
result = library.crypt(request["password"].encode("utf-8"), request["hash"].encode("utf-8"))
if not result or result.startswith(b"*"):
    sys.exit(4)
sys.stdout.write(result.decode("ascii", "replace"))
'''


def check_password(password, crypted):
    if not password:
        raise ParameterError('password', 'password must not be empty')
    if any(c in password for c in '\r\n\0'):
        raise ParameterError('password', 'password must not contain line breaks or NUL bytes')
    if crypted and ':' in password:
        raise ParameterError('password', 'password: a crypt hash cannot contain ":" (with crypted=true the '
                                         'password is the hash itself)')


def looks_like_crypt_hash(value):
    return bool(_CRYPT_HASH.match(value or ''))


def parse_account(passwd_text, shadow_text, name):
    """(exists, hash) for user `name`: exists is None when /etc/passwd was unreadable, hash None when unknown.

    The hash comes from /etc/shadow, or from /etc/passwd when that field is not 'x'.
    """
    passwd = _fields(passwd_text, name)
    exists = None if passwd_text is None else passwd is not None
    current = None
    if shadow_text is not None:
        shadow = _fields(shadow_text, name)
        current = shadow[1] if shadow is not None and len(shadow) > 1 else None
    if current is None and passwd is not None and len(passwd) > 1 and passwd[1] != 'x':
        current = passwd[1]
    return exists, current


def _fields(text, name):
    for line in (text or '').splitlines():
        fields = line.split(':')
        if fields[0] == name:
            return fields
    return None


def password_state(current):
    """'none' (never set: empty, '*', '!', '!!'), 'locked' (a hash behind '!'), 'set', or 'unknown' (None)."""
    if current is None:
        return 'unknown'
    if not current.strip('!*'):
        return 'none'
    if current.startswith('!'):
        return 'locked'
    return 'set'


def password_needs_update(current, password, crypted, update_password, verify=None):
    """Whether to set the password, given the guest's current hash (None when it cannot be read).

    update_password=on_create sets it only on an account that has none yet (the agent
    cannot create accounts, so "created" means "no password set so far"). `verify(plain,
    hash)` answers True/False, or None when it cannot say; without an answer a plain-text
    password is set again.
    """
    if update_password == 'on_create':
        if current is None:
            raise VMStateError('update_password=on_create needs the guest\'s /etc/shadow to tell whether the '
                               'account has a password, and the guest agent could not read it')
        return password_state(current) == 'none'
    if current is None:
        return True
    if crypted:
        return current != password
    return verify(password, current) is not True if verify else True


def crypt_method(current):
    """The method (and cost) fields of a crypt hash for messages: `$2b$31$`, `$6$rounds=5000$`, never salt or digest."""
    parts = (current or '').split('$')
    if len(parts) < 4 or parts[0]:
        return 'DES or unknown'
    cost = parts[2]
    if cost.startswith('rounds=') or (parts[1].startswith('2') and cost.isdigit()) or parts[1] in ('y', 'gy'):
        return f'${parts[1]}${cost}$'
    return f'${parts[1]}$'


def crypt_verify(password, current, timeout=CRYPT_TIMEOUT, warn=None):
    """True/False when the host's crypt(3) can hash `password` with `current`'s salt, None when it cannot say.

    `current` comes from the guest, which chooses its cost too (bcrypt `$2b$31$` takes days,
    sha512crypt allows 999999999 rounds, yescrypt gigabytes of memory). So crypt(3) runs in a child
    Python, given the password on its standard input (never its arguments), killed after `timeout`
    seconds, its memory capped at CRYPT_MEMORY. When it cannot answer, `warn` (if given) is told why.
    """
    if password_state(current) != 'set':
        return False
    method = crypt_method(current)
    request = json.dumps({'password': password, 'hash': current}).encode('utf-8')
    argv = [sys.executable, '-I', '-S', '-c', _CRYPT_CHILD, str(CRYPT_MEMORY), str(int(timeout) + 2)]
    try:
        proc = subprocess.run(argv, input=request, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        _tell(warn, f'the password could not be compared with the guest\'s current hash ({method}): crypt(3) did not '
                    f'finish within {timeout:g} s, the cost the guest\'s hash asks for is too high; it was stopped and the '
                    'password is treated as different')
        return None
    except OSError as exc:
        _tell(warn, f'the password could not be compared with the guest\'s current hash: cannot run {sys.executable}: {exc}')
        return None
    if proc.returncode == 0:
        return proc.stdout.decode('ascii', 'replace') == current
    if proc.returncode != _NO_LIBCRYPT:
        _tell(warn, f'the password could not be compared with the guest\'s current hash ({method}): this host\'s crypt(3) '
                    f'does not know the method or refused its cost (more than {CRYPT_MEMORY >> 20} MiB of memory); the '
                    'password is treated as different')
    return None


def password_verifier(timeout, warn=None):
    """crypt_verify for one task, which compares at most twice (before setting, and the new hash after):
    each comparison gets CRYPT_TIMEOUT, or half the task's `timeout` when that is shorter; `warn` is told
    why one could not answer."""
    bound = min(CRYPT_TIMEOUT, timeout / 2.0)

    def verify(password, current):
        return crypt_verify(password, current, bound, warn)
    return verify


def _tell(warn, message):
    if warn is not None:
        warn(message)


def explain_password_error(exc):
    """The agent's reason for a failed guest-set-user-password, with what it means for the guest."""
    desc = exc.desc or ''
    if 'cannot find' in desc and 'PATH' in desc:
        hint = ('the guest has no chpasswd program in the agent\'s PATH, which the agent runs to set passwords; '
                'install it in the guest (Debian/Ubuntu: passwd, RHEL/Fedora: shadow-utils)')
    elif 'failed to set user password' in desc:
        hint = 'the guest\'s chpasswd refused the change (is the account in its /etc/shadow?)'
    elif 'forbidden characters' in desc:
        hint = 'the agent refuses user names with ":" and passwords with line breaks'
    else:
        return exc
    return CommandError(exc.command, exc.error_class, desc, message=f'{exc.command} failed in the guest: {desc} ({exc.error_class}): {hint}')


def read_account_file(qga, path, limit=4 * 1024 * 1024):
    """The text of a small guest file through guest-file-*, or None when the agent cannot read it."""
    try:
        data = GuestFileSystem(qga).read_small(path, limit)
    except GuestFrozenError:
        raise
    except (GuestFileError, CommandError):
        return None
    return None if data is None else data.decode('utf-8', 'replace')
