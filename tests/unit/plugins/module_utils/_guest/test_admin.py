# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest_admin decisions (keys, clock, passwords), without a guest: pure functions only.
The real agent's behaviour is covered in tests/system/test_guest_admin.py."""

from __future__ import annotations

import base64
import hashlib
import itertools
import struct

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._guest import admin
from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, ParameterError, QemuVMError, VMStateError

NS = 10 ** 9


# Key bodies differ per call but not per run: parametrize ids show them, and pytest-xdist workers must
# collect the same ids.
_KEY_SERIAL = itertools.count()


def make_key(key_type='ssh-ed25519', comment='someone@host', body=None):
    name = key_type.encode()
    if body is None:
        body = struct.pack('>I', 32) + hashlib.sha256(f'test key {next(_KEY_SERIAL)}'.encode()).digest()
    blob = struct.pack('>I', len(name)) + name + body
    return ' '.join(p for p in (key_type, base64.b64encode(blob).decode(), comment) if p)


KEY_A = make_key(comment='a@host')
KEY_B = make_key(comment='b@host')
KEY_C = make_key('ecdsa-sha2-nistp256', comment='')


# -- keys -----------------------------------------------------------------------------------


def test_parse_public_key_accepts_openssh_keys():
    key = admin.parse_public_key('  ' + KEY_A + '  ')
    assert key.type == 'ssh-ed25519'
    assert key.comment == 'a@host'
    assert key.line == KEY_A
    assert admin.parse_public_key(KEY_C).comment == ''


@pytest.mark.parametrize('text, reason', [
    ('ssh-ed25519', 'expected'),
    ('not-a-type AAAA', 'unknown key type'),
    ('ssh-ed25519 !!!notbase64', 'not base64'),
    ('ssh-ed25519 AAAAB3', 'not base64'),
    ('ssh-rsa ' + make_key().split()[1], 'not a ssh-rsa key'),
    ('ssh-ed25519 AAAA', 'truncated'),
    (KEY_A + '\n' + KEY_B, 'line break'),
    ('from="10.0.0.1" ' + KEY_A, 'unknown key type'),
])
def test_parse_public_key_rejects_malformed(text, reason):
    with pytest.raises(ValueError, match=reason):
        admin.parse_public_key(text)


def test_normalize_keys_forms_and_duplicates():
    assert [k.line for k in admin.normalize_keys(KEY_A)] == [KEY_A]
    assert [k.line for k in admin.normalize_keys(KEY_A + '\n\n' + KEY_B + '\n')] == [KEY_A, KEY_B]
    same_key_other_comment = KEY_A.rsplit(' ', 1)[0] + ' other'
    assert [k.line for k in admin.normalize_keys([KEY_A, same_key_other_comment, KEY_B])] == [KEY_A, KEY_B]


@pytest.mark.parametrize('value', ['garbage', [KEY_A, 'ssh-ed25519 xx'], [KEY_A, 5], '', ['  ']])
def test_normalize_keys_errors_name_key(value):
    with pytest.raises(ParameterError) as info:
        admin.normalize_keys(value)
    assert info.value.parameter == 'key'
    assert str(info.value).startswith('key:')
    assert isinstance(info.value, QemuVMError)


def test_line_identity_ignores_options_and_comment():
    key_type, blob = KEY_A.split()[:2]
    assert admin.line_identity(f'no-pty,from="x y" {key_type} {blob} other comment') == (key_type, blob)
    assert admin.line_identity('not a key line') == 'not a key line'


def test_keys_to_add_skips_present_keys_whatever_their_comment():
    current = [KEY_A.rsplit(' ', 1)[0] + ' renamed']
    wanted = admin.normalize_keys([KEY_A, KEY_B])
    assert [k.line for k in admin.keys_to_add(current, wanted)] == [KEY_B]
    assert admin.keys_to_add(current + [KEY_B], wanted) == []


def test_keys_to_remove_by_state_and_exclusive():
    wanted = admin.normalize_keys([KEY_A])
    current = [KEY_A, KEY_B, KEY_C]
    assert admin.keys_to_remove(current, wanted, 'absent', False) == [KEY_A]
    assert admin.keys_to_remove(current, wanted, 'present', False) == []
    assert admin.keys_to_remove(current, wanted, 'present', True) == [KEY_B, KEY_C]
    assert admin.keys_to_remove([KEY_B], wanted, 'absent', False) == []


def test_final_lines_keep_existing_lines_and_append_new():
    wanted = admin.normalize_keys([KEY_B, KEY_A])
    assert admin.final_lines([KEY_C, KEY_A], wanted, 'present', False) == [KEY_C, KEY_A, KEY_B]
    assert admin.final_lines([KEY_C, KEY_A], wanted, 'present', True) == [KEY_A, KEY_B]
    assert admin.final_lines([KEY_C, KEY_A], wanted, 'absent', False) == [KEY_C]


def test_agent_error_readers():
    assert admin.authorized_keys_missing(
        "failed to read '/home/t/.ssh/authorized_keys': Failed to open file \u201c/home/t/.ssh/authorized_keys\u201d: "
        "No such file or directory")
    assert not admin.authorized_keys_missing("failed to read '/x': Permission denied")
    assert admin.unknown_user("failed to lookup user 'nosuch': Success")


class FakeAgent:
    """Answers guest-ssh-get-authorized-keys like qemu-ga 7.2: a reply, or an error."""

    def __init__(self, reply):
        self.reply = reply

    def execute(self, command, arguments=None, timeout=None):
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def test_get_authorized_keys_reads_the_agent_reply_in_file_order():
    assert admin.get_authorized_keys(FakeAgent({'keys': [KEY_B, KEY_A]}), 'tester') == [KEY_A, KEY_B]
    missing = CommandError('guest-ssh-get-authorized-keys', 'GenericError',
                           "failed to read '/home/t/.ssh/authorized_keys': Failed to open file: No such file or directory")
    assert admin.get_authorized_keys(FakeAgent(missing), 'tester') == []
    unknown = CommandError('guest-ssh-get-authorized-keys', 'GenericError', "failed to lookup user 'x': Success")
    with pytest.raises(VMStateError, match="no user 'x'"):
        admin.get_authorized_keys(FakeAgent(unknown), 'x')
    denied = CommandError('guest-ssh-get-authorized-keys', 'GenericError', "failed to read '/x': Permission denied")
    with pytest.raises(CommandError, match='Permission denied'):
        admin.get_authorized_keys(FakeAgent(denied), 'tester')


# -- clock ----------------------------------------------------------------------------------


@pytest.mark.parametrize('value, expected', [
    (None, None),
    ('0', 0),
    ('1700000000.5', 1700000000 * NS + NS // 2),
    ('2026-01-01T02:00:00Z', 1767232800 * NS),
    ('2026-01-01T03:00:00+01:00', 1767232800 * NS),
    ('2026-01-01 02:00:00.250000+00:00', 1767232800 * NS + NS // 4),
])
def test_parse_time(value, expected):
    assert admin.parse_time(value) == expected


@pytest.mark.parametrize('value, match', [
    ('yesterday', 'neither'),
    ('2026-01-01T02:00:00', 'no UTC offset'),
    ('2070-01-01T00:00:00Z', 'outside the years'),
    ('-5', 'outside the years'),
    ('nan', 'outside the years'),
    ('1e300', 'outside the years'),
    ('9999999999', 'outside the years'),
    ('-9999999999', 'outside the years'),
])
def test_parse_time_errors_name_time(value, match):
    with pytest.raises(ParameterError, match=match) as info:
        admin.parse_time(value)
    assert info.value.parameter == 'time'


def test_needs_time_set_is_strictly_beyond_max_drift():
    assert not admin.needs_time_set(0, 1.0)
    assert not admin.needs_time_set(NS, 1.0)
    assert admin.needs_time_set(NS + 1, 1.0)
    assert admin.needs_time_set(-3600 * NS, 1.0)
    assert admin.needs_time_set(1, 0)
    with pytest.raises(ParameterError):
        admin.check_max_drift(-1)


def test_clock_reading_uses_the_host_midpoint():
    reading = admin.ClockReading(guest_ns=1000 * NS, host_before_ns=1100 * NS, host_after_ns=1100 * NS + 20)
    assert reading.host_ns == 1100 * NS + 10
    assert reading.round_trip_ns == 20
    assert reading.drift() == -100 * NS - 10
    assert reading.drift(1000 * NS) == 0


def test_expected_guest_ns_runs_on_from_the_moment_set():
    assert admin.expected_guest_ns(500, 1000, 1300) == 800


def test_time_error_readers():
    assert admin.hwclock_failed('hwclock failed to set hardware clock to system time')
    unsupported = CommandError('guest-set-time', 'GenericError', 'this feature or command is not currently supported')
    assert '/sbin/hwclock' in str(admin.explain_time_error(unsupported))
    other = CommandError('guest-set-time', 'GenericError', 'Invalid time')
    assert admin.explain_time_error(other) is other


def test_iso8601_and_seconds():
    assert admin.iso8601(1767232800 * NS + 5 * 10 ** 6) == '2026-01-01T02:00:00.005Z'
    assert admin.seconds(-3600 * NS - 12345678) == -3600.012


# -- passwords ------------------------------------------------------------------------------

PASSWD = 'root:x:0:0:root:/root:/bin/sh\ntester:x:1001:1001::/home/tester:/bin/sh\nold:$1$ab$cd:5:5::/:/bin/sh\n'
SHADOW = 'root:*:20000:0:99999:7:::\ntester:$6$salt$hash:20000:0:99999:7:::\n'


def test_parse_account():
    assert admin.parse_account(PASSWD, SHADOW, 'tester') == (True, '$6$salt$hash')
    assert admin.parse_account(PASSWD, SHADOW, 'nosuch') == (False, None)
    assert admin.parse_account(PASSWD, SHADOW, 'old') == (True, '$1$ab$cd')
    assert admin.parse_account(None, None, 'tester') == (None, None)
    assert admin.parse_account(PASSWD, None, 'tester') == (True, None)


@pytest.mark.parametrize('current, state', [
    (None, 'unknown'), ('', 'none'), ('*', 'none'), ('!', 'none'), ('!!', 'none'), ('!*', 'none'),
    ('!$6$salt$hash', 'locked'), ('$6$salt$hash', 'set'),
])
def test_password_state(current, state):
    assert admin.password_state(current) == state


def test_check_password():
    admin.check_password('$6$salt$hash', True)
    admin.check_password('plain: with colon', False)
    for password, crypted in (('', True), ('a\nb', False), ('$6$a:b', True)):
        with pytest.raises(ParameterError) as info:
            admin.check_password(password, crypted)
        assert info.value.parameter == 'password'


def test_looks_like_crypt_hash():
    assert admin.looks_like_crypt_hash('$6$salt$hash')
    assert admin.looks_like_crypt_hash('$y$j9T$salt$hash')
    assert admin.looks_like_crypt_hash('abcdefghijklm')
    assert not admin.looks_like_crypt_hash('hunter2')


def test_password_needs_update_always():
    assert not admin.password_needs_update('$6$s$h', '$6$s$h', True, 'always')
    assert admin.password_needs_update('$6$s$h', '$6$s$other', True, 'always')
    assert admin.password_needs_update('!', '$6$s$h', True, 'always')
    assert admin.password_needs_update(None, '$6$s$h', True, 'always')
    assert not admin.password_needs_update('$6$s$h', 'pw', False, 'always', lambda p, h: True)
    assert admin.password_needs_update('$6$s$h', 'pw', False, 'always', lambda p, h: False)
    assert admin.password_needs_update('$6$s$h', 'pw', False, 'always', lambda p, h: None)
    assert admin.password_needs_update('$6$s$h', 'pw', False, 'always')


def test_password_needs_update_on_create_means_no_password_yet():
    assert admin.password_needs_update('!', '$6$s$h', True, 'on_create')
    assert admin.password_needs_update('', 'pw', False, 'on_create')
    assert not admin.password_needs_update('$6$s$other', '$6$s$h', True, 'on_create')
    assert not admin.password_needs_update('!$6$s$other', '$6$s$h', True, 'on_create')
    with pytest.raises(VMStateError, match='/etc/shadow'):
        admin.password_needs_update(None, '$6$s$h', True, 'on_create')


def test_crypt_verify_with_the_host_libcrypt():
    sha512 = '$6$TRsH.0uRMXFihb8c$l8KOCzKzp3JwuMepwxMgdGs0kdQFrIf9YHpZDEJ3/Sy6m.KtgHlEwLUqs7JMpyfRPO6ENcMHwIkaFNvhjkcjQ.'
    assert admin._libcrypt() is not None  # Debian's libcrypt1
    assert admin.crypt_verify('secret', sha512) is True
    assert admin.crypt_verify('wrong', sha512) is False
    assert admin.crypt_verify('secret', '!') is False


def test_explain_password_error():
    missing = CommandError('guest-set-user-password', 'GenericError', "cannot find 'passwd' program in PATH")
    text = str(admin.explain_password_error(missing))
    assert "cannot find 'passwd' program in PATH" in text and 'chpasswd' in text
    refused = CommandError('guest-set-user-password', 'GenericError', 'child process has failed to set user password')
    assert 'refused' in str(admin.explain_password_error(refused))
    other = CommandError('guest-set-user-password', 'GenericError', 'something else')
    assert admin.explain_password_error(other) is other
