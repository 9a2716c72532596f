# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's modules the way users do: ad-hoc `ansible` and `ansible-playbook`.

The collection is put on a collections path through a symlink
build/collections/ansible_collections/qemu/vm -> the repository root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, 'build', 'collections')
BIN = os.path.dirname(sys.executable)


def ensure_collection_link():
    link = os.path.join(COLLECTIONS, 'ansible_collections', 'qemu', 'vm')
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)
    return COLLECTIONS


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': ensure_collection_link(),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_HOST_KEY_CHECKING': 'False',
        'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        'ANSIBLE_LOCALHOST_WARNING': 'False',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'False',
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
        'PATH': BIN + os.pathsep + env.get('PATH', ''),
    })
    env.pop('PYTHONPATH', None)  # modules must resolve through the collections path
    env.update(extra or {})
    return env


class ModuleResult(dict):
    """The module's JSON result, plus `rc` and the raw output."""

    @property
    def failed(self):
        return bool(self.get('failed'))

    @property
    def changed(self):
        return bool(self.get('changed'))


def ad_hoc_command(module, args, check=False, diff=False):
    """The argv of `ansible localhost -m qemu.vm.<module> -a <json>`."""
    cmd = [os.path.join(BIN, 'ansible'), 'localhost', '-i', 'localhost,', '-c', 'local',
           '-m', module if '.' in module else 'qemu.vm.' + module, '-a', json.dumps(args)]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    return cmd


def run_module(module, args, check=False, diff=False, timeout=300, env=None, cwd=None, prefix=()):
    """`ansible localhost -m qemu.vm.<module> -a <json>` (run in `cwd`, after the argv `prefix`) → the module's result dict."""
    proc = subprocess.run(list(prefix) + ad_hoc_command(module, args, check, diff), env=ansible_env(env), capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=cwd)
    out = proc.stdout
    # Ad-hoc output is "localhost | SUCCESS|CHANGED|FAILED! => {json}", warnings around it.
    marker = out.find(' => ')
    if marker < 0:
        raise AssertionError(f'no module result in ansible output:\n{out}\n{proc.stderr}')
    header = out[:marker].rsplit('\n', 1)[-1]
    body = json.JSONDecoder().raw_decode(out[marker + 4:].lstrip())[0]
    result = ModuleResult(body)
    if 'FAILED!' in header or 'UNREACHABLE!' in header:
        result['failed'] = True
    if 'rc' in body:
        result['module_rc'] = body['rc']  # a module's own rc (qemu_guest_exec), before `rc` means ansible's
    result['rc'] = proc.returncode
    result['output'] = out + proc.stderr
    return result


def run_playbook(playbook, extra_vars=None, check=False, diff=False, timeout=600, env=None, args=(), cwd=None):
    """Run a playbook (a path, or YAML text) on localhost; returns CompletedProcess (stdout has stderr)."""
    path = playbook
    tmp = None
    if '\n' in playbook:
        tmp = tempfile.NamedTemporaryFile('w', suffix='.yml', delete=False)
        tmp.write(playbook)
        tmp.close()
        path = tmp.name
    cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', path]
    if extra_vars:
        cmd += ['-e', json.dumps(extra_vars)]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    cmd += list(args)
    try:
        return subprocess.run(cmd, env=ansible_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout, check=False, cwd=cwd)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
