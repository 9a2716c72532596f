# -*- coding: utf-8 -*-
# Copyright (c) qemu.vm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The docs site built by `make docs` has no broken internal link, and every guide is on it.

Every `href` and `src` of every HTML page that stays on the site (no scheme, not `mailto:`) must
name a file of the site, and its `#anchor`, when it has one, an `id` in that file. Links to other
sites are not followed (the build is offline).
"""

from __future__ import annotations

import functools
import glob
import os
import posixpath
import re
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HTML = os.path.join(REPO, 'build', 'docs', 'html')


class Page(HTMLParser):
    """The links and the ids of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links = []
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get('id'):
            self.ids.add(attrs['id'])
        if tag == 'a' and attrs.get('name'):
            self.ids.add(attrs['name'])
        for name in ('href', 'src'):
            if attrs.get(name):
                self.links.append(attrs[name])


@functools.lru_cache(maxsize=None)
def parse(path):
    page = Page()
    with open(path, encoding='utf-8') as handle:
        page.feed(handle.read())
    return page


def pages():
    found = sorted(os.path.relpath(p, HTML) for p in glob.glob(os.path.join(HTML, '**', '*.html'), recursive=True))
    assert found, f'no HTML pages in {HTML} (run make docs)'
    return found


def internal_links(page_name, page):
    """(link, target file relative to the site, anchor or None) of every link that stays on the site."""
    for link in page.links:
        parts = urlsplit(link)
        if parts.scheme or parts.netloc or link.startswith(('mailto:', 'javascript:', 'data:')):
            continue
        target = page_name if not parts.path else posixpath.normpath(
            posixpath.join(posixpath.dirname(page_name), unquote(parts.path)))
        yield link, target, unquote(parts.fragment) or None


@pytest.mark.parametrize('page_name', pages())
def test_every_internal_link_resolves(page_name):
    page = parse(os.path.join(HTML, page_name))
    broken = []
    for link, target, anchor in internal_links(page_name, page):
        path = os.path.join(HTML, target)
        if target.startswith('..') or not os.path.exists(path):
            broken.append(f'{link} (no file {target})')
        elif anchor and target.endswith('.html') and anchor not in parse(path).ids:
            broken.append(f'{link} (no id {anchor!r} in {target})')
    assert not broken, f'{page_name}: broken links: {broken}'


def guides():
    with open(os.path.join(REPO, 'docs', 'docsite', 'extra-docs.yml'), encoding='utf-8') as handle:
        config = yaml.safe_load(handle)
    return [name for section in config['sections'] for name in section['toctree']]


def test_every_guide_file_is_listed_and_every_listed_guide_exists():
    files = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(REPO, 'docs', 'docsite', 'rst', '*.rst')))
    assert sorted(guides()) == files


@pytest.mark.parametrize('guide', guides())
def test_every_guide_is_linked_from_the_index(guide):
    index = parse(os.path.join(HTML, 'index.html'))
    assert f'docsite/{guide}.html' in index.links
    assert os.path.isfile(os.path.join(HTML, 'docsite', f'{guide}.html'))


def test_the_link_check_finds_a_broken_link():
    page = Page()
    page.feed('<a href="nowhere.html#x">x</a><a href="https://example.org/">y</a><p id="here"></p>')
    links = list(internal_links('docsite/a.html', page))
    assert links == [('nowhere.html#x', 'docsite/nowhere.html', 'x')]
    assert page.ids == {'here'}
    assert not re.match(r'^\w+:', links[0][1])
