# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Action plugin of datalab.notebooks.probe: where the host's connection is local the command runs from
the controller's process (the same code as the module, no module start-up); on any other connection the
module runs it on the host, where the program is meant to be found."""

from __future__ import annotations

from ansible_collections.datalab.notebooks.plugins.module_utils.probe import ARGUMENT_SPEC, ProbeError, check, run
from ansible_collections.datalab.notebooks.plugins.plugin_utils.in_process import InProcessAction


class ActionModule(InProcessAction):
    NAME = "probe"
    ARGUMENT_SPEC = ARGUMENT_SPEC
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run_here(self, params):
        try:
            return run(check(params))
        except ProbeError as exc:
            return dict(failed=True, msg=str(exc))
