# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest.users decisions, without a guest: pure functions and the host's libcrypt.
The real agent's behaviour is covered in tests/system/test_guest_admin.py."""

from __future__ import annotations

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, ParameterError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest import users

PASSWD = 'root:x:0:0:root:/root:/bin/sh\ntester:x:1001:1001::/home/tester:/bin/sh\nold:$1$ab$cd:5:5::/:/bin/sh\n'
SHADOW = 'root:*:20000:0:99999:7:::\ntester:$6$salt$hash:20000:0:99999:7:::\n'


def test_parse_account():
    assert users.parse_account(PASSWD, SHADOW, 'tester') == (True, '$6$salt$hash')
    assert users.parse_account(PASSWD, SHADOW, 'nosuch') == (False, None)
    assert users.parse_account(PASSWD, SHADOW, 'old') == (True, '$1$ab$cd')
    assert users.parse_account(None, None, 'tester') == (None, None)
    assert users.parse_account(PASSWD, None, 'tester') == (True, None)


@pytest.mark.parametrize('current, state', [
    (None, 'unknown'), ('', 'none'), ('*', 'none'), ('!', 'none'), ('!!', 'none'), ('!*', 'none'),
    ('!$6$salt$hash', 'locked'), ('$6$salt$hash', 'set'),
])
def test_password_state(current, state):
    assert users.password_state(current) == state


def test_check_password():
    users.check_password('$6$salt$hash', True)
    users.check_password('plain: with colon', False)
    for password, crypted in (('', True), ('a\nb', False), ('$6$a:b', True)):
        with pytest.raises(ParameterError) as info:
            users.check_password(password, crypted)
        assert info.value.parameter == 'password'


def test_looks_like_crypt_hash():
    assert users.looks_like_crypt_hash('$6$salt$hash')
    assert users.looks_like_crypt_hash('$y$j9T$salt$hash')
    assert users.looks_like_crypt_hash('abcdefghijklm')
    assert not users.looks_like_crypt_hash('hunter2')


def test_password_needs_update_always():
    assert not users.password_needs_update('$6$s$h', '$6$s$h', True, 'always')
    assert users.password_needs_update('$6$s$h', '$6$s$other', True, 'always')
    assert users.password_needs_update('!', '$6$s$h', True, 'always')
    assert users.password_needs_update(None, '$6$s$h', True, 'always')
    assert not users.password_needs_update('$6$s$h', 'pw', False, 'always', lambda p, h: True)
    assert users.password_needs_update('$6$s$h', 'pw', False, 'always', lambda p, h: False)
    assert users.password_needs_update('$6$s$h', 'pw', False, 'always', lambda p, h: None)
    assert users.password_needs_update('$6$s$h', 'pw', False, 'always')


def test_password_needs_update_on_create_means_no_password_yet():
    assert users.password_needs_update('!', '$6$s$h', True, 'on_create')
    assert users.password_needs_update('', 'pw', False, 'on_create')
    assert not users.password_needs_update('$6$s$other', '$6$s$h', True, 'on_create')
    assert not users.password_needs_update('!$6$s$other', '$6$s$h', True, 'on_create')
    with pytest.raises(VMStateError, match='/etc/shadow'):
        users.password_needs_update(None, '$6$s$h', True, 'on_create')


def test_crypt_verify_with_the_host_libcrypt():
    sha512 = '$6$TRsH.0uRMXFihb8c$l8KOCzKzp3JwuMepwxMgdGs0kdQFrIf9YHpZDEJ3/Sy6m.KtgHlEwLUqs7JMpyfRPO6ENcMHwIkaFNvhjkcjQ.'
    assert users._libcrypt() is not None  # Debian's libcrypt1
    assert users.crypt_verify('secret', sha512) is True
    assert users.crypt_verify('wrong', sha512) is False
    assert users.crypt_verify('secret', '!') is False


def test_explain_password_error():
    missing = CommandError('guest-set-user-password', 'GenericError', "cannot find 'passwd' program in PATH")
    text = str(users.explain_password_error(missing))
    assert "cannot find 'passwd' program in PATH" in text and 'chpasswd' in text
    refused = CommandError('guest-set-user-password', 'GenericError', 'child process has failed to set user password')
    assert 'refused' in str(users.explain_password_error(refused))
    other = CommandError('guest-set-user-password', 'GenericError', 'something else')
    assert users.explain_password_error(other) is other
