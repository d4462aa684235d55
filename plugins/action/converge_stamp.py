# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Action plugin of datalab.notebooks.converge_stamp: the stamp a full run of site.yml leaves in the install's
namespace, and the check that lets the next run skip its roles when nothing they look at has changed.

Everything runs in the controller's process: the Kubernetes reads and writes with one API client, the probe
commands and the realm comparison as the probe and keycloak_realm_import action plugins run them on a local
connection. The pure logic is module_utils.converge_stamp.
"""

from __future__ import annotations

import base64
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.datalab.notebooks.plugins.lookup.path_digest import path_digest
from ansible_collections.datalab.notebooks.plugins.module_utils import converge_stamp as stamp_logic
from ansible_collections.datalab.notebooks.plugins.module_utils import k8s_connection
from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_realm_import import (
    ARGUMENT_SPEC as REALM_ARGUMENT_SPEC, ImportFailed, run_import)
from ansible_collections.datalab.notebooks.plugins.module_utils.probe import ARGUMENT_SPEC as PROBE_ARGUMENT_SPEC
from ansible_collections.datalab.notebooks.plugins.module_utils.probe import run as run_probe

# The collection's files that make up what a run does.
_COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_COLLECTION_PARTS = ("roles", "plugins", "playbooks", "meta")


def _collection_digest():
    return stamp_logic.digest([[part, path_digest(os.path.join(_COLLECTION, part))] for part in _COLLECTION_PARTS
                               if os.path.isdir(os.path.join(_COLLECTION, part))])


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(stamp_logic.ARG_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        validation = ArgumentSpecValidator(stamp_logic.ARG_SPEC).validate(self._task.args)
        if validation.error_messages:
            return dict(result, failed=True, msg="converge_stamp: " + "; ".join(validation.error_messages))
        args = validation.validated_parameters
        if self._play_context.check_mode:
            return dict(result, failed=True, msg="converge_stamp: not in check mode (it would write the stamp)")
        try:
            self._call = k8s_connection.make_call_json(k8s_connection.api_client(args))
            self._ns, self._instance = args["namespace"], args["instance"]
            self._path = "/api/v1/namespaces/%s/secrets/%s" % (self._ns, stamp_logic.STAMP_NAME)
            if args["state"] == "absent":
                return dict(result, changed=False, removed=self._remove())
            if args["state"] == "check":
                return dict(result, changed=False, **self._check(task_vars))
            return dict(result, changed=False, **self._write(args["input"], args["checks"], args["facts"]))
        except (stamp_logic.StampError, k8s_connection.K8sConnectionError) as err:
            return dict(result, failed=True, msg="converge_stamp: %s" % err)

    # -- the stamp Secret ---------------------------------------------------------------------------------

    def _read(self):
        found = self._call("GET", self._path)
        if not found:
            return None
        try:
            return json.loads(base64.b64decode((found.get("data") or {})[stamp_logic.STAMP_KEY]))
        except (KeyError, ValueError, TypeError):
            return {}  # unreadable: compared as a stamp of no format, so it misses and is replaced

    def _remove(self):
        return self._call("DELETE", self._path) is not None

    def _store(self, stamp):
        labels = {"app.kubernetes.io/part-of": "datalab-notebooks", "app.kubernetes.io/managed-by": "datalab.notebooks",
                  "app.kubernetes.io/instance": self._instance, "app.kubernetes.io/name": "converge-stamp"}
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": stamp_logic.STAMP_NAME, "namespace": self._ns, "labels": labels},
                "data": {stamp_logic.STAMP_KEY: base64.b64encode(json.dumps(stamp, sort_keys=True).encode()).decode()}}
        if self._call("PUT", self._path, body=body) is None:
            self._call("POST", "/api/v1/namespaces/%s/secrets" % self._ns, body=body)

    # -- what a run looks at ------------------------------------------------------------------------------

    def _list(self, prefix, plural, namespaced, selector):
        path = "%s/namespaces/%s/%s" % (prefix, self._ns, plural) if namespaced else "%s/%s" % (prefix, plural)
        found = self._call("GET", path, {"labelSelector": selector}) if selector else self._call("GET", path)
        if not found:  # a kind the cluster does not serve has no objects of the install
            return []
        kind = found.get("kind", "").rsplit("List", 1)[0]
        return [dict(item, apiVersion=found.get("apiVersion"), kind=kind) for item in found.get("items") or []]

    def _objects(self):
        selector = "app.kubernetes.io/instance=%s" % self._instance
        items = []
        for prefix, plural, namespaced in stamp_logic.OWNED_KINDS:
            items += self._list(prefix, plural, namespaced, selector)
        items += self._list(*stamp_logic.HELM_RELEASES)
        return stamp_logic.object_marks(items, skip={(self._ns, stamp_logic.STAMP_NAME)})

    def _nodes(self):
        return stamp_logic.node_marks(self._call("GET", "/api/v1/nodes").get("items") or [])

    def _input(self, task_vars):
        variables = {}
        for name, value in task_vars.items():
            if name in stamp_logic.RUN_VARIABLES or name.startswith(stamp_logic.RUN_VARIABLE_PREFIXES):
                continue
            try:
                variables[name] = self._templar.template(value)
            except Exception as err:  # pylint: disable=broad-except  # a value that only templates inside a role
                variables[name] = ["untemplated", str(value), type(err).__name__]
        variables = json.loads(json.dumps(variables, sort_keys=True, default=str))
        return stamp_logic.input_digest(dict(variables, __collection__=_collection_digest()), dict(os.environ))

    def _probe(self, probe):
        validation = ArgumentSpecValidator(PROBE_ARGUMENT_SPEC).validate({"argv": probe["argv"], "env": probe["env"]})
        if validation.error_messages:
            raise stamp_logic.StampError("a probe of the stamp: %s" % "; ".join(validation.error_messages))
        said = run_probe(validation.validated_parameters)
        return stamp_logic.probe_mark(said["rc"], said["stdout"])

    def _realm_differs(self, realm):
        """None when Keycloak holds the realm the install's realm Secret records, else a phrase."""
        secret = self._call("GET", "/api/v1/namespaces/%s/secrets/%s" % (self._ns, realm["secret"])) or {}
        try:
            data = json.loads(base64.b64decode((secret.get("data") or {})["realm.json"]))
        except (KeyError, ValueError, TypeError):
            return "the realm Secret %s is missing or unreadable" % realm["secret"]
        params = {key: value for key, value in realm.items() if key != "secret"}
        validation = ArgumentSpecValidator(REALM_ARGUMENT_SPEC).validate(dict(params, realm_data=data))
        if validation.error_messages:
            raise stamp_logic.StampError("the realm check of the stamp: %s" % "; ".join(validation.error_messages))
        try:
            compared = run_import(validation.validated_parameters, check_mode=True)
        except ImportFailed as err:
            return "the realm could not be compared with Keycloak (%s)" % err
        return "the realm %s in Keycloak differs" % data.get("realm") if compared.get("changed") else None

    # -- the two sides ------------------------------------------------------------------------------------

    def _check(self, task_vars):
        current, now = {"input": self._input(task_vars)}, time.time()
        found = self._read()
        if self._connection.transport != "local":
            reason = "the stamp is used only where the host's connection is local"
        elif found is None:
            reason = stamp_logic.difference(None, current, now)
        else:  # what the stamp holds of itself first, then what must be read, all at once
            reason = stamp_logic.difference(found, dict(current, nodes=found.get("nodes"),
                                                        objects=found.get("objects") or []), now)
        if reason is None:
            with ThreadPoolExecutor(max_workers=2) as pool:
                realms = pool.submit(self._realms_differ, found)
                probes = pool.submit(self._probes_differ, found)
                current.update(nodes=self._nodes(), objects=self._objects())
                reason = (stamp_logic.difference(found, current, now) or self._files_differ(found)
                          or probes.result() or realms.result())
        return dict(hit=reason is None, reason=reason or "nothing changed since the last full run",
                    input=current["input"], written=(found or {}).get("written", ""),
                    facts=(found or {}).get("facts", {}) if reason is None else {})

    @staticmethod
    def _files_differ(found):
        for path, value in sorted((found.get("files") or {}).items()):
            try:
                now = path_digest(os.path.expanduser(path))
            except Exception:  # pylint: disable=broad-except  # a file that is gone; path_digest raises its lookup's error
                now = None
            if now != value:
                return "the file %s changed" % path
        return None

    def _probes_differ(self, found):
        for probe in found.get("probes") or []:
            if self._probe(probe) != probe["mark"]:
                command = " ".join(probe["argv"])
                return "`%s` shows something else" % (command if len(command) <= 160 else command[:157] + "...")
        return None

    def _realms_differ(self, found):
        for realm in found.get("realms") or []:
            differs = self._realm_differs(realm)
            if differs:
                return differs
        return None

    def _write(self, input_digest, checks, facts):
        merged = stamp_logic.merge_checks(checks)
        if not input_digest:
            raise stamp_logic.StampError("state present needs the input digest that state check returned")
        if self._connection.transport != "local":
            merged["unstampable"].append("the host's connection is not local")
        if merged["unstampable"]:
            self._remove()
            return dict(written=False, reason="; ".join(merged["unstampable"]))
        probes = [dict(probe, mark=self._probe(probe)) for probe in merged["probes"]]
        stamp = {"format": stamp_logic.FORMAT, "input": input_digest, "renew_at": merged["renew_at"],
                 "nodes": self._nodes(), "objects": self._objects(), "files": merged["files"], "probes": probes,
                 "realms": merged["realms"], "facts": facts,
                 "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._store(stamp)
        return dict(written=True, reason="", objects=len(stamp["objects"]))
