# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run `ansible-test sanity` for one ansible-core version, on every target Python we claim.

Run with the interpreter of the ansible-core venv to test (`make sanity CORE=2.17`), from the
root of the sanity copy (build/sanity-<core>/ansible_collections/qemu/vm):

    <venv>/bin/python <this file> [extra ansible-test arguments]

1. The target Pythons are those we claim for module code (3.8 and later) that this
   ansible-test supports (2.17: 3.8-3.12; 2.18 and 2.19: 3.8-3.13).  Each must exist, on PATH
   as pythonX.Y or under $PYENV_ROOT/versions (the machine image's pyenv interpreters):
   a missing one is an error, never a skip.
2. ansible-test bootstraps pip in each per-test venv with a get-pip script it downloads from a
   host we cannot reach; it first looks for ~/.ansible/test/cache/get_pip_<pip version>.py.
   The pip version depends on the ansible-test version (and may on the Python version), so
   our offline stand-in is installed under every name this ansible-test will ask for.
3. ansible-test runs with the venv's Python 3.11 as controller and every target Python passed
   explicitly (`--target-python X.Y@path`), so compile and import run on each of them and the
   other sanity tests run once, on the controller.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import types

CLAIMED_MIN = (3, 8)  # module code must run on target Python 3.8+ (README, DEVELOPERS.md)
HERE = os.path.dirname(os.path.abspath(__file__))
GET_PIP = os.path.join(os.path.dirname(HERE), 'sanity-bootstrap', 'get_pip.py')
CACHE = os.path.expanduser('~/.ansible/test/cache')
LINKS = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'build', 'target-pythons')


def target_versions():
    """The Python versions to run compile/import on: claimed and supported by this ansible-test."""
    from ansible_test._util.target.common import constants

    supported = constants.REMOTE_ONLY_PYTHON_VERSIONS + constants.CONTROLLER_PYTHON_VERSIONS
    return [v for v in supported if tuple(int(p) for p in v.split('.')) >= CLAIMED_MIN]


def find_interpreter(version):
    """The newest $PYENV_ROOT/versions/X.Y.*, else pythonX.Y on PATH (not a pyenv shim); or None."""
    root = os.environ.get('PYENV_ROOT') or os.path.expanduser('~/.pyenv')
    candidates = glob.glob(os.path.join(root, 'versions', version + '.*', 'bin', 'python' + version))
    candidates = [c for c in candidates if c.rsplit('/', 3)[-3].replace('.', '').isdigit()]
    if candidates:
        return max(candidates, key=lambda c: [int(p) for p in c.rsplit('/', 3)[-3].split('.')])
    # pyenv's shims answer on PATH but fail unless that version is selected: skip them.
    path = os.pathsep.join(d for d in os.environ.get('PATH', '').split(os.pathsep)
                           if os.path.basename(d) != 'shims')
    return shutil.which('python' + version, path=path)


def install_get_pip(versions):
    """Put the offline get-pip stand-in where ansible-test looks, for every pip version it wants."""
    from ansible_test._internal.python_requirements import get_venv_packages

    os.makedirs(CACHE, exist_ok=True)
    names = set()
    for version in versions:
        pip_version = get_venv_packages(types.SimpleNamespace(version=version))['pip']
        names.add('get_pip_{}.py'.format(pip_version.replace('.', '_')))
    for name in sorted(names):
        shutil.copyfile(GET_PIP, os.path.join(CACHE, name))
    return sorted(names)


def main():
    import ansible

    controller = '{}.{}'.format(*sys.version_info[:2])
    versions = target_versions()
    interpreters = {v: find_interpreter(v) for v in versions}
    missing = [v for v, path in interpreters.items() if not path]
    if missing:
        sys.exit('sanity: no interpreter for target Python {} (looked on PATH and under $PYENV_ROOT/versions)'.format(', '.join(missing)))
    names = install_get_pip(versions + [controller])
    print(f"sanity: ansible-core {ansible.__version__}, controller Python {controller}, "
          f"target Pythons {' '.join(versions)}; pip bootstrap {' '.join(names)}", flush=True)

    # ansible-test also looks interpreters up on PATH by name (the import test's venv check), where
    # pyenv's shims would answer and fail: put links to the real ones first on PATH.
    os.makedirs(LINKS, exist_ok=True)
    for version, path in interpreters.items():
        link = os.path.join(LINKS, 'python' + version)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(path, link)
    os.environ['PATH'] = LINKS + os.pathsep + os.environ.get('PATH', '')

    argv = [os.path.join(os.path.dirname(sys.executable), 'ansible-test'), 'sanity', '--color', 'no',
            '--controller', 'origin:python=' + controller]
    for version in versions:
        argv += ['--target-python', f'{version}@{interpreters[version]}']
    argv += sys.argv[1:]
    os.execv(argv[0], argv)


if __name__ == '__main__':
    main()
