# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
name: k8s_applied
short_description: Whether a server-side apply of a manifest would leave the object as it is
version_added: 0.1.0
description:
  - The comparison lives in C(plugins/module_utils/k8s_ownership.py), shared with the action plugin M(datalab.notebooks.k8s_apply).
  - Compares a manifest with the object the cluster holds (as the C(kubernetes.core.k8s) lookup returns it)
    and the fields the field manager owns there (C(metadata.managedFields), operation C(Apply)).
  - True only when a server-side apply of the manifest by that field manager would change nothing, that is
    when the object exists and is not being deleted, the field manager owns exactly the fields the manifest
    sets (so the apply would neither take over nor drop a field), and every value the manifest sets is
    the one the object has. Fields the field manager owns as a whole (atomic maps and lists) must be equal,
    not only contain the manifest's value.
  - With O(ready), a Deployment, StatefulSet, DaemonSet or Pod must also be ready the way
    C(kubernetes.core.k8s) with C(wait=true) waits for it (rollout complete, all replicas available).
  - Any doubt counts as "not applied", so a task skipped when this test is true is skipped only when running
    it would report no change. Plain Python on the two dicts; it reads nothing from the cluster.
  - Lets a play skip the start-up of a C(kubernetes.core.k8s) module (the Kubernetes client import dominates
    a no-op apply) for objects that are already as the manifest says.
author:
  - datalab.notebooks developers (!UNKNOWN)
positional: live
options:
  _input:
    description:
      - The manifest, a dict or a YAML document (for example what a template renders).
    type: raw
    required: true
  live:
    description:
      - The object in the cluster, as returned by C(query('kubernetes.core.k8s', ...)) (a list of at most
        one object) or C(lookup(...)) (the object). An empty list, an empty dict or C(none) mean it does not exist.
    type: raw
    required: true
  field_manager:
    description:
      - The field manager of the apply (C(server_side_apply.field_manager) of the task).
    type: str
    default: datalab-notebooks
  ready:
    description:
      - Also require the readiness C(kubernetes.core.k8s) waits for with C(wait=true).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Create the Service unless it is already as the template says
  kubernetes.core.k8s:
    state: present
    template: service.yaml.j2
    apply: true
    server_side_apply:
      field_manager: datalab-notebooks
  when: >-
    lookup('ansible.builtin.template', 'service.yaml.j2')
    is not datalab.notebooks.k8s_applied(query('kubernetes.core.k8s', kind='Service', resource_name='keycloak',
                                                namespace='demo'))
"""

RETURN = r"""
_value:
  description: True when a server-side apply of the manifest would change nothing (and, with O(ready), the object is ready).
  type: bool
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.datalab.notebooks.plugins.module_utils.k8s_ownership import OwnershipError, applied


def k8s_applied(manifest, live, field_manager="datalab-notebooks", ready=False):
    """True when a server-side apply of `manifest` by `field_manager` would leave `live` as it is."""
    try:
        return applied(manifest, live, field_manager=field_manager, ready=ready)
    except OwnershipError as err:
        raise AnsibleFilterError("k8s_applied: %s" % err) from None


class TestModule:
    """Jinja2 tests of datalab.notebooks."""

    def tests(self):
        return {"k8s_applied": k8s_applied}
