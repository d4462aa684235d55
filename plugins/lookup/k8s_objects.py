# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
name: k8s_objects
short_description: Read several named objects of one namespace at once
version_added: 0.2.0
description:
  - Reads each object named in the terms with the C(kubernetes.core.k8s) lookup, in the controller's process,
    and returns them keyed by C(<kind>/<name>), so a role reads everything it reads back in one task.
  - An object that does not exist maps to an empty list, as C(query('kubernetes.core.k8s', ...)) returns it.
author:
  - datalab.notebooks developers (!UNKNOWN)
extends_documentation_fragment:
  - datalab.notebooks.k8s_connection.lookup
options:
  _terms:
    description: The objects, each a dict with C(api_version), C(kind) and C(name).
    type: list
    elements: dict
    required: true
  namespace:
    description: The namespace of the objects.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Read the Secrets the role keeps
  ansible.builtin.set_fact:
    _live: >-
      {{ lookup('datalab.notebooks.k8s_objects', [{'api_version': 'v1', 'kind': 'Secret', 'name': 'keycloak-admin'}],
                namespace='datalab', kubeconfig='~/.kube/config') }}
  no_log: true
"""

RETURN = r"""
_raw:
  description: One dict from C(<kind>/<name>) to a list of at most one object.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.plugins.loader import lookup_loader

from ansible_collections.datalab.notebooks.plugins.module_utils.k8s_connection import CONNECTION_ARG_SPEC

_REQUIRED = ("api_version", "kind", "name")


def object_list(terms):
    """The objects named in the terms (one list, or the objects as separate terms), each checked."""
    objects = terms[0] if len(terms) == 1 and isinstance(terms[0], list) else list(terms)
    for index, obj in enumerate(objects):
        missing = [key for key in _REQUIRED if not isinstance(obj, dict) or not obj.get(key)]
        if missing:
            raise AnsibleLookupError("k8s_objects: object %d (%r) lacks %s" % (index + 1, obj, ", ".join(missing)))
    return objects


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        auth = {key: self.get_option(key) for key in CONNECTION_ARG_SPEC if self.get_option(key) is not None}
        namespace = self.get_option("namespace")
        objects = object_list(terms)
        reader = lookup_loader.get("kubernetes.core.k8s", loader=self._loader, templar=self._templar)
        found = {}
        for obj in objects:
            found["%s/%s" % (obj["kind"], obj["name"])] = reader.run(
                [], variables=variables, api_version=obj["api_version"], kind=obj["kind"],
                resource_name=obj["name"], namespace=namespace, **auth)
        return [found]
