#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: converge_stamp
short_description: Record a full run of site.yml, and find out whether the next one has anything to do
version_added: 0.3.0
description:
  - A full run of C(site.yml) that ends well records a stamp in Secret C(datalab-converge-stamp) of the install's
    namespace (O(state=present)). The next full run compares what it would look at with the stamp
    (O(state=check)); when nothing differs, its roles are skipped.
  - The stamp holds the digest of the run's input (the host's variables templated, the controller's C(HOME),
    C(XDG_CACHE_HOME), C(KUBECONFIG), C(K8S_AUTH_*) and C(HELM_*), the collection's C(roles), C(plugins),
    C(playbooks) and C(meta)); a mark of every object of the install (every kind the roles write, by the label
    C(app.kubernetes.io/instance), and Helm's release Secrets) - its uid and resourceVersion, which any write
    changes; the nodes' names and addresses; and what the roles contributed in O(checks).
  - O(state=check) only reads; site.yml removes a stamp that differs (O(state=absent)) once the run's input has
    passed its checks, so a stamp only ever stands for the last run, and bad input changes nothing.
  - A check or a write that cannot reach the API fails with a message; the playbooks treat a failed check as a
    difference (every role runs) and a failed write as no stamp.
  - Runs as an action plugin on the controller; the stamp is written only where the host's connection is local.
extends_documentation_fragment:
  - datalab.notebooks.k8s_connection
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - datalab.notebooks.controller_action
author:
  - datalab.notebooks developers (!UNKNOWN)
options:
  state:
    description:
      - V(check) compares and returns RV(hit) and RV(reason); V(present) records the stamp; V(absent) removes it.
    type: str
    choices: [check, present, absent]
    required: true
  namespace:
    description:
      - The install's namespace, where the stamp is kept.
    type: str
    required: true
  instance:
    description:
      - The value of the install's C(app.kubernetes.io/instance) label.
    type: str
    required: true
  input:
    description:
      - With O(state=present), the RV(input) that O(state=check) returned at the start of the run.
    type: str
    default: ""
  checks:
    description:
      - With O(state=present), what the roles contributed (C(datalab_converge_checks)), a dict from a role's name
        to a dict of C(files) (a path on the controller to its C(datalab.notebooks.path_digest)), C(probes) (a
        list of C(argv) and C(env) whose exit code and output must stay the same), C(realm) (the arguments of
        C(datalab.notebooks.keycloak_realm_import) without C(realm_data), plus C(secret), the Secret whose
        C(realm.json) holds the realm), C(renew_at) (seconds since the epoch from which a run renews something)
        and C(stampable) (a reason why no stamp can stand for the role).
    type: dict
    default: {}
  facts:
    description:
      - With O(state=present), values the run worked out that a run which skips its roles still shows (the
        summary's addresses); O(state=check) returns them as RV(facts) when the stamp holds.
    type: dict
    default: {}
attributes:
  check_mode:
    support: none
    details: The playbooks never call it in check mode.
  diff_mode:
    support: none
notes:
  - Use C(no_log) with O(state=present), since the realm check holds the admin credentials.
requirements:
  - The C(kubernetes) Python package on the controller.
"""

EXAMPLES = r"""
- name: Compare the install with the stamp of the last full run
  datalab.notebooks.converge_stamp:
    state: check
    namespace: datalab
    instance: datalab
  register: _stamp
"""

RETURN = r"""
hit:
  description: With O(state=check), whether nothing differs from the stamp.
  returned: state is check
  type: bool
reason:
  description: What differs first (or why no stamp was written), in words.
  returned: always
  type: str
input:
  description: With O(state=check), the digest of the run's input, for O(state=present) at the end of the run.
  returned: state is check
  type: str
written:
  description: With O(state=check), when the stamp was written; with O(state=present), whether it was.
  returned: state is check or present
  type: raw
facts:
  description: With O(state=check), the O(facts) the stamp was written with, where it holds; else empty.
  returned: state is check
  type: dict
removed:
  description: With O(state=absent), whether there was a stamp to remove.
  returned: state is absent
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datalab.notebooks.plugins.module_utils.converge_stamp import ARG_SPEC


def main():
    module = AnsibleModule(argument_spec=ARG_SPEC)
    module.fail_json(msg="datalab.notebooks.converge_stamp runs as an action plugin on the controller; "
                         "call it as a task of a play, not as a module on its own")


if __name__ == "__main__":
    main()
