# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Boot a throwaway test VM and run playbooks/demo.yml against it.

Run through ``make demo``, which builds the venv, the test guest and the
collection symlink first.  The VM is always stopped, even when the playbook
fails.  The exit code is the playbook's.
"""

from __future__ import annotations

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

from harness.guest import VM, ensure_guest  # noqa: E402  pylint: disable=wrong-import-position


def find_ansible_playbook() -> str:
    """Prefer the ansible-playbook next to this interpreter (the project venv)."""
    candidate = Path(sys.executable).parent / 'ansible-playbook'
    if candidate.exists():
        return str(candidate)
    found = shutil.which('ansible-playbook')
    if not found:
        raise SystemExit('ansible-playbook not found; run `make venv` first')
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


def main() -> int:
    """Boot the VM, run the playbook, always stop the VM."""
    if not (COLLECTIONS_DIR / 'ansible_collections' / 'qemu' / 'vm').exists():
        raise SystemExit('build/collections is missing; run `make collection` first')

    ensure_guest()
    with tempfile.TemporaryDirectory(prefix='qemu-vm-demo-') as workdir:
        vm = VM(workdir, agent=True, name='qemu-vm-demo')
        try:
            print(f'demo: booting VM in {workdir}', flush=True)
            vm.start(timeout=60)
            print(f'demo: VM is up, QMP {vm.qmp_path}, guest agent {vm.qga_path}', flush=True)
            info = [
                find_ansible_playbook(),
                str(REPO / 'playbooks' / 'demo.yml'),
                '-e', f'qemu_vm_demo_qmp={vm.qmp_path}',
                '-e', f'qemu_vm_demo_qga={vm.qga_path}',
            ]
            # The backup playbook twice: the second run shows retention (keep 1) and a clean preflight.
            backup = [
                find_ansible_playbook(),
                str(REPO / 'playbooks' / 'backup.yml'),
                '-e', 'backup_name=qemu-vm-demo',
                '-e', f'backup_qmp={vm.qmp_path}',
                '-e', f'backup_qga={vm.qga_path}',
                '-e', 'backup_quiesce=required',
                '-e', 'backup_keep=1',
            ]
            result = None
            for label, command in (('info', info), ('backup #1', backup), ('backup #2', backup)):
                if label == 'backup #2':
                    time.sleep(1)  # backup names carry the time to the second
                print('demo: {}: {}'.format(label, ' '.join(command)), flush=True)
                result = subprocess.run(command, cwd=str(REPO), env=playbook_env(), check=False)
                if result.returncode != 0:
                    break
        finally:
            print('demo: stopping VM', flush=True)
            vm.stop()
    print(f'demo: playbook exited with {result.returncode}', flush=True)
    return result.returncode


if __name__ == '__main__':
    sys.exit(main())
