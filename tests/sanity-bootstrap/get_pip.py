# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline stand-in for the get-pip.py script that ansible-test downloads.

ansible-test creates an empty virtual environment for each sanity test and
bootstraps pip into it by running a get-pip script that it fetches from a
host this machine cannot reach.  ``make sanity`` copies this file to the
cache path ansible-test looks at first (``~/.ansible/test/cache/get_pip_<ver>.py``)
so the download never happens.

ansible-test runs it as ``get_pip.py [pip options] pip==X.Y [--no-setuptools]
[--no-wheel]``.  This script:

1. installs the pip wheel bundled with the running Python (``ensurepip``),
2. restores ``os.environ`` (ensurepip drops every ``PIP_*`` variable and
   points ``PIP_CONFIG_FILE`` at /dev/null, which would lose the machine's
   pip configuration such as its certificate bundle and index settings),
3. runs ``pip install <the remaining arguments>`` in this process, so the
   exact pip version ansible-test asked for is installed from the package
   index.
"""

from __future__ import annotations

import ensurepip
import importlib
import os
import runpy
import subprocess
import sys

# get-pip.py options that plain ``pip install`` does not understand.
GET_PIP_ONLY_OPTIONS = ('--no-setuptools', '--no-wheel')


def main() -> None:
    """Bootstrap pip, then install what ansible-test asked for."""
    args = sys.argv[1:]
    pip_args = [arg for arg in args if arg not in GET_PIP_ONLY_OPTIONS]

    saved_environ = dict(os.environ)
    try:
        ensurepip.bootstrap()
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)

    # ensurepip of Python < 3.12 also installs setuptools; honour --no-setuptools.
    if '--no-setuptools' in args:
        subprocess.run(
            [sys.executable, '-m', 'pip', 'uninstall', '--yes', '--quiet', 'setuptools'],
            check=False,
        )

    importlib.invalidate_caches()
    sys.argv = [sys.argv[0], 'install'] + pip_args
    runpy.run_module('pip', run_name='__main__', alter_sys=True)


if __name__ == '__main__':
    main()
