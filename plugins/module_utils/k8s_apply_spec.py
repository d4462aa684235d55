# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The options of datalab.notebooks.k8s_apply and its decision per object, as plain Python.

One policy for every object the roles write: a server-side apply by one field manager that forces
conflicts (the collection owns what its templates set), with `metadata.managedFields` hidden from
the change comparison (status writers reorder it; that alone is no change).
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible_collections.datalab.notebooks.plugins.module_utils.k8s_ownership import applied

FIELD_MANAGER = "datalab-notebooks"
HIDDEN_FIELDS = ("metadata.managedFields",)
AUTH_KEYS = ("kubeconfig", "context", "host", "api_key", "validate_certs", "ca_cert", "client_cert", "client_key")

OBJECT_SPEC = dict(
    template=dict(type="str"),
    definition=dict(type="raw"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    wait=dict(type="bool", default=False),
    wait_timeout=dict(type="int", default=300),
)

APPLY_ARG_SPEC = dict(
    objects=dict(type="list", elements="dict", required=True, options=OBJECT_SPEC,
                 mutually_exclusive=[["template", "definition"]], required_one_of=[["template", "definition"]]),
    field_manager=dict(type="str", default=FIELD_MANAGER),
    auth=dict(type="dict", default={}),
)


def check_auth(auth):
    """The connection options that are set; ValueError names an option kubernetes.core does not know."""
    unknown = sorted(set(auth or {}) - set(AUTH_KEYS))
    if unknown:
        raise ValueError("unknown connection option(s) in auth: %s (known: %s)" % (", ".join(unknown), ", ".join(AUTH_KEYS)))
    return {key: value for key, value in (auth or {}).items() if value not in (None, "")}


def parse_manifest(source):
    """One object from a dict or a YAML document; ValueError names what is wrong."""
    if isinstance(source, str):
        import yaml  # only on the controller (the action plugin); modules never parse text

        try:
            docs = [d for d in yaml.safe_load_all(source) if d is not None]
        except yaml.YAMLError as err:
            raise ValueError("not valid YAML: %s" % " ".join(str(err).split())) from None
        if len(docs) != 1:
            raise ValueError("expected one object, got %d YAML documents" % len(docs))
        source = docs[0]
    if not isinstance(source, Mapping):
        raise ValueError("expected an object (a mapping), got %s" % type(source).__name__)
    missing = [key for key in ("apiVersion", "kind") if not source.get(key)]
    if not (source.get("metadata") or {}).get("name"):
        missing.append("metadata.name")
    if missing:
        raise ValueError("the object has no %s" % ", ".join(missing))
    return dict(source)


def identity(manifest):
    """What selects the object in the API."""
    meta = manifest.get("metadata") or {}
    return {"api_version": manifest["apiVersion"], "kind": manifest["kind"], "name": meta["name"],
            "namespace": meta.get("namespace")}


def describe(manifest):
    ident = identity(manifest)
    where = " in namespace %s" % ident["namespace"] if ident["namespace"] else ""
    return "%s %s%s" % (ident["kind"], ident["name"], where)


def without_managed_fields(obj):
    """The object without metadata.managedFields (the policy hides them from results too)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return dict(obj, metadata=meta)


def plan(manifest, live, state="present", field_manager=FIELD_MANAGER, wait=False):
    """What to do: 'unchanged' (present as the manifest says, and ready when waited for), 'apply',
    'absent' (already gone) or 'delete'."""
    if isinstance(live, (list, tuple)):
        if len(live) > 1:
            raise ValueError("expected at most one live object, got %d" % len(live))
        live = live[0] if live else None
    if state == "absent":
        return "delete" if live else "absent"
    return "unchanged" if applied(manifest, live, field_manager=field_manager, ready=wait) else "apply"
