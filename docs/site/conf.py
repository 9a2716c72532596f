# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sphinx configuration of the qemu.vm docs site (`make docs`, output in build/docs/html).

antsibull-docs renders the plugin and role pages into build/docs/rst; Sphinx builds them
with warnings as errors. The build runs offline, so there is no intersphinx: the few
references into the Ansible documentation that antsibull-docs emits (builtin modules,
common return values, configuration settings) are resolved below to their published
addresses, and any other unresolved reference still fails the build.
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
# ansible_collections.ansible.builtin.copy_module or ..._module__parameter-src
BUILTIN_LABEL = re.compile(r'^ansible_collections\.ansible\.builtin\.(\w+?)_(module|lookup|filter|test)(?:__(.+))?$')


def resolve_ansible_label(app, env, node, contnode):
    """Link labels of the Ansible documentation to docs.ansible.com; leave others unresolved."""
    if node.get('refdomain') != 'std' or node.get('reftype') != 'ref':
        return None
    target = node.get('reftarget', '')
    uri = None
    if target in ANSIBLE_LABELS:
        uri = ANSIBLE_DOCS + ANSIBLE_LABELS[target]
    else:
        match = BUILTIN_LABEL.match(target)
        if match:
            name, kind, anchor = match.groups()
            uri = '%scollections/ansible/builtin/%s_%s.html' % (ANSIBLE_DOCS, name, kind)
            if anchor:
                uri += '#' + anchor
    if uri is None:
        return None
    reference = nodes.reference('', '', internal=False, refuri=uri)
    reference.append(contnode)
    return reference


def setup(app):
    app.connect('missing-reference', resolve_ansible_label)
