# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# This plugin_utils is PRIVATE to the qemu.vm collection: it can change at any time.
"""A self-contained Python program that runs a function of this collection on another host.

The hypervisor needs Python 3 and nothing of ours: the program carries the source of the function's
module and of every module of the collection it imports (found by reading their imports), serves them
from memory through an import hook, calls the function with JSON arguments and exits with its result.
So the relay and the scan run there the very code that runs here (the per-socket lock above all).

The program is compressed into one command-line argument of `python3 -c`, so stdin stays free for
the relay's byte stream. Only the standard library may be needed there: a module of ours that imports
something else must guard that import (as _transport/sockets.py does for qemu.qmp).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import shlex
import zlib

PREFIX = 'ansible_collections.qemu.vm.'
#: The collection's root directory (plugins/ is in it).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
#: Run by `python3 -c`: the program is argv[1], compressed and base64-encoded.
BOOT = 'import base64,sys,zlib;exec(zlib.decompress(base64.b64decode(sys.argv[1])))'

_LOADER = '''
import importlib, importlib.abc, importlib.util, json, sys
_SOURCES = json.loads(%(sources)r)


class _Bundled(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name in _SOURCES:
            return importlib.util.spec_from_loader(name, self, is_package=False)
        if any(other.startswith(name + '.') for other in _SOURCES):
            return importlib.util.spec_from_loader(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = _SOURCES.get(module.__name__)
        if source is not None:
            exec(compile(source, '<qemu.vm %%s>' %% module.__name__, 'exec'), module.__dict__)


sys.meta_path.insert(0, _Bundled())
sys.exit(getattr(importlib.import_module(%(entry)r), %(function)r)(**json.loads(%(arguments)r)))
'''


def _path_of(module):
    return os.path.join(ROOT, *module[len(PREFIX):].split('.')) + '.py'


def _imported(source):
    """The collection's modules that `source` imports."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(PREFIX))
    return found


def sources(entry):
    """{module: source} of `entry` and every module of the collection it imports, transitively."""
    todo = [entry]
    found = {}
    while todo:
        module = todo.pop()
        if module in found:
            continue
        with open(_path_of(module), encoding='utf-8') as handle:
            found[module] = handle.read()
        todo.extend(_imported(found[module]) - set(found))
    return found


def program(entry, function, arguments):
    """The Python program that calls entry.function(**arguments) and exits with its return value."""
    return _LOADER % {'sources': json.dumps(sources(entry)), 'entry': entry, 'function': function,
                      'arguments': json.dumps(arguments)}


def remote_command(entry, function, arguments, python='python3'):
    """The shell command line that runs the program on the other host."""
    packed = base64.b64encode(zlib.compress(program(entry, function, arguments).encode('utf-8'), 9)).decode('ascii')
    return ' '.join([shlex.quote(python), '-c', shlex.quote(BOOT), packed])
