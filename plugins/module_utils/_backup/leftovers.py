# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""What a qemu_backup run that was killed (SIGKILL, a lost connection) left in dest and in QEMU.

A run cleans up after itself on every error, but not when it is killed. Then dest can hold
files the manifest does not list (`.partial` targets, or a finished point the run could not
record), a chain directory without a manifest (a killed full point), and QEMU can still hold
the run's target nodes, its jobs and a new chain's bitmaps.

The dangerous case is a finished incremental point that was never recorded: its job cleared the
chain's bitmaps, so the chain no longer knows what the guest wrote before that point. So a chain
with unrecorded files is never continued (`chain_problem` says why), and clearing the leftovers
removes its bitmaps, so it stays invalid even if this run fails too.

`dest_lock` makes that safe: while a run holds it no other run writes into dest, so everything
of ours in dest that no manifest lists is a leftover. No Ansible imports here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os

from ansible_collections.qemu.vm.plugins.module_utils._backup.chain import (
    PARTIAL,
    bitmap_name,
    is_point_id,
    read_manifest,
)
from ansible_collections.qemu.vm.plugins.module_utils._backup.errors import ManifestError
from ansible_collections.qemu.vm.plugins.module_utils._backup.job import remove_bitmap_where_present, stop_jobs
from ansible_collections.qemu.vm.plugins.module_utils._errors import ParameterError
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import JOB_ID_PREFIX

#: Target nodes and jobs of a point are named <TARGET_PREFIX><8 hex digits>-...
TARGET_PREFIX = JOB_ID_PREFIX + 'backup-'
_TAG_LENGTH = 8


@contextlib.contextmanager
def dest_lock(dest: str):
    """Hold dest's lock: a flock of the directory itself (nothing is written; the kernel releases
    it when a killed run's process is gone)."""
    try:
        handle = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ParameterError('dest', f'dest {dest}: cannot open it: {exc.strerror}')
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ParameterError('dest', f'dest {dest}: another qemu_backup run is writing into it (it holds the '
                                         "directory's lock); one run per dest at a time, nothing was changed")
        yield
    finally:
        os.close(handle)


def _ours(name: str) -> bool:
    return name.endswith('.qcow2') or name.endswith('.qcow2' + PARTIAL)


def unrecorded_files(chain_dir: str, manifest) -> list:
    """Our image files in chain_dir that the manifest (None: no manifest) does not list."""
    listed = set(f['path'] for p in (manifest or {}).get('points', []) for f in p.get('files', []))
    return sorted(name for name in os.listdir(chain_dir)
                  if _ours(name) and name not in listed and os.path.isfile(os.path.join(chain_dir, name)))


def find_leftovers(dest: str, chains: list) -> dict:
    """{chain: [unrecorded files]} for this VM's chains, and 'aborted': chain directories
    with no manifest that hold nothing but our image files (a killed full point)."""
    found = {'unrecorded': {}, 'aborted': []}
    for entry in chains:
        files = unrecorded_files(entry['dir'], entry['manifest'])
        if files:
            found['unrecorded'][entry['chain']] = files
    for name in sorted(os.listdir(dest)):
        chain_dir = os.path.join(dest, name)
        if not is_point_id(name) or not os.path.isdir(chain_dir) or os.path.islink(chain_dir):
            continue
        try:
            if read_manifest(chain_dir) is not None:
                continue
        except ManifestError:
            continue  # not ours to judge: reported by list_chains
        if os.listdir(chain_dir) == unrecorded_files(chain_dir, None):
            found['aborted'].append(name)
    return found


def describe(leftovers: dict) -> list:
    """One warning per leftover chain (for the task's output)."""
    lines = ['an interrupted earlier run left files chain {0} does not list ({1}): removed them; the chain is not '
             'continued, since that run may have cleared its bitmaps'.format(chain, ', '.join(files))
             for chain, files in sorted(leftovers['unrecorded'].items())]
    lines += [f'an interrupted earlier run left chain {name} without a manifest: removed it and its bitmaps'
              for name in leftovers['aborted']]
    return lines


def clear_leftovers(qmp, dest: str, leftovers: dict, disks: list) -> None:
    """Under dest_lock, after drop_stale_targets: remove the killed runs' files and the bitmaps of
    every chain they touched. disks: _backup_job.read_disks()."""
    for chain, files in leftovers['unrecorded'].items():
        for name in files:
            os.unlink(os.path.join(dest, chain, name))
    for name in leftovers['aborted']:
        for file_name in os.listdir(os.path.join(dest, name)):
            os.unlink(os.path.join(dest, name, file_name))
        os.rmdir(os.path.join(dest, name))
    for chain in list(leftovers['unrecorded']) + leftovers['aborted']:
        remove_bitmap_where_present(qmp, disks, bitmap_name(chain))


def drop_stale_targets(qmp, dest: str) -> list:
    """Under dest_lock, first: cancel and dismiss the jobs of our target nodes that write into dest,
    then delete the nodes (a running job's filter hides the disk's own node until then).
    Returns a warning when there were any."""
    inside = os.path.join(os.path.realpath(dest), '')
    nodes = [n['node-name'] for n in qmp.execute('query-named-block-nodes', {'flat': True})
             if n.get('node-name', '').startswith(TARGET_PREFIX) and n.get('drv') == 'qcow2'
             and os.path.realpath(_image_path(n.get('file'))).startswith(inside)]
    if not nodes:
        return []
    tags = set(_tag(name) for name in nodes)
    stopped = stop_jobs(qmp, lambda job_id: job_id.startswith(TARGET_PREFIX) and _tag(job_id) in tags,
                        'cancelling the jobs of an interrupted backup run', give_up=False)
    for name in nodes:
        qmp.execute('blockdev-del', {'node-name': name})
    return ['an interrupted earlier run into dest left backup jobs ({0}) and target nodes in QEMU: stopped and '
            'removed them'.format(', '.join(stopped) or 'none')]


def _image_path(filename) -> str:
    """The file under a node's filename: QEMU shows a target node as `json:{..., "file": {"driver":
    "file", "filename": ...}}` once a job used it (its options differ from the image's header)."""
    if not filename:
        return '/'
    if not filename.startswith('json:'):
        return filename
    try:
        options = json.loads(filename[len('json:'):])
    except ValueError:
        return '/'
    while isinstance(options, dict) and 'filename' not in options:
        options = options.get('file')
    return options['filename'] if isinstance(options, dict) else '/'


def _tag(name: str) -> str:
    return name[len(TARGET_PREFIX):len(TARGET_PREFIX) + _TAG_LENGTH]
