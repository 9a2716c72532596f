# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest.ssh_keys decisions, without a guest: pure functions and a fake agent reply.
The real agent's behaviour is covered in tests/system/test_guest_admin.py."""

from __future__ import annotations

import base64
import hashlib
import itertools
import struct

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, ParameterError, QemuVMError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest_admin import ssh_keys


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
    key = ssh_keys.parse_public_key('  ' + KEY_A + '  ')
    assert key.type == 'ssh-ed25519'
    assert key.comment == 'a@host'
    assert key.line == KEY_A
    assert ssh_keys.parse_public_key(KEY_C).comment == ''


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
        ssh_keys.parse_public_key(text)


def test_normalize_keys_forms_and_duplicates():
    assert [k.line for k in ssh_keys.normalize_keys(KEY_A)] == [KEY_A]
    assert [k.line for k in ssh_keys.normalize_keys(KEY_A + '\n\n' + KEY_B + '\n')] == [KEY_A, KEY_B]
    same_key_other_comment = KEY_A.rsplit(' ', 1)[0] + ' other'
    assert [k.line for k in ssh_keys.normalize_keys([KEY_A, same_key_other_comment, KEY_B])] == [KEY_A, KEY_B]


@pytest.mark.parametrize('value', ['garbage', [KEY_A, 'ssh-ed25519 xx'], [KEY_A, 5], '', ['  ']])
def test_normalize_keys_errors_name_key(value):
    with pytest.raises(ParameterError) as info:
        ssh_keys.normalize_keys(value)
    assert info.value.parameter == 'key'
    assert str(info.value).startswith('key:')
    assert isinstance(info.value, QemuVMError)


def test_line_identity_ignores_options_and_comment():
    key_type, blob = KEY_A.split()[:2]
    assert ssh_keys.line_identity(f'no-pty,from="x y" {key_type} {blob} other comment') == (key_type, blob)
    assert ssh_keys.line_identity('not a key line') == 'not a key line'


def test_keys_to_add_skips_present_keys_whatever_their_comment():
    current = [KEY_A.rsplit(' ', 1)[0] + ' renamed']
    wanted = ssh_keys.normalize_keys([KEY_A, KEY_B])
    assert [k.line for k in ssh_keys.keys_to_add(current, wanted)] == [KEY_B]
    assert ssh_keys.keys_to_add(current + [KEY_B], wanted) == []


def test_keys_to_remove_by_state_and_exclusive():
    wanted = ssh_keys.normalize_keys([KEY_A])
    current = [KEY_A, KEY_B, KEY_C]
    assert ssh_keys.keys_to_remove(current, wanted, 'absent', False) == [KEY_A]
    assert ssh_keys.keys_to_remove(current, wanted, 'present', False) == []
    assert ssh_keys.keys_to_remove(current, wanted, 'present', True) == [KEY_B, KEY_C]
    assert ssh_keys.keys_to_remove([KEY_B], wanted, 'absent', False) == []


def test_final_lines_keep_existing_lines_and_append_new():
    wanted = ssh_keys.normalize_keys([KEY_B, KEY_A])
    assert ssh_keys.final_lines([KEY_C, KEY_A], wanted, 'present', False) == [KEY_C, KEY_A, KEY_B]
    assert ssh_keys.final_lines([KEY_C, KEY_A], wanted, 'present', True) == [KEY_A, KEY_B]
    assert ssh_keys.final_lines([KEY_C, KEY_A], wanted, 'absent', False) == [KEY_C]


def test_agent_error_readers():
    assert ssh_keys.authorized_keys_missing(
        "failed to read '/home/t/.ssh/authorized_keys': Failed to open file \u201c/home/t/.ssh/authorized_keys\u201d: "
        "No such file or directory")
    assert not ssh_keys.authorized_keys_missing("failed to read '/x': Permission denied")
    assert ssh_keys.unknown_user("failed to lookup user 'nosuch': Success")


class FakeAgent:
    """Answers guest-ssh-get-authorized-keys like qemu-ga 7.2: a reply, or an error."""

    def __init__(self, reply):
        self.reply = reply

    def execute(self, command, arguments=None, timeout=None):
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def test_get_authorized_keys_reads_the_agent_reply_in_file_order():
    assert ssh_keys.get_authorized_keys(FakeAgent({'keys': [KEY_B, KEY_A]}), 'tester') == [KEY_A, KEY_B]
    missing = CommandError('guest-ssh-get-authorized-keys', 'GenericError',
                           "failed to read '/home/t/.ssh/authorized_keys': Failed to open file: No such file or directory")
    assert ssh_keys.get_authorized_keys(FakeAgent(missing), 'tester') == []
    unknown = CommandError('guest-ssh-get-authorized-keys', 'GenericError', "failed to lookup user 'x': Success")
    with pytest.raises(VMStateError, match="no user 'x'"):
        ssh_keys.get_authorized_keys(FakeAgent(unknown), 'x')
    denied = CommandError('guest-ssh-get-authorized-keys', 'GenericError', "failed to read '/x': Permission denied")
    with pytest.raises(CommandError, match='Permission denied'):
        ssh_keys.get_authorized_keys(FakeAgent(denied), 'tester')
