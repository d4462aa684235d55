# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
name: k8s_version
short_description: The version of the Kubernetes API server, or why it cannot be reached
version_added: 0.2.0
description:
  - Reads C(/version) of the API server in the controller's process (no module start-up), with the connection
    options of C(kubernetes.core.k8s).
  - Never fails for an unreachable or refusing API server; it returns the reason in RV(_raw.error) instead, so a
    play can say which setting is wrong.
author:
  - datalab.notebooks developers (!UNKNOWN)
extends_documentation_fragment:
  - datalab.notebooks.k8s_connection.lookup
"""

EXAMPLES = r"""
- name: Refuse a cluster older than 1.30
  ansible.builtin.assert:
    that: _server.error == '' and _server.version is version('1.30', '>=')
    fail_msg: "{{ _server.error or 'Kubernetes ' ~ _server.version ~ ' is too old' }}"
  vars:
    _server: "{{ lookup('datalab.notebooks.k8s_version', kubeconfig='~/.kube/config') }}"
"""

RETURN = r"""
_raw:
  description: One dict.
  type: list
  elements: dict
  contains:
    git_version:
      description: C(gitVersion) of the API server, for example V(v1.34.4); empty when it could not be read.
      type: str
    version:
      description: The version as V(1.34.4) (no leading v, no pre-release or build suffix); empty when unknown.
      type: str
    error:
      description: Why the API server could not be read, one line; empty on success.
      type: str
"""

import re

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.datalab.notebooks.plugins.module_utils import k8s_connection


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if not k8s_connection.HAS_KUBERNETES:
            raise AnsibleLookupError("k8s_version needs the kubernetes Python package on the controller")
        params = {key: self.get_option(key) for key in k8s_connection.CONNECTION_ARG_SPEC}
        try:
            with k8s_connection.api_client(params) as client:
                info = k8s_connection.make_get_json(client)("/version") or {}
        except k8s_connection.K8sConnectionError as exc:
            return [{"git_version": "", "version": "", "error": str(exc)}]
        git_version = str(info.get("gitVersion") or "")
        version = re.sub(r"[-+].*$", "", git_version.lstrip("v"))
        return [{"git_version": git_version, "version": version,
                 "error": "" if version else "the API server answered /version without gitVersion"}]
