# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This module_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""The QMP work of one external backup point (see docs/interop/bitmaps.rst in QEMU).

  1. `qemu-img create` one target per disk as `<point>.<device>.qcow2.partial` (an incremental's
     target records the previous point's file as its backing file, by relative name), into a
     file created 0600 beforehand (qemu-img would create it 0644 & ~umask);
  2. `blockdev-add` each target with `backing: null` (QEMU writes only what it copies); for a
     full point, `block-dirty-bitmap-add` (persistent) the new chain's bitmap on every disk. QEMU
     refuses bitmap actions in a grouped transaction, so they come first: the job clears the
     bitmap when it succeeds (`bitmap-mode: on-success`), so it then holds exactly the writes
     made after the point;
  3. one `transaction` of `blockdev-backup` per disk (`sync=full`, or `sync=incremental` with
     the chain's bitmap), `completion-mode: grouped`: one failing job cancels the others, and a
     bitmap is cleared only when every job succeeded. The caller may freeze the guest around
     this step only (it returns as soon as the jobs started);
  4. wait for every job (query-jobs, bounded), dismiss them, `blockdev-del` the targets;
  5. on success rename `.partial` away and take each file's size and sha256; on any failure
     cancel the jobs, remove the partial files and the bitmaps a full point added, so the VM's
     bitmaps and the chain are as before.

`estimate_bytes` says beforehand how much the point's files will take (qemu-img measure of each
disk for a full point, the bitmaps' dirty bytes for an incremental one).

No Ansible imports here.
"""

from __future__ import annotations

import os
import time
import uuid

from ansible_collections.qemu.vm.plugins.module_utils._qemu.block import describe_nodes
from ansible_collections.qemu.vm.plugins.module_utils._backup.chain import PARTIAL, create_private_file, file_name
from ansible_collections.qemu.vm.plugins.module_utils._backup.errors import BackupError
from ansible_collections.qemu.vm.plugins.module_utils._errors import CommandError, JobError, QemuTimeoutError, QemuVMError
from ansible_collections.qemu.vm.plugins.module_utils._util.hashing import sha256_file
from ansible_collections.qemu.vm.plugins.module_utils._qemu.qemu_img import measure_required, run_qemu_img
from ansible_collections.qemu.vm.plugins.module_utils._transport.qmp import JOB_ID_PREFIX
from ansible_collections.qemu.vm.plugins.module_utils._transport.wait import Deadline, wait_until

#: How long cancelled jobs get to conclude before we give up on them.
CANCEL_GRACE = 30.0
#: Bound of one qemu-img run (create, measure): both read or write metadata only.
QEMU_IMG_TIMEOUT = 120.0
#: A progress sample is kept (and logged) at most this often.
PROGRESS_EVERY = 5.0
#: Parallel copy requests of one job (QEMU's default is 64). The transaction returns only after the
#: job has issued its first requests, and it runs while the guest is frozen: on this project's bench
#: a full job started with 64 workers held the transaction ~25 ms, with 8 ~3 ms, copying as fast.
#: blockdev-backup takes `x-perf` since QEMU 6.0.
MAX_WORKERS = 8


def read_disks(qmp) -> list:
    """The VM's top-of-device nodes with their dirty bitmaps (query-block + query-named-block-nodes)."""
    named = qmp.execute('query-named-block-nodes', {'flat': True})
    bitmaps = dict((raw.get('node-name'), raw.get('dirty-bitmaps') or []) for raw in named)
    disks = []
    for node in describe_nodes(qmp.execute('query-block'), named):
        if node['top'] and node['device']:
            disks.append({'device': node['device'], 'node': node['node_name'], 'driver': node['driver'],
                          'file': node['file'],
                          'read_only': node['read_only'], 'virtual_size': node['virtual_size'],
                          'bitmaps': bitmaps.get(node['node_name'], [])})
    return disks


def remove_bitmaps(qmp, node_names: dict, name: str) -> list:
    """Remove bitmap `name` from each node of {device: node} that has it; returns the devices it was removed from."""
    removed = []
    for device, node in sorted(node_names.items()):
        try:
            qmp.execute('block-dirty-bitmap-remove', {'node': node, 'name': name})
            removed.append(device)
        except CommandError:
            pass  # not there (or the node is gone): nothing to remove
    return removed


def remove_bitmap_where_present(qmp, disks: list, name: str) -> list:
    """remove_bitmaps() on the disks (read_disks() entries) that have bitmap `name`."""
    return remove_bitmaps(qmp, dict((d['device'], d['node']) for d in disks
                                    if any(b.get('name') == name for b in d['bitmaps'])), name)


def dismiss_jobs(qmp, jobs: dict) -> None:
    """Dismiss the concluded ones of {job id: job info} (one already gone is not an error)."""
    for job_id, job in jobs.items():
        if job.get('status') == 'concluded':
            try:
                qmp.execute('job-dismiss', {'id': job_id})
            except CommandError:
                pass


def stop_jobs(qmp, wanted, what: str, give_up: bool = True) -> list:
    """Cancel the jobs whose id `wanted(id)` accepts that still run, wait until all concluded
    (bounded by CANCEL_GRACE), dismiss them; returns their ids. When they do not conclude in
    time: leave them (give_up) or raise QemuTimeoutError for `what`."""
    def current():
        return dict((j['id'], j) for j in qmp.execute('query-jobs') if wanted(j.get('id', '')))

    jobs = current()
    if not jobs:
        return []
    for job_id, job in jobs.items():
        if job.get('status') not in ('concluded', 'null'):
            try:
                qmp.execute('job-cancel', {'id': job_id})
            except CommandError:
                pass  # concluded meanwhile

    def settled():
        now = current()
        return [now] if all(j.get('status') == 'concluded' for j in now.values()) else None

    bound = {'default': [{}]} if give_up else {}
    concluded = wait_until(settled, Deadline(CANCEL_GRACE), what, interval=0.05, max_interval=0.5, **bound)[0]
    dismiss_jobs(qmp, concluded)
    return sorted(concluded)


def incremental_bytes(dirty: int) -> int:
    """What a qcow2 holding `dirty` bytes of clusters takes at most: the data, its L2 entries
    and refcounts (well under 1/512 of it with 64 KiB clusters), header, L1 and refcount table."""
    return dirty + dirty // 512 + 1024 * 1024


def estimate_bytes(disks: list, mode: str, bitmap: str, warn) -> dict:
    """{device: bytes its file of this point will take}. A disk that cannot be measured counts
    0, with a warning naming it (the check is a guard, not a reason to refuse a backup)."""
    needed = {}
    for disk in disks:
        if mode == 'incremental':
            dirty = [b.get('count', 0) for b in disk['bitmaps'] if b.get('name') == bitmap]
            needed[disk['device']] = incremental_bytes(dirty[0] if dirty else disk['virtual_size'])
            continue
        try:
            needed[disk['device']] = measure_required(disk['file'], QEMU_IMG_TIMEOUT)
        except QemuVMError as exc:
            warn('free space in dest not checked for disk {0}: {1}'.format(disk['device'], exc))
            needed[disk['device']] = 0
    return needed


class BackupPoint:
    """One point: disks [{'device', 'node', 'virtual_size'}], written into chain_dir.

    mode 'full' adds `bitmap` on every disk; 'incremental' copies what `bitmap` recorded onto
    targets backed by `parent`'s files. Call run(start) where start(begin) must call begin()
    once (the caller wraps it in the guest freeze) and return what it returned.
    """

    def __init__(self, qmp, chain_dir, point, mode, disks, bitmap, parent=None, job_timeout=3600.0, log=None):
        self.qmp = qmp
        self.chain_dir = chain_dir
        self.point = point
        self.mode = mode
        self.disks = disks
        self.bitmap = bitmap
        self.parent = parent
        self.job_timeout = job_timeout
        self.log = log or (lambda message: None)
        tag = uuid.uuid4().hex[:8]
        self.targets = [{'device': d['device'], 'node': d['node'], 'virtual_size': d['virtual_size'],
                         'name': file_name(point, d['device']),
                         'target_node': f'{JOB_ID_PREFIX}backup-{tag}-{i}',
                         'job': '{0}backup-{1}-{2}'.format(JOB_ID_PREFIX, tag, d['device'])}
                        for i, d in enumerate(disks)]
        self.created = []
        self.added = []
        self.new_bitmaps = {}
        self.jobs_started = False
        self.progress = []

    def path(self, target, partial=True):
        return os.path.join(self.chain_dir, target['name'] + (PARTIAL if partial else ''))

    # -- steps --------------------------------------------------------------------

    def create_targets(self):
        for target in self.targets:
            path = self.path(target)
            try:
                # Private from the start: qemu-img writes into the file we made and keeps its mode.
                create_private_file(path)
            except FileExistsError:
                raise BackupError(f'{path} already exists: another backup may be running into this chain; remove it if '
                                  'not')
            except OSError as exc:
                raise BackupError(f'cannot create the backup target {path}: {exc.strerror}')
            self.created.append(path)
            args = ['create', '-q', '-f', 'qcow2']
            if self.mode == 'incremental':
                args += ['-b', file_name(self.parent, target['device']), '-F', 'qcow2']
            run_qemu_img(args + [path, target['virtual_size']], QEMU_IMG_TIMEOUT,
                         f'creating the backup target {path}', cwd=self.chain_dir)
        for target in self.targets:
            self.qmp.execute('blockdev-add', {
                'driver': 'qcow2', 'node-name': target['target_node'], 'backing': None,
                'file': {'driver': 'file', 'filename': self.path(target)}})
            self.added.append(target['target_node'])

    def add_bitmaps(self):
        """A full point's new bitmaps (outside the transaction: QEMU refuses them in a grouped one)."""
        for target in self.targets:
            self.qmp.execute('block-dirty-bitmap-add', {'node': target['node'], 'name': self.bitmap,
                                                        'persistent': True})
            self.new_bitmaps[target['device']] = target['node']

    def actions(self):
        actions = []
        for target in self.targets:
            # A full job clears its new bitmap on success: it then holds the writes made after the point.
            backup = {'job-id': target['job'], 'device': target['node'], 'target': target['target_node'],
                      'sync': self.mode, 'bitmap': self.bitmap, 'bitmap-mode': 'on-success', 'auto-dismiss': False}
            if self.qmp.version_at_least(6, 0):
                backup['x-perf'] = {'max-workers': MAX_WORKERS}
            actions.append({'type': 'blockdev-backup', 'data': backup})
        return actions

    def begin(self):
        """The transaction: every disk's job starts together (the frozen window); one failing cancels all."""
        self.qmp.execute('transaction', {'actions': self.actions(), 'properties': {'completion-mode': 'grouped'}})
        self.jobs_started = True

    def jobs(self):
        ours = set(t['job'] for t in self.targets)
        return dict((j['id'], j) for j in self.qmp.execute('query-jobs') if j.get('id') in ours)

    def wait(self):
        """Wait until every job concluded; returns {job id: job info}.

        Asks every 0.02-0.1 s for the first half second (a 128 MiB copy from cache takes ~60 ms, and a
        longer interval would add up to that much to every point), then through a fresh session every
        0.2-1 s, so a long copy holds neither the socket nor our lock.
        """
        started = time.monotonic()
        state = {'next': started + PROGRESS_EVERY}

        def sample(jobs, now):
            done = sum(j.get('current-progress', 0) for j in jobs.values())
            total = sum(j.get('total-progress', 0) for j in jobs.values())
            self.progress.append({'elapsed_ms': int((now - started) * 1000), 'bytes_done': done, 'bytes_total': total})
            self.log(f'qemu_backup {self.point}: {done} of {total} bytes copied')

        def concluded():
            jobs = self.jobs()
            now = time.monotonic()
            if not jobs:
                raise BackupError(f'the backup jobs of point {self.point} disappeared from query-jobs')
            if all(j.get('status') in ('concluded', 'null') for j in jobs.values()):
                sample(jobs, now)
                return jobs
            if now >= state['next']:
                state['next'] = now + PROGRESS_EVERY
                sample(jobs, now)
            return None

        # Watched through short sessions after the first half second: the copy runs inside QEMU,
        # and the monitor stays free for other clients meanwhile (QMPSession.watch).
        return self.qmp.watch(concluded, Deadline(self.job_timeout), f'backup jobs of point {self.point}',
                              hint='the jobs were cancelled; nothing changed')

    def finish(self):
        """Rename the finished files and describe them for the manifest."""
        files = []
        for target in self.targets:
            final = self.path(target, partial=False)
            os.replace(self.path(target), final)
            self.created.remove(self.path(target))
            files.append({'device': target['device'], 'path': target['name'], 'bytes': os.stat(final).st_size,
                          'sha256': sha256_file(final), 'virtual_size': target['virtual_size']})
        return files

    # -- the whole point ------------------------------------------------------------

    def run(self, start):
        """Create, start (through `start`), wait, finish. Returns (files, start's result)."""
        try:
            self.create_targets()
            if self.mode == 'full':
                self.add_bitmaps()
            started = start(self.begin)
            try:
                jobs = self.wait()
            except QemuTimeoutError:
                self.cancel()
                raise
            dismiss_jobs(self.qmp, jobs)
            failed = [j for j in jobs.values() if j.get('error')]
            if failed:
                raise self.job_failure(failed)
            self.delete_nodes()
            files = self.finish()
        except BaseException:
            self.cleanup()
            raise
        return files, started

    def job_failure(self, failed):
        # With grouped completion, one failing job cancels the others: report the real cause.
        real = [j for j in failed if 'cancel' not in j['error'].lower()] or failed
        job = real[0]
        device = next((t['device'] for t in self.targets if t['job'] == job['id']), '?')
        return JobError(job['id'], 'blockdev-backup', 'disk {0}: {1}; the jobs of every disk were cancelled, no '
                        'bitmap or chain changed'.format(device, job['error']))

    def cancel(self):
        """Cancel our jobs that still run, wait (bounded) until all concluded, dismiss them."""
        ours = set(t['job'] for t in self.targets)
        stop_jobs(self.qmp, lambda job_id: job_id in ours, 'cancelling the backup jobs')

    def delete_nodes(self):
        while self.added:
            self.qmp.execute('blockdev-del', {'node-name': self.added[-1]})
            self.added.pop()

    def abandon(self, files):
        """The point's jobs succeeded but it could not be recorded: remove its files and make sure the
        chain is not continued from a bitmap that no longer covers the unrecorded point."""
        for item in files:
            try:
                os.unlink(os.path.join(self.chain_dir, item['path']))
            except OSError:
                pass
        # A full point's bitmap is new; an incremental job cleared the chain's bitmap: either way it must go.
        remove_bitmaps(self.qmp, dict((t['device'], t['node']) for t in self.targets), self.bitmap)

    def cleanup(self):
        """After any failure: stop our jobs, drop our nodes, files and (full) bitmaps."""
        try:
            if self.jobs_started:
                self.cancel()
            if self.added:
                self.delete_nodes()
            if self.new_bitmaps:
                remove_bitmaps(self.qmp, self.new_bitmaps, self.bitmap)
                self.new_bitmaps = {}
        except QemuVMError as exc:
            self.log(f'qemu_backup {self.point}: cleanup in QEMU failed: {exc}')
        finally:
            for path in self.created:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            self.created = []
