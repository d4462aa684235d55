# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Action plugin of datalab.notebooks.keycloak_realm_import: where the host's connection is local, the
import runs in the controller's process (the same code as the module, no module start-up); on any other
connection the module runs on the host, which is where the CA file and the Keycloak address it is given
are valid."""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_realm_import import (
    ARGUMENT_SPEC, MUTUALLY_EXCLUSIVE, REQUIRED_IF, REQUIRED_TOGETHER, ImportFailed, run_import)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        if self._connection.transport != "local":
            return dict(result, **self._execute_module(task_vars=task_vars))
        validation = ArgumentSpecValidator(ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE,
                                           required_if=REQUIRED_IF, required_together=REQUIRED_TOGETHER
                                           ).validate(self._task.args)
        if validation.error_messages:
            return dict(result, failed=True, msg="keycloak_realm_import: " + "; ".join(validation.error_messages))
        try:
            found = run_import(validation.validated_parameters, check_mode=bool(self._play_context.check_mode),
                               diff=bool(self._play_context.diff))
        except ImportFailed as exc:
            return dict(result, failed=True, msg=str(exc), **exc.result)
        return dict(result, **found)
