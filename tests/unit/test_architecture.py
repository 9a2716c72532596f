# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The layer rules, size limits, module shape and test layout of DEVELOPERS.md, read from the code
itself (ast of every import, module and unit test file).

A new package under plugins/module_utils/ or plugins/plugin_utils/ must be given its place in LAYERS
below (and a line in DEVELOPERS.md's map) before this test passes: that is the point.
"""

from __future__ import annotations

import ast
import pathlib
import re

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


# -- one module shape (DEVELOPERS.md, "Ansible adapters") --------------------------------------

MODULES = list(_python_files('modules'))
PHASES = ('parse', 'ask', 'decide', 'act', 'report')
_PHASE_WORD = '|'.join(PHASES)
#: '# ask', '# decide, again under the lock', '# ask, decide and act: ...' mark phases.
_PHASE_MARK = re.compile(rf'#\s*((?:{_PHASE_WORD})(?:(?:,\s*|\s+and\s+)(?:{_PHASE_WORD}))*)\b')
#: Modules that change nothing: no decide or act phase to mark.
READ_ONLY = {'qemu_backup_info', 'qemu_guest_agent_wait', 'qemu_guest_facts', 'qemu_snapshot_info', 'qemu_vm_info'}
#: AnsibleModule's keyword arguments that are module-level constants, never literals in main().
SPEC_KWARGS = {'argument_spec', 'mutually_exclusive', 'required_if', 'required_one_of', 'required_together',
               'required_by'}


def _tree(path):
    return ast.parse(path.read_text(encoding='utf-8'))


def _function(tree, name):
    return next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name), None)


@pytest.mark.parametrize('path', MODULES, ids=lambda p: p.name)
def test_module_defines_its_argument_spec_at_module_level(path):
    specs = [node.value for node in _tree(path).body if isinstance(node, ast.Assign)
             and any(getattr(target, 'id', '') == 'ARGUMENT_SPEC' for target in node.targets)]
    assert len(specs) == 1, 'one module-level ARGUMENT_SPEC'
    spec = specs[0]
    assert isinstance(spec, ast.Dict) or (isinstance(spec, ast.Call) and getattr(spec.func, 'id', '') == 'dict')


@pytest.mark.parametrize('path', MODULES, ids=lambda p: p.name)
def test_module_builds_from_constants_and_runs_through_the_adapter(path):
    main = _function(_tree(path), 'main')
    calls = {getattr(node.func, 'id', ''): node for node in ast.walk(main) if isinstance(node, ast.Call)}
    build = calls.get('build_module')
    assert build is not None and 'run_module' in calls, 'main() builds the module and hands run to run_module'
    spec = build.args[0] if build.args else next((k.value for k in build.keywords if k.arg == 'argument_spec'), None)
    assert getattr(spec, 'id', None) == 'ARGUMENT_SPEC'
    literal = [k.arg for k in build.keywords if k.arg in SPEC_KWARGS and not isinstance(k.value, ast.Name)]
    assert not literal, f'{literal}: make them module-level constants beside ARGUMENT_SPEC'


@pytest.mark.parametrize('path', MODULES, ids=lambda p: p.name)
def test_module_fails_only_through_the_adapter(path):
    """ParameterError is the one validation path: no fail_json, no ValueError collected into a message."""
    tree = _tree(path)
    fails = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == 'fail_json']
    assert not fails, f'lines {fails}: raise ParameterError (or another QemuVMError); run_module fails the task'
    caught = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.ExceptHandler)
              and 'ValueError' in {getattr(n, 'id', '') for n in ast.walk(node.type or ast.Pass())}]
    assert not caught, f'lines {caught}: checks raise ParameterError; nothing collects ValueError'


@pytest.mark.parametrize('path', MODULES, ids=lambda p: p.name)
def test_module_parses_a_request_then_marks_its_phases(path):
    tree = _tree(path)
    run = _function(tree, 'run')
    assert run is not None, 'run(module), handed to run_module'
    parsed = [n for n in ast.walk(run) if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'parse_request']
    assert parsed, 'run() starts from parse_request(module.params)'
    source = path.read_text(encoding='utf-8').splitlines()[run.lineno - 1:run.end_lineno]
    marks = []
    for line in source:
        found = _PHASE_MARK.match(line.strip())
        if found:
            marks += re.split(r',\s*|\s+and\s+', found.group(1))
    order = [PHASES.index(mark) for mark in marks]
    assert order == sorted(set(order)), f'phase comments {marks} out of order (or repeated): {PHASES}'
    wanted = {'parse', 'ask', 'report'} | (set() if path.stem in READ_ONLY else {'decide', 'act'})
    assert wanted <= set(marks), f'mark {sorted(wanted - set(marks))} in run() with a "# <phase>" comment'


def _returned_displays(function):
    """Lines where `function` returns a dict display or dict(...) call."""
    return [node.lineno for node in ast.walk(function) if isinstance(node, ast.Return) and (
        isinstance(node.value, ast.Dict)
        or (isinstance(node.value, ast.Call) and getattr(node.value.func, 'id', '') == 'dict'))]


@pytest.mark.parametrize('path', MODULES + UTIL_FILES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_requests_and_plans_are_typed(path):
    """parse_request and decide return a NamedTuple or small class, read as attributes, not dicts."""
    tree = _tree(path)
    wrong = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in ('parse_request', 'decide'):
            wrong += [f'line {line}: {node.name} returns a dict' for line in _returned_displays(node)]
        if isinstance(node, ast.Subscript) and getattr(node.value, 'id', '') in ('request', 'plan') \
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            wrong.append(f'line {node.lineno}: {node.value.id}[{node.slice.value!r}]')
    assert not wrong, '\n'.join(wrong)


# -- tests mirror the code ---------------------------------------------------------------------

UNIT = ROOT / 'tests' / 'unit' / 'plugins'
MIRRORED_TESTS = sorted(path for kind in ('module_utils', 'plugin_utils') for path in (UNIT / kind).rglob('test_*.py'))


@pytest.mark.parametrize('path', MIRRORED_TESTS, ids=lambda p: str(p.relative_to(UNIT)))
def test_unit_tests_mirror_the_code(path):
    """tests/unit/plugins/<kind>/<package>/test_<file>.py tests plugins/<kind>/<package>/<file>.py
    (a top-level file: <kind>/test_errors.py tests <kind>/_errors.py), and imports it."""
    rel = path.relative_to(UNIT)
    name = path.stem[len('test_'):]
    if len(rel.parts) == 2:
        source, dotted = PLUGINS / rel.parts[0] / f'_{name}.py', f'{rel.parts[0]}._{name}'
    else:
        source = PLUGINS.joinpath(*rel.parts[:-1]) / f'{name}.py'
        dotted = '.'.join(rel.parts[:-1] + (name,))
    assert source.is_file(), f'{rel} names no source file ({source.relative_to(ROOT)}): split or rename it'
    package, _dot, leaf = dotted.rpartition('.')
    imported = any(module == PREFIX + dotted or (module == PREFIX + package and leaf in names)
                   for module, names, _line in _imports(path))
    assert imported, f'{rel} does not import {dotted}, the file it is named for'
