#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_guest_user
short_description: Set a guest user's password through the QEMU guest agent
version_added: 0.2.0
description:
  - Sets the password of an existing guest account with the agent's C(guest-set-user-password), which runs the
    guest's C(chpasswd) (C(chpasswd -e) for a hash). This resets a password when nobody can log in.
  - Idempotent where the guest can tell. The module reads the guest's C(/etc/passwd) and C(/etc/shadow) through the
    agent's file commands; an account whose hash already equals O(password) is unchanged. A plain-text password
    (O(crypted=false)) is checked against the current hash with the host's C(crypt(3)) (libcrypt).
  - The guest chooses the cost of its hash (a bcrypt cost of 31 takes days), so that check runs in a child process
    on the host, stopped after 5 seconds (or half of O(timeout) when that is shorter) or when it needs more than
    512 MiB of memory.
    A password that cannot be checked in that bound is treated as different - it is set again (the task reports a
    change, replacing the costly hash with the guest's own C(chpasswd) hash) - with a warning naming the hash's
    method and cost (never its salt or digest).
  - The agent cannot create accounts. When the guest's C(/etc/passwd) can be read and has no O(name), the task fails
    and changes nothing.
  - When the guest lacks what the agent needs (C(chpasswd) in the agent's C(PATH)), the task fails with the agent's
    reason and what it means.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  name:
    description:
      - The guest account. It must exist in the guest.
    type: str
    required: true
    aliases: [user]
  password:
    description:
      - The new password, as a crypt hash (O(crypted=true), as in the guest's C(/etc/shadow), e.g. from
        C(mkpasswd -m sha-512) or the C(ansible.builtin.password_hash) filter), or in plain text with O(crypted=false);
        the guest's C(chpasswd) then hashes it.
      - Must not be empty or contain line breaks; a hash cannot contain C(:).
    type: str
    required: true
  crypted:
    description:
      - Whether O(password) is a crypt hash (V(true)) or plain text (V(false)).
      - A value that does not look like a crypt hash while O(crypted=true) is set as given, with a warning.
    type: bool
    default: true
  update_password:
    description:
      - V(always) sets the password whenever the account's current hash differs from O(password), and when the guest's
        C(/etc/shadow) cannot be read (then with a warning, and the task always reports a change).
      - V(on_create) sets it only on an account that has no password yet (its hash field is empty, C(!), C(!!) or
        C(*), as left by C(useradd) or cloud-init). The agent cannot create accounts, so "created" means "no password
        set so far"; an account with a password, also a locked one, is left alone. This needs the guest's
        C(/etc/shadow) to be readable, otherwise the task fails.
    type: str
    choices: [always, on_create]
    default: always
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
attributes:
  idempotent:
    support: partial
    details:
      - Unchanged when the guest's C(/etc/shadow) already holds the password; a plain-text password whose hash cannot
        be compared in time is set again (changed).
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Shows whether the account had a password, never the hashes.
notes:
  - Sockets - requires O(qga); O(qmp) is optional, used only to tell a silent agent from a VM that is not running.
  - Only the O(qga) socket is used; O(qmp) is accepted and ignored.
  - Needs the agent's C(guest-set-user-password) (qemu-ga 2.3 or later; Linux and Windows guests). Reading
    C(/etc/shadow) needs the agent's file commands (C(guest-file-open), C(guest-file-read), C(guest-file-close)),
    which some distributions block by default; without them O(update_password=always) always sets the password.
seealso:
  - module: qemu.vm.qemu_guest_authorized_key
  - module: ansible.builtin.user
'''

EXAMPLES = r'''
- name: Reset root's password from a vaulted hash
  qemu.vm.qemu_guest_user:
    qga: /run/qemu/web1/qga.sock
    name: root
    password: "{{ vault_root_password_hash }}"

- name: Give the admin account a first password, never overwrite one it has
  qemu.vm.qemu_guest_user:
    qga: /run/qemu/web1/qga.sock
    name: admin
    password: "{{ vault_admin_password_hash }}"
    update_password: on_create

- name: Let the guest hash a plain-text password
  qemu.vm.qemu_guest_user:
    qga: /run/qemu/web1/qga.sock
    name: tester
    password: "{{ tester_password }}"
    crypted: false
'''

RETURN = r'''
name:
  description: The guest account.
  returned: always
  type: str
  sample: root
password_state_before:
  description:
    - What the account's password was before the task, V(set), V(locked) (a hash behind C(!)), V(none) (never set), or
      V(unknown) when the guest's account files could not be read.
  returned: always
  type: str
  sample: none
password_state:
  description: The same after the task (in check mode, the predicted one).
  returned: always
  type: str
  sample: set
verified:
  description: Whether the new password was read back from the guest's C(/etc/shadow) after it was set.
  returned: always
  type: bool
  sample: true
'''

import base64
from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._common import build_module, qga_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, GuestFrozenError, ParameterError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import require_command
from ansible_collections.qemu.vm.plugins.module_utils._guest_admin.users import (
    check_password,
    explain_password_error,
    looks_like_crypt_hash,
    parse_account,
    password_needs_update,
    password_state,
    password_verifier,
    read_account_file,
)

ARGUMENT_SPEC = dict(
    name=dict(type='str', required=True, aliases=['user']),
    password=dict(type='str', required=True, no_log=True),
    crypted=dict(type='bool', default=True),
    update_password=dict(type='str', default='always', choices=['always', 'on_create'], no_log=False),
)


class UserRequest(NamedTuple):
    name: str
    password: str
    crypted: bool
    update_password: str


def parse_request(params):
    name, password, crypted = params['name'], params['password'], params['crypted']
    if not name or any(c in name for c in ':\n\0'):
        raise ParameterError('name', 'name must be a non-empty user name without ":" or line breaks')
    check_password(password, crypted)
    return UserRequest(name, password, crypted, params['update_password'])


def read_account(qga, name):
    return parse_account(read_account_file(qga, '/etc/passwd'), read_account_file(qga, '/etc/shadow'), name)


def set_password(qga, request):
    try:
        qga.execute('guest-set-user-password', {
            'username': request.name, 'password': base64.b64encode(request.password.encode('utf-8')).decode('ascii'),
            'crypted': request.crypted})
    except GuestFrozenError:
        raise
    except CommandError as exc:
        raise explain_password_error(exc)


def run(module):
    # parse
    request = parse_request(module.params)
    name, password, crypted = request.name, request.password, request.crypted
    if crypted and not looks_like_crypt_hash(password):
        module.warn('password does not look like a crypt hash, but crypted=true sets it as the hash as given; '
                    'use crypted=false for a plain-text password')
    with qga_session(module) as qga:
        # ask
        require_command(qga, 'guest-set-user-password')
        exists, current = read_account(qga, name)
        if exists is False:
            raise VMStateError(f'name: the guest has no user {name!r} in its /etc/passwd, and the guest agent cannot create '
                               'users; create the account first')
        # decide
        verify = password_verifier(module.params['timeout'], module.warn)
        result = {'changed': password_needs_update(current, password, crypted, request.update_password, verify),
                  'name': name, 'password_state_before': password_state(current), 'verified': False}
        result['password_state'] = 'set' if result['changed'] else result['password_state_before']
        if current is None:
            module.warn('the account\'s current hash could not be read from the guest\'s /etc/shadow through the '
                        'agent, so the password is set without comparing it with the current one')
        if not result['changed']:
            return result
        result['diff'] = {'before': {'name': name, 'password': '{0} (hidden)'.format(result['password_state_before'])},
                          'after': {'name': name, 'password': 'new (hidden)'}}
        if module.check_mode:
            return result
        # act
        set_password(qga, request)
        after = read_account(qga, name)[1] if current is not None else None
    # report
    if current is not None:
        result['password_state'] = password_state(after)
        result['verified'] = after == password if crypted else verify(password, after) is True
        if after is not None and (after == current or (crypted and after != password)):
            raise VMStateError(f'guest-set-user-password reported success, but the hash of {name!r} in the guest\'s '
                               '/etc/shadow is not the new one')
    return result


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qga',), supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
