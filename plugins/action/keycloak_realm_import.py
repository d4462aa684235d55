# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Action plugin of datalab.notebooks.keycloak_realm_import: where the host's connection is local, the
import runs in the controller's process (the same code as the module, no module start-up); on any other
connection the module runs on the host, which is where the CA file and the Keycloak address it is given
are valid."""

from __future__ import annotations

from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_realm_import import (
    ARGUMENT_SPEC, MUTUALLY_EXCLUSIVE, REQUIRED_IF, REQUIRED_TOGETHER, ImportFailed, run_import)
from ansible_collections.datalab.notebooks.plugins.plugin_utils.in_process import InProcessAction


class ActionModule(InProcessAction):
    NAME = "keycloak_realm_import"
    ARGUMENT_SPEC = ARGUMENT_SPEC
    VALIDATOR_OPTIONS = dict(mutually_exclusive=MUTUALLY_EXCLUSIVE, required_if=REQUIRED_IF,
                             required_together=REQUIRED_TOGETHER)
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run_here(self, params):
        try:
            return run_import(params, check_mode=bool(self._play_context.check_mode), diff=bool(self._play_context.diff))
        except ImportFailed as exc:
            return dict(exc.result, failed=True, msg=str(exc))
