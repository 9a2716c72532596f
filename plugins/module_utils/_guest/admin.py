# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Guest administration through the guest agent: SSH authorized keys, the clock, passwords.

The decisions are pure functions without I/O (keys_to_add, keys_to_remove,
needs_time_set, password_needs_update, ...), unit-tested on their own; the few
helpers at the end of each part ask the agent. No Ansible imports: the modules
qemu_guest_authorized_key, qemu_guest_time and qemu_guest_user are thin wrappers.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import datetime
import decimal
import re
import struct
import time

from ansible_collections.qemu.vm.plugins.module_utils._errors import (
    CommandDisabledError,
    CommandError,
    CommandNotFoundError,
    GuestFrozenError,
    ParameterError,
    VMStateError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import GuestFileError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.files import GuestFileSystem

# -- SSH authorized keys -----------------------------------------------------------------

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


# -- the clock ---------------------------------------------------------------------------

NS = 10 ** 9
#: guest-set-time refuses moments outside these years.
TIME_YEARS = (1970, 2069)


def parse_time(value):
    """Nanoseconds since the epoch from `time`: epoch seconds, or ISO 8601 with a UTC offset or Z."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        number = decimal.Decimal(text)
    except decimal.InvalidOperation:
        number = None
    if number is not None:
        stamp = int(number * NS) if number.is_finite() and abs(number) < 10 ** 10 else None
    else:
        iso = text[:-1] + '+00:00' if text[-1:] in ('Z', 'z') else text
        try:
            moment = datetime.datetime.fromisoformat(iso)
        except ValueError:
            raise ParameterError('time', f'time: {text!r} is neither seconds since the epoch nor an ISO 8601 date '
                                         'and time such as 2026-01-01T02:00:00Z')
        if moment.tzinfo is None:
            raise ParameterError('time', f'time: {text!r} has no UTC offset; add Z or +HH:MM')
        delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        stamp = (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000
    year = None if stamp is None else datetime.datetime.fromtimestamp(stamp // NS, tz=datetime.timezone.utc).year
    if year is None or not TIME_YEARS[0] <= year <= TIME_YEARS[1]:
        raise ParameterError('time', f'time: {text!r} is outside the years {TIME_YEARS[0]}-{TIME_YEARS[1]} the guest agent accepts')
    return stamp


def check_max_drift(value):
    if value < 0:
        raise ParameterError('max_drift', f'max_drift must be 0 or more seconds, got {value:g}')
    return value


def needs_time_set(drift_ns, max_drift):
    """Whether a guest clock `drift_ns` off its target must be set (more than `max_drift` seconds)."""
    return abs(drift_ns) > max_drift * NS


class ClockReading:
    """One guest-get-time, with the host clock read around it."""

    def __init__(self, guest_ns, host_before_ns, host_after_ns):
        self.guest_ns = guest_ns
        self.host_ns = (host_before_ns + host_after_ns) // 2
        self.round_trip_ns = host_after_ns - host_before_ns

    def drift(self, target_ns=None):
        """Guest minus target (the host clock by default), in ns; positive when the guest is ahead."""
        return self.guest_ns - (self.host_ns if target_ns is None else target_ns)


def read_clock(qga):
    before = time.time_ns()
    guest = qga.execute('guest-get-time')
    return ClockReading(guest, before, time.time_ns())


def expected_guest_ns(moment_ns, set_at_ns, host_ns):
    """Where a guest clock set to `moment_ns` at host time `set_at_ns` should be at host time `host_ns`."""
    return moment_ns + (host_ns - set_at_ns)


def explain_time_error(exc):
    """The agent's reason for a failed guest-set-time, with what it means for the guest."""
    if 'not currently supported' in (exc.desc or ''):
        return CommandError(exc.command, exc.error_class, exc.desc, message=(
            f'{exc.command} failed in the guest: {exc.desc} ({exc.error_class}): on Linux the agent needs /sbin/hwclock in the guest to set the '
            'clock (install util-linux or busybox\'s hwclock)'))
    return exc


def hwclock_failed(desc):
    """guest-set-time set the clock, then `hwclock -w` failed (the hardware clock was not written)."""
    return 'hwclock' in (desc or '')


def seconds(ns):
    return round(ns / NS, 3)


def iso8601(ns):
    stamp = datetime.datetime.fromtimestamp(ns // NS, tz=datetime.timezone.utc)
    return stamp.strftime('%Y-%m-%dT%H:%M:%S') + f'.{(ns % NS) // 10 ** 6:03d}Z'


# -- passwords ---------------------------------------------------------------------------

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
        data = GuestFileSystem(qga).read_small(path, limit)
    except GuestFrozenError:
        raise
    except (GuestFileError, CommandError):
        return None
    return None if data is None else data.decode('utf-8', 'replace')
