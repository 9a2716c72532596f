# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""External backup chains on disk: the layout under `dest`, manifests, point ids, and the
decisions taken on them (is a chain still valid for this VM, which chains retention drops).

The layout is the one in the collection's external backup contract:
    dest/<chain>/manifest.json, dest/<chain>/<point>.<device>.qcow2 (and .partial while a job runs).
Decisions are plain functions on dicts, unit-tested without QEMU. File I/O is limited to
reading and atomically writing manifests, listing chains, and removing a whole chain.

Backups hold whole guest disks (keys, password hashes): everything written here is private to
the user running the module, whatever its umask: chain directories 0700, files 0600 (created
with that mode, before any data is written). No Ansible imports here.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import tempfile

from ansible_collections.qemu.vm.plugins.module_utils._backup.errors import ChainInvalidError, ManifestError
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError

MANIFEST = 'manifest.json'
FORMAT = 1
BITMAP_PREFIX = 'qemu-vm-'
PARTIAL = '.partial'
_POINT_ID = re.compile(r'^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$')
_NULL_UUID = '00000000-0000-0000-0000-000000000000'
#: Modes of what a backup writes: a backup holds the guest's disks, readable by nobody else.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


# -- names -------------------------------------------------------------------------

def point_stamp(now: datetime.datetime) -> str:
    """UTC time as a point id stem: 20261201T004512Z."""
    return now.astimezone(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')


def iso_time(now: datetime.datetime) -> str:
    return now.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def unique_id(stem: str, taken) -> str:
    """`stem`, or `stem-2`, `stem-3`, ... the first not in `taken`."""
    taken = set(taken)
    if stem not in taken:
        return stem
    n = 2
    while f'{stem}-{n}' in taken:
        n += 1
    return f'{stem}-{n}'


def is_point_id(text) -> bool:
    return bool(_POINT_ID.match(text or ''))


def bitmap_name(chain: str) -> str:
    return BITMAP_PREFIX + chain


def file_name(point: str, device: str) -> str:
    return f'{point}.{device}.qcow2'


def vm_identity(name, uuid) -> dict:
    """The VM as a manifest records it; QEMU's all-zero UUID means "none given"."""
    return {'uuid': uuid if uuid and uuid != _NULL_UUID else None, 'name': name or None}


def same_vm(recorded: dict, current: dict) -> bool:
    """Whether a chain recorded for `recorded` belongs to the VM `current` (uuid first, else name)."""
    recorded = recorded or {}
    if recorded.get('uuid') and current.get('uuid'):
        return recorded['uuid'] == current['uuid']
    return recorded.get('name') == current.get('name')


# -- dest and manifests -------------------------------------------------------------

def check_dest(dest) -> str:
    """`dest` as an absolute, existing, writable directory, or ParameterError naming it."""
    if not dest or not os.path.isabs(dest):
        raise ParameterError('dest', f'dest must be an absolute path, got {dest!r}')
    if not os.path.isdir(dest):
        raise ParameterError('dest', f'dest {dest} does not exist or is not a directory; create it first')
    return os.path.normpath(dest)


def open_dest_warnings(dest: str) -> list:
    """A warning when `dest` lets group or others in (the chains in it are private anyway)."""
    try:
        mode = os.stat(dest).st_mode & 0o777
    except OSError:
        return []
    if not mode & 0o077:
        return []
    writable = ' and write to it (remove or rename chains)' if mode & 0o022 else ''
    return [f'dest {dest} is open to group or others (mode {mode:04o}): the backups themselves are private (chain '
            f'directories 0700, files 0600), but other local users can list the chains{writable}; make dest 0700 '
            '(the qemu.vm.backup role does)']


def make_chain_dir(chain_dir: str) -> None:
    """Create a new chain directory, private (0700) whatever the umask."""
    os.mkdir(chain_dir, PRIVATE_DIR)
    os.chmod(chain_dir, PRIVATE_DIR)


def keep_chain_private(chain_dir: str) -> bool:
    """Close an existing chain directory found open to other users (0700); True when it was open."""
    mode = os.lstat(chain_dir).st_mode & 0o777
    if not mode & 0o077:
        return False
    os.chmod(chain_dir, PRIVATE_DIR)
    return True


def create_private_file(path: str) -> None:
    """Create `path` empty, 0600, never through a link or over an existing file (FileExistsError).

    qemu-img and QEMU then write into it and keep its mode (they create files 0644 & ~umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def read_manifest(chain_dir: str):
    """The manifest of a chain directory, or None when it has none or it is not ours (wrong format)."""
    path = os.path.join(chain_dir, MANIFEST)
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ManifestError(f'cannot read {path}: {exc}')
    if not isinstance(data, dict) or data.get('format') != FORMAT or not isinstance(data.get('points'), list):
        return None
    return data


def write_manifest(chain_dir: str, manifest: dict) -> None:
    """Write atomically: a temporary file in the same directory, fsync, then os.replace."""
    fd, tmp = tempfile.mkstemp(prefix='.manifest.', suffix='.tmp', dir=chain_dir)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        with os.fdopen(fd, 'w') as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.write('\n')
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, os.path.join(chain_dir, MANIFEST))
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ManifestError(f'cannot write the manifest in {chain_dir}: {exc}')


def list_chains(dest: str, errors=None) -> list:
    """Every chain directory of `dest` that holds a manifest of ours, oldest first.

    Each entry: {'chain', 'dir', 'manifest'}. Other directories and files are ignored. An unreadable
    manifest raises ManifestError, or, when `errors` is a list, is skipped and its error appended there.
    """
    chains = []
    for entry in sorted(os.listdir(dest)):
        chain_dir = os.path.join(dest, entry)
        if not os.path.isdir(chain_dir) or os.path.islink(chain_dir):
            continue
        try:
            manifest = read_manifest(chain_dir)
        except ManifestError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
            continue
        if manifest is not None and manifest.get('chain') == entry:
            chains.append({'chain': entry, 'dir': chain_dir, 'manifest': manifest})
    chains.sort(key=lambda c: (c['manifest'].get('created') or '', c['chain']))
    return chains


def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer can still put on the file system holding path."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def chain_bytes(chain_dir: str, manifest: dict) -> int:
    return sum(f.get('bytes', 0) for p in manifest['points'] for f in p.get('files', []))


def missing_files(chain_dir: str, manifest: dict) -> list:
    """Files the manifest lists that are not in the chain directory (relative names)."""
    return [f['path'] for p in manifest['points'] for f in p.get('files', [])
            if not os.path.isfile(os.path.join(chain_dir, f['path']))]


def remove_chain(chain_dir: str) -> None:
    """Remove a whole chain: the manifest first, so a half-removed chain is never listed."""
    try:
        os.unlink(os.path.join(chain_dir, MANIFEST))
        shutil.rmtree(chain_dir)
    except OSError as exc:
        raise ManifestError(f'cannot remove the chain {chain_dir}: {exc}')


def remove_chains(chains: list, names: list, warn) -> list:
    """Retention, under dest's lock: remove the chains named (list_chains entries); returns the names
    removed. A chain that cannot be removed is a warning: the backup itself succeeded."""
    removed = []
    for entry in chains:
        if entry['chain'] in names:
            try:
                remove_chain(entry['dir'])
            except ManifestError as exc:
                warn(f'retention: {exc}')
                continue
            removed.append(entry['chain'])
    return removed


# -- decisions ----------------------------------------------------------------------

def new_manifest(chain: str, created: str, vm: dict, disks: list) -> dict:
    return {'format': FORMAT, 'chain': chain, 'bitmap': bitmap_name(chain), 'created': created,
            'vm': dict(vm), 'disks': [dict(d) for d in disks], 'points': []}


def chain_problem(manifest, vm_bitmaps: dict, vm_disks: dict, missing=(), unrecorded=()):
    """Why incremental backups cannot go on in this chain, or None when they can.

    manifest: the chain's manifest, or None when the VM has no chain in dest.
    vm_bitmaps: {device: [QEMU dirty bitmap dicts of the device's node]} (query-named-block-nodes).
    vm_disks: {device: {'node', 'virtual_size'}} of the devices this backup covers.
    missing: files the manifest lists that are gone from the chain directory.
    unrecorded: image files in the chain directory that the manifest does not list (a killed run's).
    """
    if manifest is None:
        return 'no chain: dest holds no backup chain of this VM yet'
    if not manifest.get('points'):
        return 'chain {0} has no complete point'.format(manifest.get('chain'))
    chain_devices = [d['device'] for d in manifest.get('disks', [])]
    added = sorted(set(vm_disks) - set(chain_devices))
    removed = sorted(set(chain_devices) - set(vm_disks))
    if added or removed:
        parts = (['added: ' + ', '.join(added)] if added else []) + (['removed: ' + ', '.join(removed)] if removed else [])
        return 'disk added or removed since chain {0} started ({1})'.format(manifest['chain'], '; '.join(parts))
    if missing:
        return 'files of chain {0} are missing from dest: {1}'.format(manifest['chain'], ', '.join(sorted(missing)))
    if unrecorded:
        return ('an earlier run into chain {0} was interrupted after writing files its manifest does not list ({1}); '
                'its jobs may have cleared the bitmaps'.format(manifest['chain'], ', '.join(sorted(unrecorded))))
    name = manifest.get('bitmap')
    for disk in manifest['disks']:
        device = disk['device']
        current = vm_disks[device]
        if disk.get('virtual_size') != current.get('virtual_size'):
            return 'disk {0} was resized ({1} -> {2} bytes) since chain {3} started'.format(
                device, disk.get('virtual_size'), current.get('virtual_size'), manifest['chain'])
        bitmap = next((b for b in vm_bitmaps.get(device, []) if b.get('name') == name), None)
        problem = bitmap_problem(bitmap, name, device)
        if problem:
            return problem
    return None


def bitmap_problem(bitmap, name: str, device: str):
    """Why one disk's bitmap cannot be trusted for an incremental, or None."""
    if bitmap is None:
        return (f'bitmap {name} missing on disk {device} (QEMU stopped without a clean shutdown before it stored the '
                'bitmap, was restarted on other images, or someone removed it)')
    if bitmap.get('inconsistent'):
        return (f'bitmap {name} on disk {device} is inconsistent (in use when QEMU stopped without a clean shutdown, '
                'for example after a crash or SIGKILL)')
    if bitmap.get('busy'):
        return f'bitmap {name} on disk {device} is in use by another block job'
    if not bitmap.get('recording', True):
        return f'bitmap {name} on disk {device} is disabled (not recording writes)'
    if not bitmap.get('persistent', True):
        return f'bitmap {name} on disk {device} is not persistent'
    return None


def choose_mode(requested: str, problem):
    """(mode, chain_reset) for `requested` (auto|full|incremental) given the current chain's problem.

    Raises ChainInvalidError for incremental without a valid chain.
    """
    if requested == 'incremental':
        if problem:
            raise ChainInvalidError(f'mode=incremental, but no valid chain to add to: {problem}. Run with mode=auto or '
                                    'mode=full to start a new chain')
        return 'incremental', None
    if requested == 'full':
        return 'full', None
    if problem:
        return 'full', {'reason': problem}
    return 'incremental', None


def next_point(manifest, now: datetime.datetime, taken_chains=()) -> str:
    """The id of the next point: in `manifest`'s chain, or (manifest None) of a new chain in dest."""
    stem = point_stamp(now)
    if manifest is None:
        return unique_id(stem, taken_chains)
    return unique_id(stem, [p['point'] for p in manifest['points']] + [manifest['chain']])


def last_time(manifest) -> str:
    points = manifest.get('points') or []
    return points[-1].get('time') if points else manifest.get('created')


def parse_iso(text):
    try:
        return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def retention(chains: list, in_use, now: datetime.datetime, keep_chains=None, max_age=None) -> list:
    """The chains (names) to remove, oldest first.

    chains: this VM's chains, oldest first (list_chains entries or {'chain', 'manifest'}).
    in_use: the chain written to by this run (never removed), or None.
    keep_chains: the newest N chains are kept whatever their age (the chain in use counts).
    max_age: seconds; of the chains not kept by keep_chains, those whose newest point is older are removed.
    With keep_chains only, every chain beyond the newest N is removed; with neither, none is.
    """
    if keep_chains is None and max_age is None:
        return []
    names = [c['chain'] for c in chains]
    kept = set(names[max(len(names) - keep_chains, 0):]) if keep_chains else set()
    drop = []
    for entry in chains:
        name = entry['chain']
        if name == in_use or name in kept:
            continue
        if max_age is not None:
            when = parse_iso(last_time(entry['manifest']))
            if when is not None and (now - when).total_seconds() <= max_age:
                continue
        drop.append(name)
    return drop


def check_keep_chains(value):
    if value is not None and value < 1:
        raise ParameterError('keep_chains', 'keep_chains must be at least 1 (the chain in use is always kept), '
                                            f'got {value}')
    return value


def summary(entry: dict) -> dict:
    """A chain as qemu_backup_info and diffs show it."""
    manifest = entry['manifest']
    return {
        'chain': entry['chain'],
        'path': entry['dir'],
        'bitmap': manifest.get('bitmap'),
        'created': manifest.get('created'),
        'vm': manifest.get('vm'),
        'disks': manifest.get('disks'),
        'bytes': chain_bytes(entry['dir'], manifest),
        'points': [{'point': p['point'], 'mode': p['mode'], 'parent': p.get('parent'), 'time': p.get('time'),
                    'quiesced': p.get('quiesced'),
                    'bytes': sum(f.get('bytes', 0) for f in p.get('files', [])),
                    'files': [dict(f, path=os.path.join(entry['dir'], f['path'])) for f in p.get('files', [])]}
                   for p in manifest['points']],
    }
