# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The docs site built by `make docs` (build/docs/html) has a page for every plugin and role.

The expected pages come from the repository itself: every public plugin file under plugins/
(modules, connection, inventory, lookup, ...; not module_utils, doc_fragments, or action
plugins, which are documented by their module) and every role with an argument spec.
"""

from __future__ import annotations

import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HTML = os.path.join(REPO, 'build', 'docs', 'html')
NOT_DOCUMENTED = ('module_utils', 'doc_fragments', 'action', 'plugin_utils', '__pycache__')
# Page suffix per plugin directory (antsibull-docs names pages <name>_<type>.html).
PAGE_TYPE = {'modules': 'module'}


def expected_pages():
    pages = {}
    for path in sorted(glob.glob(os.path.join(REPO, 'plugins', '*', '*.py'))):
        kind = os.path.basename(os.path.dirname(path))
        name = os.path.basename(path)[:-3]
        if kind in NOT_DOCUMENTED or name.startswith('_'):
            continue
        plugin_type = PAGE_TYPE.get(kind, kind)
        pages[f'{name}_{plugin_type}.html'] = f'qemu.vm.{name} {plugin_type}'
    for spec in sorted(glob.glob(os.path.join(REPO, 'roles', '*', 'meta', 'argument_specs.yml'))):
        role = spec.split(os.sep)[-3]
        pages[f'{role}_role.html'] = f'qemu.vm.{role} role'
    return pages


PAGES = expected_pages()


def read(name):
    with open(os.path.join(HTML, name), encoding='utf-8') as handle:
        return handle.read()


def test_the_repository_has_modules_and_a_role():
    assert any(page.endswith('_module.html') for page in PAGES)
    assert any(page.endswith('_role.html') for page in PAGES)


@pytest.mark.parametrize('page', sorted(PAGES))
def test_every_plugin_and_role_has_its_page(page):
    assert os.path.isfile(os.path.join(HTML, page)), f'no {page} in {HTML} (run make docs)'
    text = read(page)
    title = re.search(r'<title>(.*?)</title>', text, re.S).group(1)
    assert PAGES[page] in title, title


@pytest.mark.parametrize('page', sorted(PAGES))
def test_the_index_links_every_page(page):
    assert f'href="{page}"' in read('index.html')


def test_module_pages_show_parameters_examples_and_return_values():
    for page in (p for p in PAGES if p.endswith('_module.html')):
        text = read(page)
        for section in ('Parameters', 'Examples'):
            assert section in text, (page, section)
        assert 'Return Values' in text or 'Returned Facts' in text, page
