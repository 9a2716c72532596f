# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start a throwaway test VM with qemu.vm.qemu_vm and run playbooks/demo.yml against it.

Run through ``make demo``, which builds the venv, the test guest and the
collection symlink first.  The VM (the tiny test guest, booted from an overlay
of its base image) is started by the module as a user would, and always removed
again with ``state: absent``, even when a playbook fails.  The exit code is the
first failing step's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS_DIR = REPO / 'build' / 'collections'

sys.path.insert(0, str(REPO / 'tests'))

from harness.guest import ensure_guest  # noqa: E402  pylint: disable=wrong-import-position


def find_ansible_playbook(program='ansible-playbook') -> str:
    """Prefer the program next to this interpreter (the project venv)."""
    candidate = Path(sys.executable).parent / program
    if candidate.exists():
        return str(candidate)
    found = shutil.which(program)
    if not found:
        raise SystemExit(f'{program} not found; run `make venv` first')
    return found


def playbook_env() -> dict[str, str]:
    """Environment that resolves qemu.vm from build/collections."""
    env = dict(os.environ)
    env['ANSIBLE_COLLECTIONS_PATH'] = str(COLLECTIONS_DIR)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(COLLECTIONS_DIR), env.get('PYTHONPATH')]))
    # The demo runs against the implicit localhost; no inventory is needed.
    env.setdefault('ANSIBLE_LOCALHOST_WARNING', 'False')
    env.setdefault('ANSIBLE_INVENTORY_UNPARSED_WARNING', 'False')
    return env


def qemu_vm(args: dict) -> int:
    """`ansible localhost -m qemu.vm.qemu_vm -a <args>` (the implicit localhost runs the venv's Python)."""
    command = [find_ansible_playbook('ansible'), 'localhost', '-m', 'qemu.vm.qemu_vm', '-a', json.dumps(args)]
    print(f'demo: qemu_vm state={args.get("state", "running")}: ansible localhost -m qemu.vm.qemu_vm -a ...', flush=True)
    return subprocess.run(command, cwd=str(REPO), env=playbook_env(), check=False).returncode


def main() -> int:
    """Start the VM, run the playbooks, always remove the VM."""
    if not (COLLECTIONS_DIR / 'ansible_collections' / 'qemu' / 'vm').exists():
        raise SystemExit('build/collections is missing; run `make collection` first')

    images = ensure_guest()
    with tempfile.TemporaryDirectory(prefix='qemu-vm-demo-') as workdir:
        run_dir = os.path.join(workdir, 'run')
        vm = {
            'name': 'qemu-vm-demo', 'run_dir': run_dir, 'memory': '256M',
            # TCG: nested KVM on CI machines does not boot guests; on a real host accel: auto picks KVM.
            'accel': 'tcg',
            'kernel': images.kernel, 'initrd': images.initrd, 'append': 'console=ttyS0 panic=-1 qemu_vm.acpid=1',
            'disks': [{'path': os.path.join(workdir, 'disk0.qcow2'), 'backing': images.data_disk}],
            'wait': 'agent', 'wait_timeout': 120,
        }
        qmp, qga = os.path.join(run_dir, 'qmp.sock'), os.path.join(run_dir, 'qga.sock')
        returncode = 1
        try:
            print(f'demo: starting VM in {run_dir}', flush=True)
            returncode = qemu_vm(vm)
            if returncode == 0:
                print(f'demo: VM is up, QMP {qmp}, guest agent {qga}', flush=True)
                returncode = run_playbooks(qmp, qga)
        finally:
            print('demo: removing VM', flush=True)
            removed = qemu_vm(dict(vm, state='absent', remove_disks=True, stop_timeout=30))
            returncode = returncode or removed
    print(f'demo: exited with {returncode}', flush=True)
    return returncode


def run_playbooks(qmp: str, qga: str) -> int:
    info = [find_ansible_playbook(), str(REPO / 'playbooks' / 'demo.yml'),
            '-e', f'qemu_vm_demo_qmp={qmp}', '-e', f'qemu_vm_demo_qga={qga}']
    # The backup playbook twice: the second run shows retention (keep 1) and a clean preflight.
    backup = [find_ansible_playbook(), str(REPO / 'playbooks' / 'backup.yml'), '-e', 'backup_name=qemu-vm-demo',
              '-e', f'backup_qmp={qmp}', '-e', f'backup_qga={qga}', '-e', 'backup_quiesce=required', '-e', 'backup_keep=1']
    for label, command in (('info', info), ('backup #1', backup), ('backup #2', backup)):
        if label == 'backup #2':
            time.sleep(1)  # backup names carry the time to the second
        print('demo: {}: {}'.format(label, ' '.join(command)), flush=True)
        result = subprocess.run(command, cwd=str(REPO), env=playbook_env(), check=False)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == '__main__':
    sys.exit(main())
