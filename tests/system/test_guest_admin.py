# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""qemu_guest_authorized_key, qemu_guest_time and qemu_guest_user against the real qemu-ga
in the tiny guest (user `tester`, /etc/shadow, a chpasswd shim; see tests/guest/build-guest.sh).

What the modules claim is observed independently: files with guest-exec (cat, stat) and the
clock with the harness' own guest-get-time, never with the modules themselves.
"""

from __future__ import annotations

import base64
import ctypes
import os
import struct
import time

from harness.ansible import run_module

NS = 10 ** 9
USER = 'tester'
AUTHORIZED_KEYS = '/home/tester/.ssh/authorized_keys'
# crypt(3) SHA-512 hashes of 'secret' and 'other-secret' (fixed salts).
HASH_1 = '$6$qemuvmtestsalt1$QQfMrDc4MgaoQoW.kjSsA2HM5iQONqOeZfUfllTDKx9A6.0gQd6KowAu4/YcAVsx1eMqTrVmmDg/S0nr2kw091'
HASH_2 = '$6$qemuvmtestsalt2$p6KXryH1ptGMRI8/1I1QDNAnQf/faJPfYyucAWPUEF1m5.tcksOcvqyov29lrVknul6h0awwAPGzUSCHpJiqV/'
PLAIN = 'plain-Tr0ub4dor-3'


def make_key(comment):
    name = b'ssh-ed25519'
    blob = struct.pack('>I', len(name)) + name + struct.pack('>I', 32) + os.urandom(32)
    return f'ssh-ed25519 {base64.b64encode(blob).decode()} {comment}'


def guest_text(vm, path):
    """A guest file's text through guest-exec, or None when it does not exist."""
    code, out, _err = vm.guest_exec(['cat', path])
    return out.decode() if code == 0 else None


def guest_keys(vm):
    text = guest_text(vm, AUTHORIZED_KEYS)
    return None if text is None else [line for line in text.splitlines() if line.strip()]


def shadow_hash(vm, user):
    for line in guest_text(vm, '/etc/shadow').splitlines():
        fields = line.split(':')
        if fields[0] == user:
            return fields[1]
    raise AssertionError(f'{user} is not in the guest\'s /etc/shadow')


def guest_offset(vm):
    """Guest clock minus host clock, in seconds, through the harness' own agent connection."""
    before = time.time_ns()
    guest = vm.qga('guest-get-time')
    return (guest - (before + time.time_ns()) // 2) / NS


def assert_clean_failure(result, *words):
    assert result.failed, result['output']
    for word in words:
        assert word in result['msg'], result['msg']
    assert 'Traceback' not in result['output'] and 'exception' not in result, result['output']


# -- qemu_guest_authorized_key ------------------------------------------------------------------


def test_authorized_key_added_once_then_unchanged_then_removed(vm):
    key_a, key_b = make_key('a@host'), make_key('b@host')
    args = {'qga': vm.qga_path, 'user': USER, 'key': key_a}

    bad = run_module('qemu_guest_authorized_key', dict(args, key=[key_a, 'ssh-ed25519 AAAAnot-a-key x']))
    assert_clean_failure(bad, 'key:', 'not an OpenSSH public key')
    assert bad['parameter'] == 'key'
    assert guest_keys(vm) is None

    check = run_module('qemu_guest_authorized_key', args, check=True, diff=True)
    assert check.changed and not check.failed, check['output']
    assert check['added'] == [key_a] and check['keys'] == [key_a]
    assert '+' + key_a in check['output']  # ansible prints the diff
    assert guest_keys(vm) is None

    added = run_module('qemu_guest_authorized_key', args, diff=True)
    assert added.changed and not added.failed, added['output']
    assert added['keys'] == [key_a]
    assert guest_keys(vm) == [key_a]
    code, out, err = vm.guest_exec(['stat', '-c', '%a %U', AUTHORIZED_KEYS])
    assert (code, out.decode().split()) == (0, ['600', USER]), err

    for check_mode in (True, False):
        again = run_module('qemu_guest_authorized_key', args, check=check_mode)
        assert not again.changed and not again.failed, again['output']
        assert again['added'] == [] and again['keys'] == [key_a]
    assert guest_keys(vm) == [key_a]

    both = run_module('qemu_guest_authorized_key', dict(args, key=[key_a, key_b]))
    assert both.changed and both['added'] == [key_b], both['output']
    assert both['keys'] == [key_a, key_b]  # file order, read back from the agent
    assert guest_keys(vm) == [key_a, key_b]

    only_b = run_module('qemu_guest_authorized_key', dict(args, key=key_b, exclusive=True))
    assert only_b.changed and only_b['removed'] == [key_a] and only_b['keys'] == [key_b], only_b['output']
    assert guest_keys(vm) == [key_b]

    absent = dict(args, key=key_b, state='absent')
    check = run_module('qemu_guest_authorized_key', absent, check=True)
    assert check.changed and check['removed'] == [key_b] and check['keys'] == [], check['output']
    assert guest_keys(vm) == [key_b]

    removed = run_module('qemu_guest_authorized_key', absent, diff=True)
    assert removed.changed and not removed.failed, removed['output']
    assert guest_keys(vm) == []

    gone = run_module('qemu_guest_authorized_key', absent)
    assert not gone.changed and not gone.failed, gone['output']

    nobody = run_module('qemu_guest_authorized_key', dict(args, user='nosuch'))
    assert_clean_failure(nobody, "no user 'nosuch'")


# -- qemu_guest_time ----------------------------------------------------------------------------


def test_guest_clock_an_hour_behind_is_set_to_the_host_clock(vm):
    vm.qga('guest-set-time', {'time': time.time_ns() - 3600 * NS})
    assert -3602 < guest_offset(vm) < -3598

    check = run_module('qemu_guest_time', {'qga': vm.qga_path}, check=True, diff=True)
    assert check.changed and not check.failed, check['output']
    assert -3602 < check['drift_before'] < -3598
    assert guest_offset(vm) < -3598

    synced = run_module('qemu_guest_time', {'qga': vm.qga_path}, diff=True)
    assert synced.changed and not synced.failed, synced['output']
    assert -3602 < synced['drift_before'] < -3598
    assert abs(synced['drift_after']) < 1.0
    assert synced['target'] == 'host'
    assert abs(guest_offset(vm)) < 2.0

    for check_mode in (True, False):
        again = run_module('qemu_guest_time', {'qga': vm.qga_path}, check=check_mode)
        assert not again.changed and not again.failed, again['output']
        assert abs(again['drift_before']) < 1.0
    assert abs(guest_offset(vm)) < 2.0

    moment = '2030-01-01T00:00:00Z'
    set_at = time.time()
    travelled = run_module('qemu_guest_time', {'qga': vm.qga_path, 'time': moment})
    assert travelled.changed and not travelled.failed, travelled['output']
    assert travelled['target'] == '2030-01-01T00:00:00.000Z'
    elapsed = time.time() - set_at
    # Set at some point during the task, running on since: between the moment and the moment plus the task.
    assert 1893456000 - 1 < vm.qga('guest-get-time') / NS < 1893456000 + elapsed + 1

    back = run_module('qemu_guest_time', {'qga': vm.qga_path})
    assert back.changed and not back.failed, back['output']
    assert abs(guest_offset(vm)) < 2.0

    bad = run_module('qemu_guest_time', {'qga': vm.qga_path, 'time': 'yesterday'})
    assert_clean_failure(bad, 'time:')
    assert bad['parameter'] == 'time'


# -- qemu_guest_user ----------------------------------------------------------------------------


def verify_plain(password, hashed):
    library = ctypes.CDLL('libcrypt.so.1')
    library.crypt.restype = ctypes.c_char_p
    return library.crypt(password.encode(), hashed.encode()).decode() == hashed


def test_password_change_is_visible_in_the_guest_shadow(vm):
    args = {'qga': vm.qga_path, 'name': USER, 'password': HASH_1}
    assert shadow_hash(vm, USER) == '!'

    first = dict(args, update_password='on_create')
    check = run_module('qemu_guest_user', first, check=True, diff=True)
    assert check.changed and not check.failed, check['output']
    assert (check['password_state_before'], check['password_state']) == ('none', 'set')
    assert shadow_hash(vm, USER) == '!'

    created = run_module('qemu_guest_user', first)
    assert created.changed and not created.failed, created['output']
    assert created['verified'] is True
    assert shadow_hash(vm, USER) == HASH_1

    kept = run_module('qemu_guest_user', dict(first, password=HASH_2))
    assert not kept.changed and not kept.failed, kept['output']
    assert shadow_hash(vm, USER) == HASH_1

    for check_mode in (True, False):
        again = run_module('qemu_guest_user', args, check=check_mode)
        assert not again.changed and not again.failed, again['output']

    changed = run_module('qemu_guest_user', dict(args, password=HASH_2), diff=True)
    assert changed.changed and changed['password_state_before'] == 'set', changed['output']
    assert shadow_hash(vm, USER) == HASH_2
    assert HASH_2 not in changed['output']

    plain = dict(args, password=PLAIN, crypted=False)
    hashed = run_module('qemu_guest_user', plain)
    assert hashed.changed and not hashed.failed and hashed['verified'] is True, hashed['output']
    assert verify_plain(PLAIN, shadow_hash(vm, USER))
    assert PLAIN not in hashed['output']
    same = run_module('qemu_guest_user', plain)
    assert not same.changed and not same.failed, same['output']

    missing = run_module('qemu_guest_user', dict(args, name='nosuch'))
    assert_clean_failure(missing, "no user 'nosuch'", 'cannot create')


def test_guest_without_password_tools_gets_a_clear_error(vm_factory):
    vm = vm_factory(without=('chpasswd',))
    result = run_module('qemu_guest_user', {'qga': vm.qga_path, 'name': USER, 'password': HASH_1})
    assert_clean_failure(result, "cannot find 'passwd' program in PATH", 'no chpasswd program')
    assert result['command'] == 'guest-set-user-password'
    assert shadow_hash(vm, USER) == '!'


#: A bcrypt hash of cost 31 (2^31 rounds: days of CPU), as a hostile guest may plant it.
ABSURD_BCRYPT = '$2b$31$qemuvmAbsurdCostSalt..' + 'a' * 31


def set_shadow_hash(vm, user, hashed):
    script = ('awk -F: -v OFS=: -v u="$1" -v h="$2" \'$1 == u { $2 = h } { print }\' /etc/shadow > /etc/shadow+ '
              '&& mv /etc/shadow+ /etc/shadow')
    code, _out, err = vm.guest_exec(['sh', '-c', script, 'sh', user, hashed])
    assert code == 0, err
    assert shadow_hash(vm, user) == hashed


def test_a_guest_hash_of_absurd_cost_is_answered_within_the_bound(vm):
    set_shadow_hash(vm, USER, ABSURD_BCRYPT)
    args = {'qga': vm.qga_path, 'name': USER, 'password': PLAIN, 'crypted': False, 'timeout': 10}
    # The harness' bound (60 s, ansible's own start-up included) fails the test where crypt(3) would run for days.
    check = run_module('qemu_guest_user', args, check=True, timeout=60)
    assert check.changed and not check.failed, check['output']
    assert check['password_state_before'] == 'set'
    assert 'current hash ($2b$31$): crypt(3) did not finish within' in check['output'], check['output']
    assert 'qemuvmAbsurdCostSalt' not in check['output']  # the guest's salt and digest are not shown
    assert shadow_hash(vm, USER) == ABSURD_BCRYPT

    done = run_module('qemu_guest_user', args, timeout=60)
    assert done.changed and not done.failed and done['verified'] is True, done['output']
    assert verify_plain(PLAIN, shadow_hash(vm, USER))  # the costly hash was replaced by the guest's own
    again = run_module('qemu_guest_user', args, timeout=60)
    assert not again.changed and 'did not finish' not in again['output'], again['output']
