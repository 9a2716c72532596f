# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""Replacing a guest file (and changing its attributes) so that nothing a guest user plants is
followed, through guest-exec shell scripts and the agent's file commands. We run as root in
the guest; a user who can write the file's directory (her home) can put a symbolic or hard
link there, or swap one entry for another between two of our steps. So:

- the new content goes into a file F inside a private directory D (ours, 0700) made beside the
  target. F's name is random and never on a command line (it reaches the scripts on their
  stdin), and the agent opens D/F without creating anything (mode r+), so a D swapped for a
  link reaches nothing;
- the scripts work from inside D (`cd -P`, then checked: ours, 0700, its parent the directory
  the first script entered), so renaming or replacing names cannot redirect them; F is checked
  (a regular file, its device:inode, one link) before chown -h, chmod and the rename;
- just before the rename the target is checked again against what was inspected (its
  device:inode, owner and type and mode bits, or absent): when it changed, nothing is renamed, F and D are deleted and the
  error names the path. The rename itself replaces a link; it never writes through one;
- attributes of a file kept as it is are changed through a descriptor held open on it
  (/proc/PID/fd), once that is the inspected file with one link; when the guest has no /proc
  the file is replaced instead.

The directories leading to the target are trusted, as ansible.builtin.copy trusts them: only
the last component is never followed. No Ansible imports.
"""

from __future__ import annotations

import posixpath
import random

from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.errors import (
    GuestDirectoryMissingError,
    GuestFileChangedError,
    GuestFileError,
    GuestFileMissingError,
    GuestToolMissingError,
)
from ansible_collections.qemu.vm.plugins.module_utils._guest_file.transfer import explain_text

_rng = random.SystemRandom()

#: stdin: F. $1 directory, $2 D, $3 the target's name (its earlier runs' leftovers are deleted).
#: Prints 'removed NAME' per leftover, then 'staged UMASK DIR-ID D-ID F-ID'.
STAGE = r'''
u=$(umask) && umask 077 || exit 92
IFS= read -r f || exit 90
cd -P -- "$1" || exit 91
here=$(stat -c %d:%i .) && me=$(id -u) || exit 92
ours() { case $(stat -c %u:%a .) in "$me:700"|"$me:2700") ;; *) return 1;; esac; [ "$(stat -c %d:%i ..)" = "$here" ]; }
for old in ./."$3".qemu-vm-????????.tmp; do
  if [ -d "$old" ] && [ ! -L "$old" ]; then
    if (cd -P -- "$old" && ours && for x in * .[!.]* ..?*; do
          if [ -f "$x" ] || [ -L "$x" ]; then rm -f -- "$x" || exit 1; fi; done) 2>/dev/null \
       && rmdir -- "$old" 2>/dev/null; then printf 'removed %s\n' "$old"; fi
  elif [ -e "$old" ] || [ -L "$old" ]; then
    rm -f -- "$old" 2>/dev/null && printf 'removed %s\n' "$old"
  fi
done
mkdir -- "$2" || exit 93
cd -P -- "$2" && ours || exit 94
set -C
: > "$f" || exit 95
printf 'staged %s %s %s %s\n' "$u" "$here" "$(stat -c %d:%i .)" "$(stat -c %d:%i -- "$f")"
'''

#: stdin: F. $1 directory, $2 D, $3 target name, $4 DIR-ID, $5 D-ID, $6 F-ID, $7 the target's identity
#: as inspected (device:inode:uid:rawmode, or 'absent'), $8 chown spec or '', $9 octal mode or ''.
COMMIT = r'''
IFS= read -r f || exit 90
cd -P -- "$1/$2" || exit 96
[ "$(stat -c %d:%i .)" = "$5" ] && [ "$(stat -c %d:%i ..)" = "$4" ] || exit 96
fid=$6
check() { [ -f "$f" ] && [ ! -L "$f" ] && [ "$(stat -c %d:%i:%h -- "$f")" = "$fid:1" ]; }
check || exit 97
if [ -n "$8" ]; then chown -h -- "$8" "$f" || exit 98; check || exit 97; fi
if [ -n "$9" ]; then chmod -- "$9" "$f" || exit 98; check || exit 97; fi
now=$(stat -c %d:%i:%u:%f -- "../$3" 2>/dev/null) || now=absent
[ "$now" = "$7" ] || exit 99
mv -f -T -- "$f" "../$3" || exit 100
cd .. && rmdir -- "$2" 2>/dev/null
exit 0
'''

#: stdin: F. $1 directory, $2 D, $3 DIR-ID, $4 D-ID. Deletes F and D when they are still ours.
DISCARD = r'''
IFS= read -r f
cd -P -- "$1/$2" 2>/dev/null || exit 0
[ "$(stat -c %d:%i .)" = "$4" ] && [ "$(stat -c %d:%i ..)" = "$3" ] || exit 0
rm -f -- "$f"
cd .. && rmdir -- "$2"
'''

#: $1 path, $2 its identity as inspected, $3 chown spec or '', $4 octal mode or ''. chown without -h
#: here: /proc/PID/fd/3 is the open file itself, which is what must change.
IN_PLACE = r'''
[ -d "/proc/$$/fd" ] || exit 101
exec 3< "$1" || exit 99
held=/proc/$$/fd/3
[ -f "$held" ] && [ "$(stat -L -c %d:%i:%u:%f:%h -- "$held")" = "$2:1" ] || exit 99
if [ -n "$3" ]; then chown -- "$3" "$held" || exit 98; fi
if [ -n "$4" ]; then chmod -- "$4" "$held" || exit 98; fi
exit 0
'''

_RACED = (94, 96, 97, 99)


def temp_dir_name(target):
    """The private directory's name beside `target`: `.NAME.qemu-vm-XXXXXXXX.tmp`."""
    return '.' + posixpath.basename(target)[:200] + f'.qemu-vm-{_rng.getrandbits(32):08x}.tmp'


def owner_spec(owner, group):
    """chown's USER[:GROUP] (or :GROUP), '' for nothing to change."""
    return (owner or '') + (':' + group if group else '')


class Staging:
    """The private directory D and file F made beside a target by `stage`."""

    def __init__(self, directory, dname, fname, umask, dir_id, dname_id, fname_id):
        self.directory = directory
        self.dname = dname
        self.fname = fname
        self.umask = umask
        self.dir_id = dir_id
        self.dname_id = dname_id
        self.fname_id = fname_id

    @property
    def path(self):
        """What the agent writes: an existing file (open it with mode r+b)."""
        return posixpath.join(self.directory, self.dname, self.fname)

    @property
    def stdin(self):
        return f'{self.fname}\n'.encode('ascii')


def _failure(code, err, target, what):
    text = err.decode('utf-8', 'replace').strip()
    directory = posixpath.dirname(target) or '/'
    if code in _RACED:
        return GuestFileChangedError(target, f'{what}: something else changed {target} or the private temporary directory '
                                             f'beside it while the task worked ({directory} can be written by others, a guest '
                                             f'user?); {target} was left as it is. Run the task again once {directory} is quiet')
    if code == 92:
        return GuestToolMissingError('stat, id or umask', text or f'exit code {code}', target)
    return explain_text(target, what, text or f'exit code {code}')


def stage(guest, target):
    """Make D (0700) and F (empty, 0600) beside `target` and delete what earlier runs left there; the Staging."""
    directory = posixpath.dirname(target) or '/'
    fname = f'qvm{_rng.getrandbits(64):016x}'
    dname = temp_dir_name(target)
    code, out, err = guest.run(['sh', '-c', STAGE, 'qemu-vm-stage', directory, dname, posixpath.basename(target)[:200]],
                               stdin=f'{fname}\n'.encode('ascii'))
    if code != 0:
        raise _failure(code, err, target, 'cannot make the private temporary file for it')
    staged = None
    for line in out.decode('utf-8', 'surrogateescape').splitlines():
        if line.startswith('removed '):
            guest.warnings.append(f'deleted {posixpath.join(directory, posixpath.basename(line[8:]))}, a temporary file '
                                  'an interrupted earlier run left in the guest')
        elif line.startswith('staged '):
            staged = line.split()[1:]
    if not staged or len(staged) != 4:
        raise GuestFileError(target, f'unexpected output from the guest while making a temporary file beside {target}: '
                                     f'{out[-200:]!r}')
    try:
        umask = int(staged[0], 8)
    except ValueError:
        umask = 0o022
    return Staging(directory, dname, fname, umask, *staged[1:])


def commit(guest, staging, target, expected, owner=None, group=None, mode=None):
    """Give F its owner, group and mode and rename it over `target`, which must still be `expected`
    (its identity as inspected, or 'absent')."""
    argv = ['sh', '-c', COMMIT, 'qemu-vm-commit', staging.directory, staging.dname, posixpath.basename(target),
            staging.dir_id, staging.dname_id, staging.fname_id, expected, owner_spec(owner, group),
            '' if mode is None else f'{mode:04o}']
    code, _out, err = guest.run(argv, stdin=staging.stdin)
    if code != 0:
        raise _failure(code, err, target, f'cannot replace {target}')


def discard(guest, staging):
    """Delete F and D (quietly: the error that brought us here is the one to report)."""
    try:
        guest.run(['sh', '-c', DISCARD, 'qemu-vm-discard', staging.directory, staging.dname, staging.dir_id,
                   staging.dname_id], stdin=staging.stdin)
    except QemuVMError:
        pass


def set_in_place(guest, path, identity, owner=None, group=None, mode=None):
    """Change the owner, group and mode of the file `path` is (`identity` as stat gave it, one link) without
    following anything put in its place; False when the guest cannot do that safely (no /proc)."""
    argv = ['sh', '-c', IN_PLACE, 'qemu-vm-attributes', path, identity, owner_spec(owner, group),
            '' if mode is None else f'{mode:04o}']
    code, _out, err = guest.run(argv)
    if code == 101:
        return False
    if code != 0:
        raise _failure(code, err, path, f'cannot change the owner, group or mode of {path}')
    return True


def replace_file(guest, source, target, expected, owner=None, group=None, mode=None):
    """Write `source` into a new file beside `target` with these attributes (mode None: 0666 minus the
    agent's umask) and rename it over `target` (still `expected`); (sha256 hex, size) written."""
    staging = stage(guest, target)
    if mode is None:
        mode = 0o666 & ~staging.umask
    try:
        try:
            written = guest.write_stream(staging.path, source, mode='r+b')
        except (GuestFileMissingError, GuestDirectoryMissingError) as exc:
            raise GuestFileChangedError(target, f'the private temporary directory beside {target} was replaced before '
                                                f'the content could be written ({exc}); {target} was left as it is') from exc
        commit(guest, staging, target, expected, owner, group, mode)
    except GuestFileError as exc:
        discard(guest, staging)
        if isinstance(exc, GuestFileChangedError):
            raise
        raise exc.reworded(f'writing {target} through a private temporary file failed, {target} is unchanged: {exc}',
                           path=target)
    except BaseException:
        discard(guest, staging)
        raise
    return written
