#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: qemu_guest_exec
short_description: Run a command inside a guest through the QEMU guest agent
version_added: 0.2.0
description:
  - Runs a program inside the guest with the agent's C(guest-exec), waits for it with C(guest-exec-status),
    and returns its exit code and output the way M(ansible.builtin.command) does. No network, SSH or Python
    is needed in the guest.
  - The program runs as the guest agent's user (usually root), with the agent's environment plus O(env).
  - O(timeout) also bounds the command itself. A program still running after O(timeout) seconds is killed in the guest (SIGKILL, with the processes
    it started), and the task fails saying it timed out.
  - A non-zero exit code fails the task; rc, stdout and stderr are still returned.
  - To run every task of a play inside the guest, use the P(qemu.vm.qga#connection) connection plugin instead.
author:
  - qemu.vm maintainers (@qemu-vm)
options:
  argv:
    description:
      - The program and its arguments, one list item each; no shell is involved.
      - A program without a V(/) is looked up in the agent's C(PATH).
      - Exactly one of O(argv) and O(cmd) is required.
    type: list
    elements: str
  cmd:
    description:
      - A shell command line, run by V(/bin/sh -c) in the guest (pipes, redirections and variables work).
    type: str
  stdin:
    description:
      - Text written to the program's standard input (the agent's C(input-data)). Not logged.
    type: str
  stdin_add_newline:
    description:
      - Append a newline to O(stdin).
    type: bool
    default: true
  env:
    description:
      - Environment variables to set for the program, in addition to the agent's environment.
      - They reach the program through the agent's own C(env) field of C(guest-exec), never as arguments of a guest
        process (which every guest user can read in C(/proc/*/cmdline), and which the agent logs); in the guest only
        root and the program's user can read them (C(/proc/<pid>/environ)). As that field replaces the agent's
        environment, the module first reads it (one more short C(guest-exec) of V(/bin/sh)).
      - The values are not hidden from Ansible's own output (like any module argument, they show with C(-vvv)); set
        C(no_log) on the task when they are secrets. Errors, such as a timeout, name the command, not the values.
    type: dict
  chdir:
    description:
      - The guest directory to change into before running the program, and against which relative
        O(creates) and O(removes) paths are resolved.
    type: str
  creates:
    description:
      - A guest path or shell glob; when it exists, the command is not run.
    type: str
  removes:
    description:
      - A guest path or shell glob; when it does not exist, the command is not run.
    type: str
  strip_empty_ends:
    description:
      - Strip empty lines from the end of stdout and stderr.
    type: bool
    default: true
extends_documentation_fragment:
  - qemu.vm._connection
  - qemu.vm._errors
  - qemu.vm._attributes
attributes:
  idempotent:
    support: partial
    details:
      - A command always reports changed, unless O(creates) or O(removes) skip it (unchanged).
  check_mode:
    support: partial
    details:
      - The command is not run in check mode. With O(creates) or O(removes), the task says whether it would run;
        without them it is skipped.
  diff_mode:
    support: none
notes:
  - Sockets - requires O(qga); O(qmp) is optional, used only to tell a silent agent from a VM that is not running.
  - Only the O(qga) socket is used; O(qmp) is accepted and ignored.
  - O(cmd), O(env), O(chdir), O(creates), O(removes) and the kill on timeout use V(/bin/sh) and POSIX tools in the
    guest; Windows guests are not supported.
  - The agent returns the output only when the program ends, and caps it (16 MiB per stream on qemu-ga 7.2);
    RV(stdout_truncated) and RV(stderr_truncated) say when it did.
  - A program that leaves a background process holding its output open is waited for until that process ends.
  - Fails with a clear message when the agent blocks C(guest-exec) (qemu-ga C(--block-rpcs)/C(--allow-rpcs)),
    when the guest filesystems are frozen, or when the program does not exist in the guest.
seealso:
  - module: ansible.builtin.command
  - module: qemu.vm.qemu_guest_file
'''

EXAMPLES = r'''
- name: Run a program in the guest
  qemu.vm.qemu_guest_exec:
    qga: /run/qemu/web1/qga.sock
    argv: [/usr/bin/systemctl, is-active, nginx]
  register: nginx

- name: Run a shell line with input, only once
  qemu.vm.qemu_guest_exec:
    qga: /run/qemu/web1/qga.sock
    cmd: cat > /etc/motd && touch /var/lib/motd.done
    stdin: Managed by Ansible
    creates: /var/lib/motd.done

- name: A long job, bounded
  qemu.vm.qemu_guest_exec:
    qga: /run/qemu/web1/qga.sock
    cmd: ./rebuild-index
    chdir: /srv/app
    env:
      LANG: C.UTF-8
    timeout: 600
'''

RETURN = r'''
cmd:
  description: The command as given, O(argv) or O(cmd).
  returned: always
  type: raw
  sample: [/usr/bin/systemctl, is-active, nginx]
rc:
  description: The exit code; the negative signal number when a signal ended the program.
  returned: when the command ran, or was skipped
  type: int
  sample: 0
stdout:
  description: Standard output, as text.
  returned: when the command ran, or was skipped
  type: str
  sample: active
stderr:
  description: Standard error, as text.
  returned: when the command ran, or was skipped
  type: str
  sample: ''
stdout_lines:
  description: RV(stdout) split into lines.
  returned: when the command ran, or was skipped
  type: list
  elements: str
  sample: [active]
stderr_lines:
  description: RV(stderr) split into lines.
  returned: when the command ran, or was skipped
  type: list
  elements: str
  sample: []
stdout_truncated:
  description: Whether the agent cut the output at its cap.
  returned: when the command ran
  type: bool
  sample: false
stderr_truncated:
  description: Whether the agent cut the error output at its cap.
  returned: when the command ran
  type: bool
  sample: false
start:
  description: When the command started (host clock).
  returned: when the command ran
  type: str
  sample: '2026-11-30 12:00:00.000001'
end:
  description: When the command ended (host clock).
  returned: when the command ran
  type: str
  sample: '2026-11-30 12:00:01.000001'
delta:
  description: How long the command ran.
  returned: when the command ran
  type: str
  sample: '0:00:01.000000'
pid:
  description: The program's process id in the guest.
  returned: when the command ran
  type: int
  sample: 1234
msg:
  description: Why the command did not run, or that it failed.
  returned: when skipped or failed
  type: str
  sample: /var/lib/motd.done exists, matching creates option
'''

import datetime
import re
from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._common import build_module, qga_session, run_module
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._guest.errors import ProgramFailedError
from ansible_collections.qemu.vm.plugins.module_utils._guest.process import GuestExec, command_argv, path_exists

ARGUMENT_SPEC = dict(
    argv=dict(type='list', elements='str'),
    cmd=dict(type='str'),
    stdin=dict(type='str', no_log=True),
    stdin_add_newline=dict(type='bool', default=True),
    env=dict(type='dict'),
    chdir=dict(type='str'),
    creates=dict(type='str'),
    removes=dict(type='str'),
    strip_empty_ends=dict(type='bool', default=True),
)
MUTUALLY_EXCLUSIVE = [('argv', 'cmd')]
REQUIRED_ONE_OF = [('argv', 'cmd')]

_ENV_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


class ExecRequest(NamedTuple):
    argv: list  # what the guest runs (cmd through /bin/sh, chdir applied)
    shown: object  # argv or cmd as given, for the result
    env: dict
    stdin: str | None
    chdir: str | None
    creates: str | None
    removes: str | None
    strip: bool


def parse_request(params):
    if params['argv'] is not None and not params['argv']:
        raise ParameterError('argv', 'argv must name a program: it is an empty list')
    for name in params['env'] or {}:
        if not _ENV_NAME.match(name):
            raise ParameterError('env', f'env: {name!r} is not a valid environment variable name')
    stdin = params['stdin']
    if stdin is not None and params['stdin_add_newline']:
        stdin += '\n'
    return ExecRequest(
        argv=command_argv(params['argv'], params['cmd'], params['chdir']),
        shown=params['argv'] if params['argv'] is not None else params['cmd'],
        env=dict((k, str(v)) for k, v in (params['env'] or {}).items()),
        stdin=stdin, chdir=params['chdir'], creates=params['creates'], removes=params['removes'],
        strip=params['strip_empty_ends'])


def skip_reason(guest, request, timeout):
    """(msg, stdout) when creates/removes say not to run the command, else None."""
    creates, removes = request.creates, request.removes
    if creates is not None and path_exists(guest, creates, request.chdir, timeout):
        return f'{creates} exists, matching creates option', f'skipped, since {creates} exists'
    if removes is not None and not path_exists(guest, removes, request.chdir, timeout):
        return (f'{removes} does not exist, matching removes option',
                f'skipped, since {removes} does not exist')
    return None


def output(data, strip):
    text = data.decode('utf-8', 'replace')
    return text.rstrip('\r\n') if strip else text


def run(module):
    # parse
    request = parse_request(module.params)
    timeout = module.params['timeout']
    result = {'changed': False, 'cmd': request.shown}
    if module.check_mode and request.creates is None and request.removes is None:
        result.update(skipped=True, msg='Command would have run if not in check mode')
        return result
    env = request.env
    with qga_session(module) as qga:
        guest = GuestExec(qga)
        # ask
        skip = skip_reason(guest, request, timeout)
        # decide
        if skip is not None:
            result.update(msg=skip[0], rc=0, stdout=skip[1], stderr='', stdout_lines=[skip[1]], stderr_lines=[])
            return result
        result['changed'] = True
        if module.check_mode:
            result['msg'] = 'Command would have run if not in check mode'
            return result
        # act
        if env:  # through guest-exec's own env (never the guest's process arguments), which replaces the agent's
            env = dict(guest.environment(timeout), **env)
        start = datetime.datetime.now()
        stdin = None if request.stdin is None else request.stdin.encode('utf-8')
        done = guest.run(request.argv, timeout, env=env or None, stdin=stdin, shown=request.shown)
        end = datetime.datetime.now()
    # report
    result.update(
        rc=done.rc, pid=done.pid, stdout=output(done.stdout, request.strip), stderr=output(done.stderr, request.strip),
        stdout_truncated=done.stdout_truncated, stderr_truncated=done.stderr_truncated,
        start=str(start), end=str(end), delta=str(end - start))
    result['stdout_lines'] = result['stdout'].splitlines()
    result['stderr_lines'] = result['stderr'].splitlines()
    if done.rc != 0:
        if done.signal is not None:
            raise ProgramFailedError(f'the command was killed by signal {done.signal} in the guest', result)
        raise ProgramFailedError('non-zero return code', result)
    return result


def main():
    module = build_module(ARGUMENT_SPEC, requires=('qga',), mutually_exclusive=MUTUALLY_EXCLUSIVE,
                          required_one_of=REQUIRED_ONE_OF, supports_check_mode=True)
    run_module(module, run)


if __name__ == '__main__':
    main()
