# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_guest.users decisions, without a guest: pure functions and the host's libcrypt.
The real agent's behaviour is covered in tests/system/test_guest_admin.py."""

from __future__ import annotations

import subprocess
import threading

import pytest

from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, ParameterError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest_admin import users

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


SHA512_SECRET = '$6$TRsH.0uRMXFihb8c$l8KOCzKzp3JwuMepwxMgdGs0kdQFrIf9YHpZDEJ3/Sy6m.KtgHlEwLUqs7JMpyfRPO6ENcMHwIkaFNvhjkcjQ.'
#: Hashes a guest may plant: bcrypt cost 31 (2^31 rounds: days), sha512crypt's maximum rounds (minutes),
#: yescrypt asking for 1 GiB of memory.
ABSURD_BCRYPT = '$2b$31$qemuvmAbsurdCostSalt..' + 'a' * 31
ABSURD_SHA512 = '$6$rounds=999999999$qemuvmsalt$' + 'a' * 86
GREEDY_YESCRYPT = '$y$jFT$BYjzMpZNMUWi7WFsprYXZ1$' + 'a' * 43


def bounded(call, limit=60):
    """call() in a thread; fails the test instead of hanging when it does not return in time."""
    box = []
    worker = threading.Thread(target=lambda: box.append(call()), daemon=True)
    worker.start()
    worker.join(limit)
    assert not worker.is_alive(), f'no answer within {limit} s'
    return box[0]


def test_crypt_verify_with_the_host_libcrypt():
    warnings = []
    assert users.crypt_verify('secret', SHA512_SECRET, warn=warnings.append) is True
    assert users.crypt_verify('wrong', SHA512_SECRET, warn=warnings.append) is False
    assert users.crypt_verify('secret', '!') is False
    assert warnings == []


@pytest.mark.parametrize('hashed, shown, words', [
    (ABSURD_BCRYPT, '($2b$31$)', 'did not finish within 0.5 s'),
    (ABSURD_SHA512, '($6$rounds=999999999$)', 'did not finish within 0.5 s'),
    (GREEDY_YESCRYPT, '($y$jFT$)', 'more than 512 MiB of memory'),
])
def test_a_costly_guest_hash_gets_no_answer_within_the_bound_and_a_warning(hashed, shown, words):
    warnings = []
    assert bounded(lambda: users.crypt_verify('secret', hashed, 0.5, warnings.append)) is None
    assert len(warnings) == 1 and shown in warnings[0] and words in warnings[0], warnings
    assert 'treated as different' in warnings[0]
    assert hashed.split('$')[3] not in warnings[0]  # the salt (and the digest) stay out of the task's output
    assert users.password_needs_update(hashed, 'secret', False, 'always', lambda p, h: None)


def test_each_check_of_a_task_gets_half_its_timeout_at_most_crypt_timeout(monkeypatch):
    warnings = []
    verify = users.password_verifier(1.0, warnings.append)
    assert bounded(lambda: verify('secret', ABSURD_BCRYPT)) is None
    assert 'did not finish within 0.5 s' in warnings[0]
    assert verify('secret', SHA512_SECRET) is True  # the check after setting has its own bound
    monkeypatch.setattr(users, 'CRYPT_TIMEOUT', 0.3)
    assert bounded(lambda: users.password_verifier(600, warnings.append)('secret', ABSURD_SHA512)) is None
    assert 'did not finish within 0.3 s' in warnings[1]


def test_the_password_goes_to_the_child_on_stdin_not_in_its_arguments(monkeypatch):
    seen = {}
    real_run = subprocess.run

    def spy(argv, **kwargs):
        seen['argv'], seen['input'] = argv, kwargs.get('input')
        return real_run(argv, check=kwargs.pop('check', False), **kwargs)
    monkeypatch.setattr(users.subprocess, 'run', spy)
    assert users.crypt_verify('secret', SHA512_SECRET) is True
    assert not [a for a in seen['argv'] if 'secret' in a or SHA512_SECRET in a]
    assert b'secret' in seen['input']


@pytest.mark.parametrize('hashed, shown', [
    (ABSURD_BCRYPT, '$2b$31$'), ('$6$rounds=5000$salt$digest', '$6$rounds=5000$'), (SHA512_SECRET, '$6$'),
    ('$y$j9T$salt$digest', '$y$j9T$'), ('abcdefghijklm', 'DES or unknown'), ('$1$salt', 'DES or unknown'),
])
def test_crypt_method_shows_method_and_cost_only(hashed, shown):
    assert users.crypt_method(hashed) == shown


def test_explain_password_error():
    missing = CommandError('guest-set-user-password', 'GenericError', "cannot find 'passwd' program in PATH")
    text = str(users.explain_password_error(missing))
    assert "cannot find 'passwd' program in PATH" in text and 'chpasswd' in text
    refused = CommandError('guest-set-user-password', 'GenericError', 'child process has failed to set user password')
    assert 'refused' in str(users.explain_password_error(refused))
    other = CommandError('guest-set-user-password', 'GenericError', 'something else')
    assert users.explain_password_error(other) is other
