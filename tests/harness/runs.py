# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module run started in the background and killed (SIGKILL) at a moment the test chooses,
to see what the next run does with what a killed run left behind; and `wait_for`, the tests'
bounded wait for a condition."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import time

from harness.ansible import ad_hoc_command, ansible_env


def wait_for(condition, what, timeout=60, interval=0.02):
    """condition()'s first truthy value; fails the test naming `what` when none comes within `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f'{what}: not within {timeout} s'
        time.sleep(interval)


def start_module(module, args):
    """An ad-hoc run of `module`, in a session of its own; returns the Popen (with `.module`)."""
    proc = subprocess.Popen(ad_hoc_command(module, args), env=ansible_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    proc.module = module
    return proc


def _parent(pid):
    with open(f'/proc/{pid}/stat') as handle:
        return int(handle.read().rsplit(')', 1)[1].split()[1])


def module_pids(proc):
    """Pids of the module processes the run started (Ansible starts them in a session of their
    own, so the process group does not reach them; other runs are not ours)."""
    marker = f'AnsiballZ_{proc.module}'.encode()
    pids = []
    for cmdline in glob.glob('/proc/[0-9]*/cmdline'):
        pid = int(cmdline.split('/')[2])
        try:
            with open(cmdline, 'rb') as handle:
                if marker not in handle.read():
                    continue
            parent = pid
            while parent > 1 and parent != proc.pid:
                parent = _parent(parent)
        except (OSError, ValueError, IndexError):
            continue
        if parent == proc.pid:
            pids.append(pid)
    return pids


def kill_when(proc, condition, timeout=120):
    """SIGKILL the run and its module process once condition() holds."""
    deadline = time.monotonic() + timeout
    try:
        while not condition():
            assert proc.poll() is None, 'the run ended before the condition held:\n' + proc.stdout.read().decode()
            assert time.monotonic() < deadline, f'condition not seen within {timeout} s'
            time.sleep(0.02)
    finally:
        for pid in module_pids(proc):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
