#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_apply
short_description: Apply Kubernetes objects only where a server-side apply would change them
version_added: 0.2.0
description:
  - For each object of O(objects), renders it (a template of the calling role, or a definition), reads the object
    the cluster holds with the in-process C(kubernetes.core.k8s) lookup, and starts C(kubernetes.core.k8s) only
    when a server-side apply would change it, or when it must be deleted.
  - One policy for every object, taken from kubernetes.core's options - C(apply=true) with
    C(server_side_apply.force_conflicts=true) by O(field_manager) (the collection owns what its templates set,
    even where someone else changed it by hand), and C(hidden_fields=[metadata.managedFields]).
  - An object counts as unchanged when the field manager owns exactly the fields the manifest sets and each has
    the manifest's value; fields someone else owns (an annotation added by hand, a status) are left alone. A
    field the manifest no longer sets is dropped by the apply. With O(objects[].wait), the object must also be
    ready (rollout complete) to count as unchanged, otherwise it is applied and waited for.
  - A rerun that changes nothing starts no module, which is what makes it fast.
  - Runs as an action plugin on the controller; connection options are those of C(kubernetes.core.k8s), in O(auth).
author:
  - datalab.notebooks developers (!UNKNOWN)
options:
  objects:
    description:
      - The objects, applied in this order. The run stops at the first one that fails.
    type: list
    elements: dict
    required: true
    suboptions:
      template:
        description:
          - A template of the calling role (its C(templates/) directory), rendered with the task's variables; it must
            hold exactly one object. Mutually exclusive with O(objects[].definition).
        type: str
      definition:
        description:
          - The object as a dict or one YAML document.
        type: raw
      state:
        description:
          - V(absent) deletes the object when it exists.
        type: str
        choices: [present, absent]
        default: present
      wait:
        description:
          - Wait until the object is ready (as C(kubernetes.core.k8s) with C(wait=true)).
        type: bool
        default: false
      wait_timeout:
        description:
          - Seconds to wait with O(objects[].wait).
        type: int
        default: 300
  field_manager:
    description:
      - The server-side apply field manager.
    type: str
    default: datalab-notebooks
  auth:
    description:
      - Connection options of C(kubernetes.core.k8s) (C(kubeconfig), C(context), C(host), C(api_key),
        C(validate_certs), C(ca_cert), C(client_cert), C(client_key)); the roles pass C(datalab_k8s_auth).
    type: dict
    default: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - datalab.notebooks.controller_action
attributes:
  check_mode:
    support: full
    details: Objects that would change are passed to C(kubernetes.core.k8s) in check mode (a dry-run apply).
  diff_mode:
    support: full
    details: The before/after of each object C(kubernetes.core.k8s) applies or deletes, as that module shows it.
notes:
  - Use C(no_log) on tasks that apply Secrets; it covers the module calls the plugin starts.
requirements:
  - kubernetes.core, and the C(kubernetes) Python package on the controller and the target.
"""

EXAMPLES = r"""
- name: Create the Keycloak objects, and wait for the Deployment
  datalab.notebooks.k8s_apply:
    auth: "{{ datalab_k8s_auth }}"
    objects:
      - template: serviceaccount.yaml.j2
      - template: service.yaml.j2
      - template: ingress.yaml.j2
        state: "{{ 'present' if keycloak_ingress_host else 'absent' }}"
      - template: deployment.yaml.j2
        wait: true
        wait_timeout: 600
"""

RETURN = r"""
objects:
  description: One entry per object, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: The object's kind.
      type: str
    name:
      description: The object's name.
      type: str
    namespace:
      description: Its namespace (none for cluster-scoped objects).
      type: str
    action:
      description: >-
        V(unchanged) (as the manifest says; no module started), V(apply), V(delete), or V(absent) (already gone).
      type: str
    changed:
      description: Whether the cluster changed.
      type: bool
    result:
      description: >-
        The object as C(kubernetes.core.k8s) returned it where a module ran, or as the cluster holds it when
        V(unchanged) (without C(metadata.managedFields)).
      type: dict
      returned: when applied or unchanged
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datalab.notebooks.plugins.module_utils.k8s_apply_spec import APPLY_ARG_SPEC


def main():
    module = AnsibleModule(argument_spec=APPLY_ARG_SPEC, supports_check_mode=True)
    module.fail_json(msg="datalab.notebooks.k8s_apply runs as an action plugin on the controller; "
                         "call it as a task of a play, not as a module on its own")


if __name__ == "__main__":
    main()
