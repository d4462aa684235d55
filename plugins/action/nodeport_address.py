# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Action plugin of datalab.notebooks.nodeport_address: the same reads as the module, in the
controller's process (like the kubernetes.core.k8s lookup), so a run starts no module for them.
It only reads; check mode changes nothing about it."""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.datalab.notebooks.plugins.module_utils import k8s_connection, nodeport

_SPEC = dict(nodeport.ARGUMENT_SPEC, **k8s_connection.CONNECTION_ARG_SPEC)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        validation = ArgumentSpecValidator(_SPEC).validate(self._task.args)
        if validation.error_messages:
            return dict(result, failed=True, msg="nodeport_address: " + "; ".join(validation.error_messages))
        params = validation.validated_parameters
        if not k8s_connection.HAS_KUBERNETES:
            return dict(result, failed=True, msg="nodeport_address: the kubernetes Python package is missing on the "
                                                 "controller: " + k8s_connection.KUBERNETES_IMPORT_ERROR.splitlines()[-1])
        try:
            with k8s_connection.api_client(params) as client:
                found = nodeport.discover_with(k8s_connection.make_get_json(client), params)
        except (nodeport.NodePortError, k8s_connection.K8sConnectionError) as exc:
            return dict(result, failed=True, msg=str(exc))
        return dict(result, changed=False, **found)
