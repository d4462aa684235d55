# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Action plugin of datalab.notebooks.k8s_apply: the one way the roles write Kubernetes objects.

For each object: render it (a role template or a definition), read the live object with the
in-process kubernetes.core.k8s lookup, decide with module_utils.k8s_ownership whether a
server-side apply would change anything, and only then start kubernetes.core.k8s, always with the
same policy (field manager, force_conflicts, hidden managedFields).  A rerun that changes nothing
starts no module at all.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import lookup_loader
from ansible.template import trust_as_template

from ansible_collections.datalab.notebooks.plugins.module_utils.k8s_apply_spec import (
    APPLY_ARG_SPEC,
    HIDDEN_FIELDS,
    check_auth,
    describe,
    identity,
    parse_manifest,
    plan,
    without_managed_fields,
)

_LOOKUP = "kubernetes.core.k8s"
_MODULE = "kubernetes.core.k8s"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(APPLY_ARG_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        validation = ArgumentSpecValidator(APPLY_ARG_SPEC).validate(self._task.args)
        if validation.error_messages:
            return dict(result, failed=True, msg="k8s_apply: " + "; ".join(validation.error_messages))
        args = validation.validated_parameters
        try:
            auth = check_auth(args["auth"])
        except ValueError as err:
            return dict(result, failed=True, msg="k8s_apply: %s" % err)
        # Every object is rendered and parsed before the first one is written.
        manifests = []
        for index, spec in enumerate(args["objects"]):
            try:
                manifests.append(self._manifest(spec, task_vars))
            except AnsibleError as err:
                return dict(result, failed=True, objects=[], msg="k8s_apply: object %d (%s): %s; nothing was applied"
                            % (index + 1, spec.get("template") or "definition", err))
        outcomes, diffs = [], []
        for spec, manifest in zip(args["objects"], manifests):
            try:
                live = self._live(manifest, auth, task_vars)
                step = plan(manifest, live, spec["state"], args["field_manager"], spec["wait"])
            except Exception as err:  # pylint: disable=broad-except  # the lookup raises whatever the client raises
                return dict(result, failed=True, objects=outcomes,
                            msg="k8s_apply: reading %s: %s" % (describe(manifest), " ".join(str(err).split())))
            outcome = dict(identity(manifest), state=spec["state"], action=step, changed=False)
            outcomes.append(outcome)
            if step == "unchanged":  # what the cluster holds, as an apply would have returned it
                outcome["result"] = without_managed_fields(live[0])
            if step in ("unchanged", "absent"):
                continue
            module_args = dict(auth, state=spec["state"], definition=manifest, wait=spec["wait"],
                               wait_timeout=spec["wait_timeout"], hidden_fields=list(HIDDEN_FIELDS))
            if spec["state"] == "present":
                module_args.update(apply=True, server_side_apply={"field_manager": args["field_manager"],
                                                                  "force_conflicts": True})
            applied = self._execute_module(module_name=_MODULE, module_args=module_args, task_vars=task_vars)
            outcome["changed"] = bool(applied.get("changed"))
            if "result" in applied:
                outcome["result"] = applied["result"]
            if applied.get("diff"):  # with --diff: what kubernetes.core.k8s shows for the object
                diffs.extend(applied["diff"] if isinstance(applied["diff"], list) else [applied["diff"]])
            if applied.get("failed"):
                return dict(result, failed=True, objects=outcomes,
                            msg="k8s_apply: %s: %s" % (describe(manifest), applied.get("msg", "the apply failed")))
        if diffs:
            result["diff"] = diffs
        return dict(result, changed=any(o["changed"] for o in outcomes), objects=outcomes)

    def _manifest(self, spec, task_vars):
        """The object to apply: a rendered role template or the definition as given.  Rendered as the template
        action renders (the role's templates/ first, the task's variables), without the template lookup's deep
        copy of every variable for each object."""
        if spec.get("template"):
            try:
                path = self._find_needle("templates", spec["template"])
            except AnsibleError:
                raise AnsibleError("the template file %s could not be found in the role's templates/ or beside the "
                                   "playbook" % spec["template"]) from None
            searchpath = []
            for base in list(task_vars.get("ansible_search_path") or []) + [os.path.dirname(path)]:
                searchpath += [os.path.join(base, "templates"), base]
            templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=task_vars)
            text = templar.template(trust_as_template(self._loader.get_text_file_contents(path)),
                                    escape_backslashes=False)
        else:
            text = spec.get("definition")
        try:
            return parse_manifest(text)
        except ValueError as err:
            raise AnsibleError(str(err)) from None

    def _live(self, manifest, auth, task_vars):
        """The object in the cluster as a list of at most one, with its managedFields."""
        ident = identity(manifest)
        query = dict(auth, api_version=ident["api_version"], kind=ident["kind"], resource_name=ident["name"])
        if ident["namespace"]:
            query["namespace"] = ident["namespace"]
        lookup = lookup_loader.get(_LOOKUP, loader=self._loader, templar=self._templar)
        return lookup.run([], variables=task_vars, **query)
