# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for qemu.vm.qemu_guest_file: `src` is read on the controller, like ansible.builtin.copy,
and a relative `dest` of state=fetched is resolved like ansible.builtin.fetch's.

The file is found like copy's src (role/play files/ directories), decrypted when it is
vault-encrypted, transferred to a temporary directory on the managed host and handed
to the module there as a managed-host path. When the module runs on the controller
itself (local connection, no become) the file is read where it is, without a copy.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

MODULE = 'qemu.vm.qemu_guest_file'


class ActionModule(ActionBase):

    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        if task_vars is None:
            task_vars = {}
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect

        args = dict(self._task.args)
        try:
            remote_src = boolean(args.get('remote_src', False), strict=True)
        except TypeError as exc:
            raise AnsibleActionFail(f'remote_src: {to_text(exc)}')
        if args.get('state') == 'fetched' and isinstance(args.get('dest'), str):
            # Like ansible.builtin.fetch: a relative dest is relative to the playbook (ad-hoc: the cwd).
            # A ~ path is left to the module, which expands it on the managed host.
            dest = args['dest']
            if not dest.startswith('~') and not os.path.isabs(dest):
                args['dest'] = self._loader.path_dwim(dest)
        src = args.get('src')
        local_source = (src is not None and not remote_src and args.get('content') is None
                        and args.get('state', 'present') == 'present')
        try:
            if local_source:
                result.update(self._run_with_local_source(args, src, task_vars))
            else:
                # Nothing to send from the controller; the module validates everything else.
                result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    def _run_with_local_source(self, args, src, task_vars):
        try:
            found = self._find_needle('files', src)
        except AnsibleError as exc:
            raise AnsibleActionFail(f'src {src}: {to_text(exc)}')
        if os.path.isdir(found):
            raise AnsibleActionFail(f'src {src} is a directory: qemu.vm.qemu_guest_file copies one file')
        try:
            real = self._loader.get_real_file(found, decrypt=True)
        except AnsibleError as exc:
            raise AnsibleActionFail(f'src {src}: {to_text(exc)}')
        try:
            args['remote_src'] = True
            if self._module_runs_here():
                args['src'] = os.path.abspath(real)
            else:
                shell = self._connection._shell
                remote = shell.join_path(shell.tmpdir, 'qemu-guest-file-source')
                self._transfer_file(real, remote)
                self._fixup_perms2((shell.tmpdir, remote))
                args['src'] = remote
            result = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        finally:
            self._loader.cleanup_tmp_file(real)
        # Diffs name the file the user gave, not the copy the module read.
        diffs = result.get('diff')
        if isinstance(diffs, dict):
            diffs = [diffs]
        for entry in diffs or []:
            if isinstance(entry, dict) and entry.get('after_header') == args['src']:
                entry['after_header'] = src
        return result

    def _module_runs_here(self):
        """Whether the module runs on the controller as the controller's user, so it can read src in place."""
        if getattr(self._connection, 'transport', None) != 'local':
            return False
        return not self._play_context.become and getattr(self._connection, 'become', None) is None
