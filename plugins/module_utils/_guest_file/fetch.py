# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""state=fetched of qemu_guest_file: a guest file to a local file on the host that runs the module.

The guest file is streamed into `.NAME.<pid>.<random>.qemu-vm.tmp` beside the destination,
private (0600) from its first byte and made only once the guest file's size is known to fit
there, and renamed over it only when complete and different, with its final owner, group and
mode already set (the file is never in place with others). A run that is killed cannot remove
its temporary file; the next run for the same destination does, for every such file whose
process is gone. No Ansible imports.
"""

from __future__ import annotations

import errno
import glob
import os
import stat

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.local import LocalCopy
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


def _kept_attributes(dest):
    """(mode, (uid, gid) or None) for the new copy: those of the dest it replaces, else 0600 (it holds guest data)."""
    try:
        info = os.stat(dest)
    except FileNotFoundError:
        return 0o600, None
    owner = (info.st_uid, info.st_gid) if os.geteuid() == 0 else None
    return stat.S_IMODE(info.st_mode), owner


def ensure_fetched(guest, path, dest, finish=None, max_size=None, check_mode=False, diff_mode=False):
    """Make the local file `dest` (absolute, from fetch_dest) hold the guest file's bytes.

    The guest file is read (bounded: transfer.download, at most max_size bytes) into a private
    temporary file beside dest, made once its size is known to fit there; when the bytes differ
    from dest's, it gets its final attributes before it is renamed over dest: those of the dest
    it replaces (a new one 0600), then finish(temporary path) (the task's owner, group, mode).
    """
    before = sha256_file(dest) if os.path.exists(dest) else None
    keeper = _DiffKeeper(DIFF_MAX_BYTES) if diff_mode else None
    if check_mode:
        digest, size = guest.read_stream(path, keeper.add if keeper else None, max_size=max_size)
    else:
        for leftover in remove_stale_temps(dest):
            guest.warnings.append(f'deleted {leftover}, a temporary file an interrupted earlier run left')
        with LocalCopy(dest, path, prefix=f'{_temp_prefix(dest)}{os.getpid()}.', suffix=TEMP_SUFFIX) as copy:
            def sink(data):
                if keeper is not None:
                    keeper.add(data)
                copy.write(data)
            digest, size = guest.read_stream(path, sink, max_size=max_size, start=copy.create)
            if digest != before:
                mode, owner = _kept_attributes(dest)
                copy.commit(mode, owner, finish)
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
