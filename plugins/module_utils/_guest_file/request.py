# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""qemu_guest_file's parameters, checked without the guest: `parse_request` -> FileRequest.

Every problem found is named in one ParameterError (the first one's option is its `parameter`),
so a task with several mistakes is fixed in one go. No Ansible imports here.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.state import (
    check_chunk_size,
    check_guest_path,
    check_id,
    parse_mode,
)


class FileRequest(NamedTuple):
    path: str
    state: str  # present, fetched or absent
    content: str | None
    src: str | None
    dest: str | None
    chunk_size: int
    mode: object  # as given (fetched: Ansible's file attributes take symbolic modes too)
    file_mode: int | None  # state=present: mode as a number
    owner: str | None
    group: str | None
    follow: bool
    max_size: int | None


def parse_request(params: dict) -> FileRequest:
    problems = []  # (option, message)

    def check(step, *args):
        try:
            return step(*args)
        except ParameterError as exc:
            problems.append((exc.parameter, str(exc)))
            return None

    state = params['state']
    check(check_guest_path, params['path'])
    chunk_size = check(check_chunk_size, params['chunk_size'])
    file_mode = None
    if state == 'present':
        if params['dest'] is not None:
            problems.append(('dest', 'dest is only used with state=fetched; state=present writes path in the guest'))
        if params['content'] is None and params['src'] is None:
            problems.append(('content', 'state=present needs content or src'))
        file_mode = check(parse_mode, params['mode'])
    else:
        for name in ('content', 'src'):
            if params[name] is not None:
                problems.append((name, f'{name} is only used with state=present'))
    if state == 'fetched' and not params['dest']:
        problems.append(('dest', 'state=fetched needs dest, the file to write on the managed host'))
    if params['remote_src'] and params['src'] is not None and not os.path.isabs(params['src']):
        problems.append(('src', 'src {0} is relative: with remote_src=true give an absolute path on the managed '
                                'host'.format(params['src'])))
    if state == 'absent':
        for name in ('dest', 'mode', 'owner', 'group'):
            if params[name] is not None:
                problems.append((name, f'{name} is not used with state=absent'))
    if params['follow'] and state != 'present':
        problems.append(('follow', 'follow is only used with state=present'))
    if params['max_size'] is not None and (state != 'fetched' or params['max_size'] < 1):
        problems.append(('max_size', 'max_size is only used with state=fetched, and is at least 1 byte'))
    for name in ('owner', 'group'):
        check(check_id, params[name], name)
    if problems:
        raise ParameterError(problems[0][0], '; '.join(message for _option, message in problems))
    return FileRequest(params['path'], state, params['content'], params['src'], params['dest'], chunk_size,
                       params['mode'], file_mode, params['owner'], params['group'], params['follow'], params['max_size'])
