# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Files in the guest: input checks (ParameterError) and the decisions of qemu_guest_file (present, absent).

The bytes move through the shared transfer layer (transfer, also under the qemu.vm.qga
connection plugin); the guest side's tools are in files; state=fetched is in fetch. A file
is replaced atomically, and nothing a guest user plants at the path (a symbolic or hard
link, an entry swapped while we work) is followed: see replace. A symbolic link at the
path is replaced by the file unless follow=true.

No Ansible imports: the module qemu_guest_file is a thin wrapper around this.
"""

from __future__ import annotations

import posixpath
import re

from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._guest.agent import command_unavailable
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import (
    GuestDanglingLinkError,
    GuestDirectoryMissingError,
    GuestExecUnavailableError,
    GuestFileChangedError,
    GuestFileError,
    GuestIsADirectoryError,
    GuestNotADirectoryError,
    GuestNotAFileError,
    GuestToolMissingError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.replace import replace_file, set_in_place
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.transfer import DEFAULT_CHUNK
from ansible_collections.qemu.vm.plugins.module_utils._transport.qga import MAX_FILE_CHUNK

MIN_CHUNK = 1024
MAX_CHUNK = MAX_FILE_CHUNK
#: Like ansible.builtin.copy's default MAX_FILE_SIZE_FOR_DIFF.
DIFF_MAX_BYTES = 104448

# -- input checks ---------------------------------------------------------------------


def check_guest_path(path, name='path'):
    """Absolute POSIX (/x) or Windows (C:\\x) path, no NUL byte."""
    if not path or '\0' in path:
        raise ParameterError(name, f'{name} must be a non-empty path without NUL bytes')
    if not (path.startswith('/') or re.match(r'^[A-Za-z]:[\\/]', path) or path.startswith('\\\\')):
        raise ParameterError(name, f'{name} must be an absolute path in the guest, got {path!r}')
    if path.endswith('/') and path != '/':
        raise ParameterError(name, f'{name} must name a file, not a directory: {path!r} ends with /')


def check_chunk_size(value):
    if value is None:
        return DEFAULT_CHUNK
    if not MIN_CHUNK <= value <= MAX_CHUNK:
        raise ParameterError('chunk_size', f'chunk_size must be between {MIN_CHUNK} bytes and {MAX_CHUNK} bytes (48 MiB, the largest '
                                           f'guest-file-read the agent accepts), got {value}')
    return value


def parse_mode(value):
    """An octal mode: '0644', '644', '1777', or an int as Ansible's file modules take it (0644 in YAML)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ParameterError('mode', f'mode must be an octal number such as 0644, got {value!r}')
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not re.match(r'^0?[0-7]{1,4}$', text):
            raise ParameterError('mode', 'mode must be an octal number such as 0644 or 0755 (symbolic modes like u+rw '
                                         f'are not supported for guest files), got {value!r}')
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise ParameterError('mode', f'mode {value!r} is out of range (0000-7777 octal)')
    return mode


def check_id(value, name):
    if value is None:
        return None
    text = str(value)
    if not text or ':' in text or text.strip() != text:
        raise ParameterError(name, f'{name} must be a user/group name or a numeric id, got {value!r}')
    return text


def _matches(wanted, number, name):
    if wanted.isdigit():
        return int(wanted) == number
    return wanted == name


# -- the three states ------------------------------------------------------------------------


def _is_text(data):
    if b'\0' in data:
        return None
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        return None


class Desired:
    """What the task asks for."""

    def __init__(self, path, mode=None, owner=None, group=None, follow=False):
        self.path = path
        self.mode = mode
        self.owner = owner
        self.group = group
        self.follow = follow

    @property
    def wants_attributes(self):
        return self.mode is not None or self.owner is not None or self.group is not None

    def attribute_changes(self, current):
        """{name: (before, after)} for requested attributes that differ from `current` (None: new file)."""
        changes = {}
        if self.owner is not None and (current is None or not _matches(self.owner, current.uid, current.user)):
            changes['owner'] = (None if current is None else current.user, self.owner)
        if self.group is not None and (current is None or not _matches(self.group, current.gid, current.group)):
            changes['group'] = (None if current is None else current.group, self.group)
        if self.mode is not None and (current is None or current.mode != self.mode):
            changes['mode'] = (None if current is None else f'{current.mode:04o}', f'{self.mode:04o}')
        return changes


def _inspect_target(guest, path, follow):
    """(target path, GuestStat or None) for a file to write: a symbolic link as it is (replaced by the
    file), or with `follow` the file it points to. Fails for a missing parent directory, a directory,
    a dangling link (with follow) or anything but a file."""
    current = guest.stat(path)
    target = path
    if current is None:
        parent = posixpath.dirname(path) or '/'
        parent_stat = guest.stat(parent, follow=True)
        if parent_stat is None:
            raise GuestDirectoryMissingError(path, f'the guest directory {parent} does not exist, so {path} cannot be created')
        if parent_stat.kind != 'directory':
            raise GuestNotADirectoryError(path, f'cannot create {path}: {parent} is not a directory in the guest')
        return target, None
    if current.kind == 'link':
        if not follow:
            return target, current
        if guest.stat(path, follow=True) is None:
            raise GuestDanglingLinkError(path, f'{path} is a dangling symbolic link in the guest; point it at a file or '
                                               'remove it first (or set follow=false to replace the link by the file)')
        target = guest.realpath(path)
        current = guest.stat(target)
        if current is None or current.kind == 'link':
            raise GuestFileChangedError(path, f'the symbolic link {path} changed while it was followed; nothing was written')
    if current.kind == 'directory':
        raise GuestIsADirectoryError(path, f'{path} is a directory in the guest, not a file')
    if current.kind != 'file':
        raise GuestNotAFileError(path, f'{path} is not a regular file in the guest (it is a {current.kind})')
    return target, current


def _without_exec(guest, desired, reason):
    """What ensure_present can do without guest-exec (or its POSIX tools): write in place through the
    agent, which follows links, so only when the task says that links are to be followed."""
    path = desired.path
    if desired.wants_attributes:
        raise GuestExecUnavailableError(path, 'mode, owner and group are set through guest-exec (chmod/chown in the guest), '
                                              f'which is not available: {reason}')
    if not desired.follow:
        raise GuestExecUnavailableError(path, f'without guest-exec ({reason}) nothing can tell whether {path} is a symbolic '
                                              'link, and the agent writes through links: set follow=true to write it in place '
                                              'anyway (only where no untrusted guest user can write its directory)')
    guest.require('guest-file-open', 'guest-file-read', 'guest-file-seek', 'guest-file-close')
    return guest.probe(path)


def ensure_present(guest, source, desired, check_mode=False, diff_mode=False):
    """Make the guest file hold the source's bytes (and the requested attributes)."""
    path = desired.path
    exec_error = guest.exec_unavailable()
    use_exec = exec_error is None
    target, current = path, None
    if use_exec:
        try:
            target, current = _inspect_target(guest, path, desired.follow)
        except GuestToolMissingError as exc:
            use_exec, exec_error = False, exc
            guest.mark_exec_unusable(exc)
    if not use_exec:
        current = _without_exec(guest, desired, exec_error)
        if isinstance(exec_error, GuestToolMissingError):
            guest.warnings.append(f'guest-exec is offered but {exec_error}; {path} is written in place, not through a '
                                  'temporary file and a rename')

    # decide
    is_link = current is not None and current.kind == 'link'
    compared_by = 'missing'
    src_sum = None
    if current is None:
        content_changed = True
    elif is_link:
        content_changed = True
        compared_by = 'link'
    elif current.size != source.size:
        content_changed = True
        compared_by = 'size'
    else:
        guest_sum, compared_by = guest.checksum(target, current.size, use_exec)
        src_sum = source.sha256()
        content_changed = guest_sum != src_sum
    kept = None if is_link else current  # a link is replaced by a new file: nothing of it is kept
    attribute_changes = desired.attribute_changes(kept)
    changed = content_changed or bool(attribute_changes)

    result = {'changed': changed, 'guest_path': path, 'state': 'present', 'compared_by': compared_by}
    if target != path:
        result['guest_target'] = target
    if diff_mode and changed:
        result['diff'] = _present_diff(guest, source, target, current, content_changed, attribute_changes)

    if check_mode or not changed:
        result['checksum'] = src_sum or source.sha256()
        result['size'] = source.size
        return result

    # act
    if not content_changed:
        # Only attributes: changed on the file itself through a descriptor held on it; a file with other names
        # (hard links, maybe to a file that is not the user's) or a guest without /proc gets a new file instead.
        changes = (desired.owner, desired.group, desired.mode)
        content_changed = not (current.links == 1 and set_in_place(guest, target, current.identity, *changes))
    if content_changed:
        if use_exec:
            written_sum, size = _replace(guest, source, target, current, kept, desired)
        else:
            try:
                written_sum, size = guest.write_stream(target, source)
            except GuestFileError as exc:
                raise exc.reworded(f'{exc}; {target} was being written in place (the agent offers no usable guest-exec), so it '
                                   'may now be incomplete: run the task again', path=path)
        result['atomic'] = use_exec
        if src_sum is not None and written_sum != src_sum:
            raise GuestFileError(path, f'the source {source.label} changed while it was copied (SHA-256 {src_sum} before, {written_sum} while '
                                       'writing); run the task again')
        result['checksum'] = written_sum
        result['size'] = size
    else:
        result['checksum'] = src_sum
        result['size'] = source.size
    return result


def _replace(guest, source, target, current, kept, desired):
    """Replace `target` (as inspected: `current`) by a new file with the source's bytes; keep the owner,
    group and mode of the file replaced (`kept`) unless the task says otherwise."""
    mode, owner, group = desired.mode, desired.owner, desired.group
    if kept is not None:
        mode = kept.mode if mode is None else mode
        owner = str(kept.uid) if owner is None else owner
        group = str(kept.gid) if group is None else group
    expected = 'absent' if current is None else current.identity
    return replace_file(guest, source, target, expected, owner, group, mode)


def _present_diff(guest, source, target, current, content_changed, attribute_changes):
    diffs = []
    is_link = current is not None and current.kind == 'link'
    if is_link:
        current = None  # what the link points to is never read; it is replaced like a missing file
    if content_changed:
        entry = {'before_header': target, 'after_header': source.label}
        if source.size > DIFF_MAX_BYTES:
            entry['src_larger'] = DIFF_MAX_BYTES
        elif current is not None and current.size > DIFF_MAX_BYTES:
            entry['dst_larger'] = DIFF_MAX_BYTES
        else:
            before = b'' if current is None else guest.read_small(target, DIFF_MAX_BYTES)
            after = source.head(DIFF_MAX_BYTES + 1)
            before_text = None if before is None else _is_text(before)
            after_text = _is_text(after)
            if before is None:
                entry['dst_larger'] = DIFF_MAX_BYTES
            elif before_text is None:
                entry['dst_binary'] = 1
            elif after_text is None:
                entry['src_binary'] = 1
            else:
                entry['before'] = before_text
                entry['after'] = after_text
        diffs.append(entry)
    if attribute_changes or current is None:
        before = {'path': target, 'state': 'link' if is_link else 'absent' if current is None else 'file'}
        after = {'path': target, 'state': 'file'}
        for name, (old, new) in sorted(attribute_changes.items()):
            if current is not None:
                before[name] = old
            after[name] = new
        diffs.append({'before': before, 'after': after})
    return diffs


def ensure_absent(guest, path, check_mode=False, diff_mode=False):
    """Delete the guest file (guest-exec rm); nothing to do when it is not there."""
    result = {'changed': False, 'guest_path': path, 'state': 'absent'}
    exec_error = guest.exec_unavailable()
    current = None
    if exec_error is None:
        try:
            current = guest.stat(path)
        except GuestToolMissingError as exc:
            exec_error = exc
    if exec_error is not None:
        # Without guest-exec we can still tell that there is nothing to delete.
        if command_unavailable(guest.qga, 'guest-file-open') is None:
            try:
                exists = guest.probe(path) is not None
            except GuestNotADirectoryError:
                exists = False
            except GuestFileError:
                exists = True
            if not exists:
                return result
        raise GuestExecUnavailableError(path, f'cannot delete {path}: the guest agent has no delete command, so this needs '
                                              f'guest-exec running rm in the guest, which is not available: {exec_error}')
    if current is None:
        return result
    if current.kind == 'directory':
        raise GuestIsADirectoryError(path, f'{path} is a directory in the guest; state=absent deletes files only')
    result['changed'] = True
    if diff_mode:
        result['diff'] = {'before': {'path': path, 'state': 'link' if current.kind == 'link' else 'file'},
                          'after': {'path': path, 'state': 'absent'}}
    if not check_mode:
        guest.remove(path)
    return result


def throughput(moved, milliseconds):
    """MB/s (10**6 bytes per second) over the whole task, 0 when nothing moved."""
    if not moved or milliseconds <= 0:
        return 0.0
    return round(moved / 1e6 / (milliseconds / 1000.0), 3)
