# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Guest account passwords through the guest agent (the logic of qemu_guest_user).

The decisions are pure functions without I/O (parse_account, password_state,
password_needs_update), unit-tested on their own; crypt_verify compares a password with the
guest's hash on the host, read_account_file asks the agent. No Ansible imports.
"""

from __future__ import annotations

import ctypes
import re

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, GuestFrozenError, ParameterError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.files import GuestFileError, GuestFiles

_CRYPT_HASH = re.compile(r'^(\$[0-9a-z]+\$[^:\s]+|[./0-9A-Za-z]{13})$')


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


def crypt_verify(password, current):
    """True/False when the host's crypt(3) can hash `password` with `current`'s salt, None when it cannot."""
    if password_state(current) != 'set':
        return False
    library = _libcrypt()
    if library is None:
        return None
    try:
        result = library.crypt(password.encode('utf-8'), current.encode('utf-8'))
    except (UnicodeError, ValueError):
        return None
    if not result or result.startswith(b'*'):
        return None
    return result.decode('ascii', 'replace') == current


def _libcrypt():
    for name in ('libcrypt.so.1', 'libcrypt.so.2', 'libcrypt.so'):
        try:
            library = ctypes.CDLL(name)
        except OSError:
            continue
        library.crypt.restype = ctypes.c_char_p
        library.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        return library
    return None


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
        data = GuestFiles(qga).read_small(path, limit)
    except GuestFrozenError:
        raise
    except (GuestFileError, CommandError):
        return None
    return None if data is None else data.decode('utf-8', 'replace')
