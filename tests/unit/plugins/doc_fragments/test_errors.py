# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The documented error_type values cannot rot: every QemuVMError a module can raise is in the
qemu.vm._errors fragment with the fields its details() names, and every module uses the fragment."""

from __future__ import annotations

import ast
import glob
import importlib
import inspect
import os
import re
import textwrap

import pytest
import yaml

from harness.ansible import REPO

from ansible_collections.qemu.vm.plugins.doc_fragments._errors import ModuleDocFragment
from ansible_collections.qemu.vm.plugins.module_utils import _common
from ansible_collections.qemu.vm.plugins.module_utils._errors import QemuVMError
from ansible_collections.qemu.vm.plugins.module_utils._qemu.errors import ImageInUseError

PLUGINS = os.path.join(REPO, 'plugins')
#: "V(A), V(B): what they mean. Details: C(x), C(y)." -- the shape of one note of the fragment.
_NAMES = re.compile(r'^((?:V\(\w+\)(?:, )?)+): ')


def _import_every_plugin_util():
    for path in sorted(glob.glob(os.path.join(PLUGINS, '*_utils', '**', '*.py'), recursive=True)):
        relative = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
        if relative.endswith('.__init__'):
            relative = relative[:-len('.__init__')]
        importlib.import_module('ansible_collections.qemu.vm.' + relative)


def _family():
    _import_every_plugin_util()
    found, todo = {}, [QemuVMError]
    while todo:
        cls = todo.pop()
        assert found.setdefault(cls.__name__, cls) is cls, f'two error classes named {cls.__name__}'
        todo.extend(cls.__subclasses__())
    return found


FAMILY = _family()


def _constructed_in_plugins():
    """Names of family classes the plugins instantiate (any call of the class, raised or returned)."""
    built = set()
    for path in glob.glob(os.path.join(PLUGINS, '**', '*.py'), recursive=True):
        with open(path, encoding='utf-8') as handle:
            tree = ast.parse(handle.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, 'attr', None)
                if name in FAMILY:
                    built.add(name)
    return built


def _documented():
    """{error_type: set of detail fields} from the fragment's notes."""
    notes = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['notes']
    documented = {}
    for note in notes:
        match = _NAMES.match(note)
        if not match:
            continue
        fields = set(re.findall(r'C\((\w+)\)', note.partition('Details:')[2]))
        assert fields or 'No detail fields.' in note, f'say the detail fields, or that there are none: {note}'
        for name in re.findall(r'V\((\w+)\)', match.group(1)):
            assert name not in documented, f'{name} is documented twice'
            documented[name] = fields
    return documented


DOCUMENTED = _documented()


def _detail_keys(cls):
    """The literal keys details() of `cls` puts in the result, following super().details()."""
    mro = [c for c in cls.__mro__ if issubclass(c, QemuVMError)]
    owner = next(c for c in mro if 'details' in vars(c))
    tree = ast.parse(textwrap.dedent(inspect.getsource(owner.details)))
    keys, calls_super = set(), False
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys.update(k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) and isinstance(node.slice, ast.Constant):
            keys.add(node.slice.value)
        elif isinstance(node, ast.Call):
            keys.update(k.arg for k in node.keywords if k.arg and getattr(node.func, 'attr', '') == 'update')
            if isinstance(node.func, ast.Attribute) and node.func.attr == 'details' and \
                    isinstance(node.func.value, ast.Call) and getattr(node.func.value.func, 'id', '') == 'super':
                calls_super = True
    if calls_super:
        keys |= _detail_keys(mro[mro.index(owner) + 1])
    return keys


def test_the_family_is_found():
    # The scan must see the package errors too, or the checks below prove nothing.
    assert {'QemuVMError', 'ParameterError', 'ImageInUseError', 'GuestFileError', 'DBusVMStateError',
            'BackupCorruptError', 'ExecTimeoutError'} <= set(FAMILY)
    assert {'ParameterError', 'VMStateError', 'ImageInUseError'} <= _constructed_in_plugins()


def test_every_error_a_module_can_raise_is_documented():
    missing = sorted(_constructed_in_plugins() - set(DOCUMENTED))
    assert not missing, f'add these error_type values to plugins/doc_fragments/_errors.py: {missing}'


def test_the_fragment_names_only_real_errors():
    stale = sorted(set(DOCUMENTED) - set(FAMILY))
    assert not stale, f'no such QemuVMError class any more: {stale}'


@pytest.mark.parametrize('name', sorted(DOCUMENTED))
def test_the_detail_fields_are_documented(name):
    undocumented = sorted(_detail_keys(FAMILY[name]) - DOCUMENTED[name])
    assert not undocumented, f'{name} puts {undocumented} in the result: document them in its note'


def test_error_type_is_the_class_name_and_details_come_with_it():
    class Failed(Exception):
        pass

    class Module:
        params = {}

        def fail_json(self, **kwargs):
            raise Failed(kwargs)

    def run(_module):
        raise ImageInUseError('/images/a.qcow2', 'lock')

    with pytest.raises(Failed) as caught:
        _common.run_module(Module(), run)
    result = caught.value.args[0]
    assert result['error_type'] == 'ImageInUseError' and result['image'] == '/images/a.qcow2'
    assert result['msg'].startswith('image /images/a.qcow2 is in use')
    assert set(result) == {'msg', 'error_type'} | DOCUMENTED['ImageInUseError']


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(PLUGINS, 'modules', '*.py'))), ids=os.path.basename)
def test_every_module_uses_the_fragment(path):
    with open(path, encoding='utf-8') as handle:
        tree = ast.parse(handle.read(), path)
    documentation = next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                         and getattr(node.targets[0], 'id', '') == 'DOCUMENTATION')
    assert 'qemu.vm._errors' in yaml.safe_load(documentation)['extends_documentation_fragment']
