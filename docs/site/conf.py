# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sphinx configuration of the qemu.vm docs site (`make docs`, output in build/docs/html).

antsibull-docs renders the plugin and role pages into build/docs/rst; Sphinx builds them
with warnings as errors. The build runs offline, so there is no intersphinx: the few
references into the Ansible documentation that antsibull-docs emits (plugins of other
collections, common return values, ansible-core's configuration settings and their
environment variables) are resolved below to their published addresses; any other
unresolved reference, one to a page of this collection included, still fails the build.
"""

from __future__ import annotations

import re

from docutils import nodes

project = 'qemu.vm'
copyright = 'qemu.vm contributors'
title = 'qemu.vm collection documentation'
html_short_title = 'qemu.vm docs'

extensions = ['sphinx_antsibull_ext']

pygments_style = 'ansible'
highlight_language = 'YAML+Jinja'

html_theme = 'sphinx_ansible_theme'
html_show_sphinx = False
display_version = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

default_role = 'any'
nitpicky = True

ANSIBLE_DOCS = 'https://docs.ansible.com/ansible/latest/'
ANSIBLE_LABELS = {
    'common_return_values': 'reference_appendices/common_return_values.html',
    'ansible_configuration_settings': 'reference_appendices/config.html',
    'action_plugins': 'plugins/action.html',
}
# Plugins of other collections: ansible_collections.ansible.builtin.copy_module[__parameter-src]
PLUGIN_LABEL = re.compile(r'^ansible_collections\.(\w+)\.(\w+)\.(\w+?_[a-z]+)(?:__(.+))?$')


def ansible_docs_uri(node):
    """The docs.ansible.com address of a reference into the Ansible docs, else None."""
    domain, kind, target = node.get('refdomain'), node.get('reftype'), node.get('reftarget', '')
    if domain != 'std':
        return None
    if kind == 'envvar' and target.startswith('ANSIBLE_'):
        # ansible-core's own settings (pipelining, cache plugin options of inventory plugins).
        return ANSIBLE_DOCS + ANSIBLE_LABELS['ansible_configuration_settings']
    if kind != 'ref':
        return None
    if target in ANSIBLE_LABELS:
        return ANSIBLE_DOCS + ANSIBLE_LABELS[target]
    match = PLUGIN_LABEL.match(target)
    if not match or (match.group(1), match.group(2)) == ('qemu', 'vm'):
        return None
    namespace, name, page, anchor = match.groups()
    uri = f'{ANSIBLE_DOCS}collections/{namespace}/{name}/{page}.html'
    return uri + '#' + anchor if anchor else uri


def resolve_ansible_label(app, env, node, contnode):
    """Link references into the Ansible docs to docs.ansible.com; leave others unresolved."""
    uri = ansible_docs_uri(node)
    if uri is None:
        return None
    reference = nodes.reference('', '', internal=False, refuri=uri)
    reference.append(contnode)
    return reference


def setup(app):
    app.connect('missing-reference', resolve_ansible_label)
