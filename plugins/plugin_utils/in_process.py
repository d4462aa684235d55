# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The base of an action plugin whose module's work can run in the controller's process: where the host's
connection is local it validates the arguments against the module's spec and calls `run_here` (no module
start-up); on any other connection it starts the module on the host, where what the arguments name (files,
addresses, programs) is meant to be found."""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase


class InProcessAction(ActionBase):
    """Subclasses set NAME (for messages), ARGUMENT_SPEC (the module's), optionally VALIDATOR_OPTIONS
    (mutually_exclusive, required_if, ...), and _VALID_ARGS = frozenset(ARGUMENT_SPEC); `run_here`
    returns the module's result for validated parameters."""

    TRANSFERS_FILES = False
    NAME = ""
    ARGUMENT_SPEC: dict = {}
    VALIDATOR_OPTIONS: dict = {}

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        if self._connection.transport != "local":
            return dict(result, **self._execute_module(task_vars=task_vars))
        validation = ArgumentSpecValidator(self.ARGUMENT_SPEC, **self.VALIDATOR_OPTIONS).validate(self._task.args)
        if validation.error_messages:
            return dict(result, failed=True, msg="%s: %s" % (self.NAME, "; ".join(validation.error_messages)))
        return dict(result, **self.run_here(validation.validated_parameters))

    def run_here(self, params):
        raise NotImplementedError
