# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The layer rules and size limits of DEVELOPERS.md, read from the code itself (ast of every import).

A new package under plugins/module_utils/ or plugins/plugin_utils/ must be given its place in LAYERS
below (and a line in DEVELOPERS.md's map) before this test passes: that is the point.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLUGINS = ROOT / 'plugins'
PREFIX = 'ansible_collections.qemu.vm.plugins.'

# What each part of plugins/ may import from the collection. Keys and values are
# '<dir>/<package or top-level file>' (module_utils/_transport, module_utils/_errors, ...).
FOUNDATION = {'module_utils/_errors', 'module_utils/_util'}
TRANSPORT = FOUNDATION | {'module_utils/_transport'}
QEMU = TRANSPORT | {'module_utils/_qemu'}
GUEST = TRANSPORT | {'module_utils/_guest'}
LAYERS = {
    'module_utils/_errors': set(),
    'module_utils/_util': {'module_utils/_errors'},
    'module_utils/_transport': FOUNDATION,
    'module_utils/_qemu': TRANSPORT,
    'module_utils/_guest': TRANSPORT,
    'module_utils/_guest_file': GUEST,
    'module_utils/_guest_admin': GUEST | {'module_utils/_guest_file'},
    'module_utils/_snapshot': QEMU,
    'module_utils/_backup': QEMU,
    'module_utils/_dbus_vmstate': TRANSPORT,
    'module_utils/_vm': QEMU | {'module_utils/_guest'},
    # The agent session they open is _guest.session's: it thaws first a freeze an interrupted run left.
    'module_utils/_common': GUEST,
    'plugin_utils/_inventory': GUEST | {'plugin_utils/_remote'},
    # Reaching hypervisors over SSH: the relay it ships there takes the lock and reads the freeze marker.
    'plugin_utils/_remote': GUEST,
    # The plugins' adapter maps the errors of what the qga connection uses.
    'plugin_utils/_errors': GUEST | {'module_utils/_guest_file'},
}
# Only these may import Ansible itself (anything under the top-level `ansible` package).
ANSIBLE_ADAPTERS = {'module_utils/_common', 'plugin_utils/_errors'}
PLUGIN_DIRS = ('modules', 'action', 'connection', 'inventory', 'doc_fragments')

MODULE_LOGIC_LIMIT = 150
FILE_LINE_LIMIT = 450


def _python_files(*dirs):
    for name in dirs:
        yield from sorted((PLUGINS / name).rglob('*.py'))


def _part(path):
    """'module_utils/_backup' for plugins/module_utils/_backup/chain.py; 'modules' for a module."""
    rel = path.relative_to(PLUGINS).parts
    if rel[0] not in ('module_utils', 'plugin_utils'):
        return rel[0]
    return f'{rel[0]}/{rel[1][:-3] if rel[1].endswith(".py") else rel[1]}'


def _imports(path):
    """(imported module, imported names, line) for every import of the file."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module, [alias.name for alias in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno


def _target(module, names):
    """The part of plugins/ an import reaches, and the dotted path of what it names."""
    rest = module[len(PREFIX):].split('.')
    if len(rest) == 1:  # from ...plugins.module_utils import _errors
        rest.append(names[0])
    part = rest[0] if rest[0] not in ('module_utils', 'plugin_utils') else f'{rest[0]}/{rest[1]}'
    return part, rest


UTIL_FILES = list(_python_files('module_utils', 'plugin_utils'))


def test_every_package_has_a_layer():
    parts = {_part(path) for path in UTIL_FILES}
    assert parts - set(LAYERS) == set(), 'give each new package its place in LAYERS and DEVELOPERS.md'


@pytest.mark.parametrize('path', UTIL_FILES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_imports_follow_the_layers(path):
    me = _part(path)
    wrong = []
    for module, names, line in _imports(path):
        if module == 'ansible' or module.startswith('ansible.'):
            if me not in ANSIBLE_ADAPTERS:
                wrong.append(f'line {line}: {module} (only {sorted(ANSIBLE_ADAPTERS)} import Ansible)')
            continue
        if not module.startswith(PREFIX):
            continue
        part, rest = _target(module, names)
        if part != me and part not in LAYERS.get(me, set()):
            wrong.append(f'line {line}: {module} ({me} may import {sorted(LAYERS.get(me, ()))})')
        private = [name for name in names if name.startswith('_') and len(rest) > 2]
        if part != me and private:
            wrong.append(f'line {line}: private {private} of {module}')
    assert not wrong, f'{path.relative_to(ROOT)}:\n' + '\n'.join(wrong)


@pytest.mark.parametrize('path', list(_python_files(*PLUGIN_DIRS)), ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugins_reach_no_private_names_of_packages(path):
    wrong = []
    for module, names, line in _imports(path):
        if module.startswith(PREFIX):
            part, rest = _target(module, names)
            private = [name for name in names if name.startswith('_') and len(rest) > 2]
            if private and part.startswith(('module_utils/', 'plugin_utils/')):
                wrong.append(f'line {line}: private {private} of {module}')
        if path.parent.name in ('modules', 'doc_fragments') and module.startswith('ansible_collections.') \
                and '.plugin_utils.' in module:
            wrong.append(f'line {line}: {module} (plugin_utils is controller-only)')
    assert not wrong, f'{path.relative_to(ROOT)}:\n' + '\n'.join(wrong)


def _module_logic_lines(path):
    """Lines after the RETURN block that are neither blank nor comments (shape.py's measure)."""
    text = path.read_text(encoding='utf-8')
    start = 0
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == 'RETURN' for t in node.targets):
            start = node.end_lineno
    return sum(1 for line in text.splitlines()[start:] if line.strip() and not line.strip().startswith('#'))


@pytest.mark.parametrize('path', list(_python_files('modules')), ids=lambda p: p.name)
def test_module_logic_is_small(path):
    assert _module_logic_lines(path) <= MODULE_LOGIC_LIMIT


@pytest.mark.parametrize('path', UTIL_FILES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_shared_files_are_small(path):
    assert len(path.read_text(encoding='utf-8').splitlines()) <= FILE_LINE_LIMIT
