#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_guest_authorized_key
short_description: Add or remove SSH authorized keys of a guest user through the QEMU guest agent
version_added: 0.2.0
description:
  - Manages the OpenSSH public keys in a guest user's C(~/.ssh/authorized_keys) without SSH access to the guest,
    through the agent's C(guest-ssh-get-authorized-keys), C(guest-ssh-add-authorized-keys) and
    C(guest-ssh-remove-authorized-keys) (qemu-ga 5.2 or later). This is how the first key gets into a guest.
  - Idempotent. A key counts as present when a line with the same key type and key data is there, whatever its
    comment or options; such a line is left as it is.
  - Every key is checked to be an OpenSSH public key (a known type and well-formed key data) before anything is
    sent to the guest; a malformed key fails the task naming O(key).
  - The agent creates C(~/.ssh) (mode 0700) and C(authorized_keys) (mode 0600) owned by the user when needed.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  user:
    description:
      - The guest user whose C(authorized_keys) is managed. The user must exist in the guest (the agent looks it up
        in the guest's user database) and have a home directory.
    type: str
    required: true
  key:
    description:
      - One OpenSSH public key (C(<type> <base64 data> [comment])), several keys one per line, or a list of keys.
      - Blank lines are ignored. Key options (C(from=...) before the key type) are not supported.
    type: raw
    required: true
  state:
    description:
      - V(present) adds the keys that are missing, V(absent) removes every line holding one of the keys.
    type: str
    choices: [present, absent]
    default: present
  exclusive:
    description:
      - With O(state=present), also remove every other key of the user, so that only O(key) remain.
      - The agent then rewrites the file, which drops its comment lines too.
      - Not allowed with O(state=absent).
    type: bool
    default: false
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
attributes:
  idempotent:
    support: full
    details:
      - Keys already present (or absent) leave the file unchanged.
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Shows the user's key lines before and after.
notes:
  - Sockets - requires O(qga); O(qmp) is optional, used only to tell a silent agent from a VM that is not running.
  - Only the O(qga) socket is used; O(qmp) is accepted and ignored.
  - Public keys are not secrets; they appear in the results and the diff.
seealso:
  - module: qemu.vm.qemu_guest_user
  - module: ansible.posix.authorized_key
'''

EXAMPLES = r'''
- name: Let the deploy key log in as root before SSH is set up
  qemu.vm.qemu_guest_authorized_key:
    qga: /run/qemu/web1/qga.sock
    user: root
    key: "{{ lookup('ansible.builtin.file', 'files/deploy.pub') }}"

- name: Only these two keys may log in as admin
  qemu.vm.qemu_guest_authorized_key:
    qga: /run/qemu/web1/qga.sock
    user: admin
    key:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEih+wIUZxsa6xbHQezdbB4CtrRU3KlHxxw0K23krIxE alice@laptop
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFkk+xnQpqANao50bx9ZTehdB7nlH3vQpdNKkZGXDosl bob@laptop
    exclusive: true

- name: Revoke a key
  qemu.vm.qemu_guest_authorized_key:
    qga: /run/qemu/web1/qga.sock
    user: admin
    key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFkk+xnQpqANao50bx9ZTehdB7nlH3vQpdNKkZGXDosl bob@laptop
    state: absent
'''

RETURN = r'''
user:
  description: The guest user.
  returned: always
  type: str
  sample: root
keys:
  description:
    - The user's authorized key lines after the task (in check mode, the predicted ones).
    - Comment lines and blank lines of the file are left out.
  returned: always
  type: list
  elements: str
  sample: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEih+wIUZxsa6xbHQezdbB4CtrRU3KlHxxw0K23krIxE alice@laptop]
added:
  description: The key lines that were (in check mode, would be) added.
  returned: always
  type: list
  elements: str
  sample: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEih+wIUZxsa6xbHQezdbB4CtrRU3KlHxxw0K23krIxE alice@laptop]
removed:
  description: The key lines that were (in check mode, would be) removed.
  returned: always
  type: list
  elements: str
  sample: []
'''

from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._common import build_module, qga_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError, VMStateError
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import require_command
from ansible_collections.qemu.vm.plugins.module_utils._guest_admin.ssh_keys import (
    final_lines,
    get_authorized_keys,
    keys_to_add,
    keys_to_remove,
    line_identity,
    normalize_keys,
)

ARGUMENT_SPEC = dict(
    user=dict(type='str', required=True),
    key=dict(type='raw', required=True, no_log=False),
    state=dict(type='str', default='present', choices=['present', 'absent']),
    exclusive=dict(type='bool', default=False),
)
COMMANDS = ('guest-ssh-get-authorized-keys', 'guest-ssh-add-authorized-keys', 'guest-ssh-remove-authorized-keys')


class KeyRequest(NamedTuple):
    user: str
    state: str
    exclusive: bool
    keys: list  # PublicKey


class KeyPlan(NamedTuple):
    added: list  # lines
    removed: list
    after: list

    @property
    def changed(self):
        return bool(self.added or self.removed)


def parse_request(params):
    user, state, exclusive = params['user'], params['state'], params['exclusive']
    if not user or any(c in user for c in ':\n\0'):
        raise ParameterError('user', f'user must be a non-empty user name, got {user!r}')
    if exclusive and state == 'absent':
        raise ParameterError('exclusive', 'exclusive=true only goes with state=present')
    return KeyRequest(user, state, exclusive, normalize_keys(params['key']))


def decide(request, current):
    """What to add and remove so that the guest's lines `current` hold what the task asks."""
    added = [key.line for key in keys_to_add(current, request.keys)] if request.state == 'present' else []
    return KeyPlan(added, keys_to_remove(current, request.keys, request.state, request.exclusive),
                   final_lines(current, request.keys, request.state, request.exclusive))


def act(qga, request, plan):
    user = request.user
    if request.state == 'present' and request.exclusive:
        qga.execute('guest-ssh-add-authorized-keys', {'username': user, 'keys': plan.after, 'reset': True})
    elif request.state == 'present':
        qga.execute('guest-ssh-add-authorized-keys', {'username': user, 'keys': plan.added})
    else:
        qga.execute('guest-ssh-remove-authorized-keys', {'username': user, 'keys': plan.removed})
    return get_authorized_keys(qga, user)


def run(module):
    # parse
    request = parse_request(module.params)
    user = request.user
    with qga_session(module) as qga:
        # ask
        for command in COMMANDS:
            require_command(qga, command)
        current = get_authorized_keys(qga, user)
        # decide
        plan = decide(request, current)
        result = {'changed': plan.changed, 'user': user, 'keys': plan.after, 'added': plan.added, 'removed': plan.removed}
        if not plan.changed:
            return result
        result['diff'] = {
            'before_header': f'{user}: ~/.ssh/authorized_keys',
            'after_header': f'{user}: ~/.ssh/authorized_keys',
            'before': ''.join(line + '\n' for line in current),
            'after': ''.join(line + '\n' for line in plan.after),
        }
        if module.check_mode:
            return result
        # act
        result['keys'] = act(qga, request, plan)
    # report
    check_outcome(result['keys'], request.keys, request.state, request.exclusive)
    return result


def check_outcome(lines, wanted, state, exclusive):
    """The guest must now hold what the task promised; say what is off otherwise."""
    present = set(line_identity(line) for line in lines)
    identities = set(key.identity for key in wanted)
    if state == 'present':
        missing = [key.line for key in wanted if key.identity not in present]
        extra = [line for line in lines if line_identity(line) not in identities] if exclusive else []
        if missing or extra:
            raise VMStateError('the agent reported success, but the guest\'s authorized_keys {0}'.format(
                f'lacks {missing}' if missing else f'still holds {extra}'))
    elif identities & present:
        raise VMStateError('the agent reported success, but the guest\'s authorized_keys still holds a removed key '
                           '(a line that differs only in whitespace or line ending is not matched by the agent)')


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qga',), supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
