# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""SSH authorized keys through the guest agent (the logic of qemu_guest_authorized_key).

The decisions are pure functions without I/O (parse_public_key, keys_to_add, keys_to_remove,
final_lines), unit-tested on their own; get_authorized_keys asks the agent. No Ansible imports.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    GuestFrozenError,
    ParameterError,
    VMStateError,
)

#: OpenSSH public key types (ssh-keygen -Q key), certificates included.
KEY_TYPES = frozenset([
    'ssh-ed25519', 'ssh-rsa', 'ssh-dss', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521',
    'sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com',
    'ssh-ed25519-cert-v01@openssh.com', 'ssh-rsa-cert-v01@openssh.com', 'ssh-dss-cert-v01@openssh.com',
    'ecdsa-sha2-nistp256-cert-v01@openssh.com', 'ecdsa-sha2-nistp384-cert-v01@openssh.com',
    'ecdsa-sha2-nistp521-cert-v01@openssh.com', 'sk-ssh-ed25519-cert-v01@openssh.com',
    'sk-ecdsa-sha2-nistp256-cert-v01@openssh.com',
])
_BASE64 = re.compile(r'^[A-Za-z0-9+/]+={0,2}$')


class PublicKey:
    """One OpenSSH public key line: `type base64 [comment]`; identity is (type, base64)."""

    def __init__(self, key_type, blob, comment=''):
        self.type = key_type
        self.blob = blob
        self.comment = comment

    @property
    def identity(self):
        return (self.type, self.blob)

    @property
    def line(self):
        return ' '.join(p for p in (self.type, self.blob, self.comment) if p)


def parse_public_key(text):
    """A PublicKey from one line, or ValueError saying what is wrong with it.

    Checks the OpenSSH format itself: a known type, strict base64, and a blob
    that starts with the same type name (as every OpenSSH key blob does).
    """
    if not isinstance(text, str):
        raise ValueError('not a string')
    if any(c in text for c in '\r\n\0'):
        raise ValueError('one key per entry: it contains a line break or NUL byte')
    parts = text.strip().split(None, 2)
    if len(parts) < 2:
        raise ValueError('expected "<type> <base64 data> [comment]"')
    key_type, blob = parts[0], parts[1]
    if key_type not in KEY_TYPES:
        raise ValueError(f'unknown key type {key_type[:40]!r} (options before the key are not supported)')
    if len(blob) % 4 or not _BASE64.match(blob):
        raise ValueError('the key data is not base64')
    try:
        data = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError('the key data is not base64')
    if len(data) < 4:
        raise ValueError('the key data is truncated')
    length = struct.unpack('>I', data[:4])[0]
    if data[4:4 + length] != key_type.encode('ascii'):
        raise ValueError(f'the key data is not a {key_type} key')
    return PublicKey(key_type, blob, parts[2].strip() if len(parts) > 2 else '')


def normalize_keys(value):
    """The `key` parameter (one key, several lines, or a list) as PublicKeys, duplicates dropped.

    Raises ParameterError naming `key` and the entry.
    """
    entries = value if isinstance(value, list) else [value]
    keys = []
    seen = set()
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, str):
            raise ParameterError('key', f'key: entry {number} is not a string')
        for line in entry.splitlines():
            if not line.strip():
                continue
            try:
                key = parse_public_key(line)
            except ValueError as exc:
                raise ParameterError('key', f'key: entry {number} ({_shorten(line)!r}) is not an OpenSSH public key: {exc}')
            if key.identity not in seen:
                seen.add(key.identity)
                keys.append(key)
    if not keys:
        raise ParameterError('key', 'key: no OpenSSH public key given')
    return keys


def _shorten(text, limit=60):
    text = text.strip()
    return text if len(text) <= limit else text[:limit - 3] + '...'


def line_identity(line):
    """What makes a guest's authorized_keys line the same key: (type, base64), options and comment aside."""
    tokens = line.split()
    for index, token in enumerate(tokens[:-1]):
        if token in KEY_TYPES:
            return (token, tokens[index + 1])
    return line.strip()


def keys_to_add(current_lines, wanted):
    """The wanted keys the guest does not authorize yet."""
    present = set(line_identity(line) for line in current_lines)
    return [key for key in wanted if key.identity not in present]


def keys_to_remove(current_lines, wanted, state, exclusive):
    """The guest's lines to drop: the wanted keys (state=absent), or all others (present, exclusive)."""
    identities = set(key.identity for key in wanted)
    if state == 'absent':
        return [line for line in current_lines if line_identity(line) in identities]
    if exclusive:
        return [line for line in current_lines if line_identity(line) not in identities]
    return []


def final_lines(current_lines, wanted, state, exclusive):
    """The guest's key lines after the task; existing lines keep their options and comment."""
    removed = set(keys_to_remove(current_lines, wanted, state, exclusive))
    kept = [line for line in current_lines if line not in removed]
    if state == 'absent':
        return kept
    return kept + [key.line for key in keys_to_add(current_lines, wanted)]


def authorized_keys_missing(desc):
    """Whether guest-ssh-get-authorized-keys failed only because the user has no authorized_keys file."""
    return 'failed to read' in (desc or '') and 'No such file or directory' in desc


def unknown_user(desc):
    return 'failed to lookup user' in (desc or '')


def get_authorized_keys(qga, user):
    """The user's key lines in the guest, in file order (empty when there is no authorized_keys file)."""
    try:
        reply = qga.execute('guest-ssh-get-authorized-keys', {'username': user})
    except (CommandNotFoundError, CommandDisabledError, GuestFrozenError):
        raise
    except CommandError as exc:
        if authorized_keys_missing(exc.desc):
            return []
        if unknown_user(exc.desc):
            raise VMStateError(f'user: the guest has no user {user!r} (the agent says: {exc.desc})')
        raise
    # QEMU 7.2 lists the keys last line first (it prepends each one).
    return list(reversed(reply.get('keys', [])))
