# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""state=fetched of qemu_guest_file: a guest file to a local file on the host that runs the module.

The guest file is streamed into `.NAME.<pid>.<random>.qemu-vm.tmp` beside the destination
and renamed over it only when complete and different. A run that is killed cannot remove
its temporary file; the next run for the same destination does, for every such file whose
process is gone. No Ansible imports.
"""

from __future__ import annotations

import errno
import glob
import os
import tempfile

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.state import DIFF_MAX_BYTES
from ansible_collections.qemu.vm.plugins.module_utils._util.hashing import sha256_file

TEMP_SUFFIX = '.qemu-vm.tmp'


def fetch_dest(dest, guest_path):
    """The absolute local file to write: dest, or dest/<guest file name> when dest is a directory.

    `dest` must be absolute: the action plugin resolves a relative one against the playbook
    directory (the current directory for ad-hoc commands), as ansible.builtin.fetch does.
    """
    if not os.path.isabs(dest):
        raise ParameterError('dest', f'dest {dest} is relative: give an absolute path (the action plugin resolves '
                                     'relative ones against the playbook directory)')
    if os.path.isdir(dest):
        name = guest_path.replace('\\', '/').rstrip('/').rsplit('/', 1)[-1]
        dest = os.path.join(dest, name)
    dest = os.path.normpath(dest)
    if os.path.isdir(dest):
        raise ParameterError('dest', f'dest {dest} is a directory')
    if os.path.lexists(dest) and not os.path.isfile(dest):
        raise ParameterError('dest', f'dest {dest} exists and is not a regular file')
    if not os.path.isdir(os.path.dirname(dest)):
        raise ParameterError('dest', f'dest directory {os.path.dirname(dest)} does not exist on the managed host')
    return dest


def _temp_prefix(dest):
    return f'.{os.path.basename(dest)[:200]}.'


def remove_stale_temps(dest):
    """Delete the temporary files earlier runs for `dest` left (their process is gone); return them."""
    removed = []
    prefix = os.path.join(os.path.dirname(dest), glob.escape(_temp_prefix(dest)))
    for path in glob.glob(prefix + '*' + glob.escape(TEMP_SUFFIX)):
        middle = os.path.basename(path)[len(_temp_prefix(dest)):-len(TEMP_SUFFIX)]
        pid = middle.split('.', 1)[0]
        if pid.isdigit() and _process_alive(int(pid)):
            continue  # another run for the same dest is writing it now
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def _process_alive(pid):
    """Whether `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            return False
    try:
        with open(f'/proc/{pid}/stat') as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return True  # no /proc to ask: it exists


class _DiffKeeper:
    """Keeps the first bytes of a stream, for a diff of small files."""

    def __init__(self, limit):
        self.limit = limit
        self.parts = []
        self.size = 0

    def add(self, data):
        if self.size <= self.limit:
            self.parts.append(data[:self.limit + 1 - self.size])
        self.size += len(data)

    def data(self):
        return b''.join(self.parts) if self.size <= self.limit else None


def _text(data):
    if data is None or b'\0' in data:
        return None
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        return None


def ensure_fetched(guest, path, dest, replace, check_mode=False, diff_mode=False):
    """Make the local file `dest` (absolute, from fetch_dest) hold the guest file's bytes.

    replace(tmp, dest) renames the complete temporary file over dest (AnsibleModule.atomic_move).
    """
    before = sha256_file(dest) if os.path.exists(dest) else None
    keeper = _DiffKeeper(DIFF_MAX_BYTES) if diff_mode else None
    if check_mode:
        digest, size = guest.read_stream(path, keeper.add if keeper else None)
    else:
        for leftover in remove_stale_temps(dest):
            guest.warnings.append(f'deleted {leftover}, a temporary file an interrupted earlier run left')
        fd, tmp = tempfile.mkstemp(prefix=f'{_temp_prefix(dest)}{os.getpid()}.', suffix=TEMP_SUFFIX,
                                   dir=os.path.dirname(dest))
        try:
            with os.fdopen(fd, 'wb') as handle:
                def sink(data):
                    if keeper is not None:
                        keeper.add(data)
                    handle.write(data)
                digest, size = guest.read_stream(path, sink)
            if digest != before:
                replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    # Not 'path'/'dest': AnsibleModule would overwrite size and state with the stat of that file.
    result = {'changed': digest != before, 'guest_path': path, 'state': 'fetched', 'dest_path': dest,
              'checksum': digest, 'size': size}
    if diff_mode and result['changed']:
        result['diff'] = _fetch_diff(dest, path, before is not None, keeper)
    return result


def _fetch_diff(dest, path, existed, keeper):
    entry = {'before_header': dest, 'after_header': f'{path} (guest)'}
    after = keeper.data()
    if after is None:
        entry['src_larger'] = DIFF_MAX_BYTES
        return entry
    before = b''
    if existed:
        if os.path.getsize(dest) > DIFF_MAX_BYTES:
            entry['dst_larger'] = DIFF_MAX_BYTES
            return entry
        with open(dest, 'rb') as handle:
            before = handle.read()
    if _text(before) is None:
        entry['dst_binary'] = 1
    elif _text(after) is None:
        entry['src_binary'] = 1
    else:
        entry['before'] = _text(before)
        entry['after'] = _text(after)
    return entry
