# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Would a server-side apply change an object?  Plain Python on two dicts, no cluster access.

`applied(manifest, live, field_manager, ready)` is true only when a server-side apply of `manifest`
by `field_manager` would leave `live` (the object as the API server returns it, `metadata.managedFields`
included) as it is: the object exists and is not being deleted, the field manager owns exactly the
fields the manifest sets (the apply would neither take a field over nor drop one), and every value the
manifest sets is the object's.  Fields owned as a whole (atomic maps and lists) must be equal, not
only contain the manifest's value.  With `ready`, a Deployment, StatefulSet, DaemonSet or Pod must
also be ready the way kubernetes.core.k8s with wait=true waits for it.  Any doubt counts as "not
applied": a caller that skips the apply when this is true skips only a no-op.

Used by the action plugin datalab.notebooks.k8s_apply and the test plugin datalab.notebooks.k8s_applied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping


class OwnershipError(ValueError):
    """The manifest or the live object is not something the comparison can read."""


# Identity fields: they select the object and never appear in managedFields.
_IDENTITY_METADATA = ("name", "namespace")
_IDENTITY = ("apiVersion", "kind")


def _is_list(value):
    return isinstance(value, (list, tuple))


def _strip_identity(manifest):
    out = {k: v for k, v in manifest.items() if k not in _IDENTITY}
    metadata = {k: v for k, v in (manifest.get("metadata") or {}).items() if k not in _IDENTITY_METADATA}
    out.pop("metadata", None)
    if metadata:
        out["metadata"] = metadata
    return out


def _parse_key(key):
    """A fieldsV1 key: ('f', name), ('k', {key fields}), ('v', value) or ('.', None)."""
    if key == ".":
        return ".", None
    kind, sep, rest = key.partition(":")
    if not sep or kind not in ("f", "k", "v"):
        return "?", key
    if kind == "f":
        return "f", rest
    try:
        return kind, json.loads(rest)
    except ValueError:
        return "?", key


def _element(items, keys):
    """The one element of an associative list whose key fields are `keys`, or None."""
    found = [e for e in items if isinstance(e, Mapping) and all(e.get(k) == v for k, v in keys.items())]
    return found[0] if len(found) == 1 else None


def _owned_within(owned, desired):
    """Every field the manager owns is set by the manifest (an apply would not drop any)."""
    for key, child in owned.items():
        kind, name = _parse_key(key)
        if kind == ".":
            continue
        if kind == "f":
            if not isinstance(desired, Mapping) or name not in desired:
                return False
            value = desired[name]
        elif kind == "k":
            if not _is_list(desired) or not isinstance(name, Mapping):
                return False
            value = _element(desired, name)
            if value is None:
                return False
        elif kind == "v":
            if not _is_list(desired) or name not in desired:
                return False
            continue
        else:
            return False
        if child and not _owned_within(child, value):
            return False
    return True


def _desired_owned(owned, desired):
    """Every field the manifest sets is owned by the manager (an apply would not take any over)."""
    if isinstance(desired, Mapping):
        for name, value in desired.items():
            key = "f:" + str(name)
            if key not in owned:
                return False
            child = owned[key]
            if child and not _desired_owned(child, value):
                return False
        return True
    if _is_list(desired):
        entries = [_parse_key(k) + (v,) for k, v in owned.items() if k != "."]
        for item in desired:
            if isinstance(item, Mapping):
                matches = [node for kind, keys, node in entries if kind == "k" and isinstance(keys, Mapping)
                           and all(item.get(k) == v for k, v in keys.items())]
                if len(matches) != 1:
                    return False
                node = {k: v for k, v in matches[0].items() if k != "."}
                if node and not _desired_owned(node, item):
                    return False
            elif not any(kind == "v" and keys == item for kind, keys, dummy in entries):
                return False
        return True
    # A scalar under a non-leaf fieldsV1 node: not something an apply leaves alone.
    return False


def _is_zero(value):
    """A value the API server does not write out (omitempty): the object simply lacks the field."""
    return value is None or value is False or (not isinstance(value, bool) and value == 0) or value in ("", [], {})


def _equal(desired, live):
    """Equal, where a field the manifest sets to a zero value may be missing from the object."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping) or any(name not in desired for name in live):
            return False
        return all(_equal(value, live[name]) if name in live else _is_zero(value) for name, value in desired.items())
    if _is_list(desired):
        return _is_list(live) and len(live) == len(desired) and all(_equal(d, v) for d, v in zip(desired, live))
    return desired == live


def _values_match(desired, live, owned):
    """The object has every value the manifest sets; owned atomic subtrees are equal as a whole."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        if not owned:  # owned as a whole (atomic map) or a leaf
            return _equal(desired, live)
        for name, value in desired.items():
            if name not in live:
                if _is_zero(value):
                    continue
                return False
            if not _values_match(value, live[name], owned.get("f:" + str(name))):
                return False
        return True
    if _is_list(desired):
        if not _is_list(live) or len(live) != len(desired):
            return False
        if not owned:  # atomic list
            return _equal(desired, live)
        entries = [_parse_key(k) + (v,) for k, v in owned.items() if k != "."]
        for item, live_item in zip(desired, live):
            if isinstance(item, Mapping):
                nodes = [node for kind, keys, node in entries if kind == "k" and isinstance(keys, Mapping)
                         and all(item.get(k) == v for k, v in keys.items())]
                if len(nodes) != 1 or not _values_match(item, live_item, {k: v for k, v in nodes[0].items() if k != "."}):
                    return False
            elif not _equal(item, live_item):
                return False
        return True
    return _equal(desired, live)


def _ready(obj):
    """The readiness kubernetes.core.k8s waits for (module_utils/k8s/waiter.py), on the object's dict."""
    kind = obj.get("kind")
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj.get("metadata") or {}
    if kind == "Deployment":
        return bool(status and spec.get("replicas") == (status.get("replicas") or 0)
                    and status.get("availableReplicas") == status.get("replicas")
                    and status.get("observedGeneration") == meta.get("generation")
                    and not status.get("unavailableReplicas"))
    if kind == "DaemonSet":
        return bool(status and status.get("desiredNumberScheduled") is not None
                    and (status.get("updatedNumberScheduled") or 0) == status.get("desiredNumberScheduled")
                    and status.get("numberReady") == status.get("desiredNumberScheduled")
                    and status.get("observedGeneration") == meta.get("generation")
                    and not status.get("unavailableReplicas"))
    if kind == "StatefulSet":
        strategy = (spec.get("updateStrategy") or {}).get("type")
        if strategy == "OnDelete":
            return bool(status and status.get("observedGeneration") == (meta.get("generation") or 0)
                        and status.get("replicas") == spec.get("replicas"))
        return bool(status and strategy == "RollingUpdate"
                    and status.get("observedGeneration") == (meta.get("generation") or 0)
                    and status.get("updateRevision") == status.get("currentRevision")
                    and (status.get("updatedReplicas") or 0) == spec.get("replicas")
                    and (status.get("readyReplicas") or 0) == spec.get("replicas"))
    if kind == "Pod":
        containers = status.get("containerStatuses")
        return bool(status and containers is not None and all(c.get("ready") for c in containers))
    return True


def applied(manifest, live, field_manager="datalab-notebooks", ready=False):
    """True when a server-side apply of `manifest` by `field_manager` would leave `live` as it is."""
    if isinstance(manifest, str):
        import yaml  # only for a rendered template (the test plugin, on the controller)

        docs = [d for d in yaml.safe_load_all(manifest) if d is not None]
        if len(docs) != 1:
            raise OwnershipError("expected one manifest, got %d YAML documents" % len(docs))
        manifest = docs[0]
    if not isinstance(manifest, Mapping):
        raise OwnershipError("the manifest must be a dict or a YAML document")
    if _is_list(live):
        if len(live) > 1:
            raise OwnershipError("expected at most one live object, got %d" % len(live))
        live = live[0] if live else None
    if not live:
        return False
    if not isinstance(live, Mapping):
        raise OwnershipError("the live object must be a dict")
    meta = live.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    for key in _IDENTITY:
        if manifest.get(key) != live.get(key):
            return False
    for key in _IDENTITY_METADATA:
        if (manifest.get("metadata") or {}).get(key) not in (None, meta.get(key)):
            return False
    entries = [e for e in meta.get("managedFields") or []
               if e.get("manager") == field_manager and e.get("operation") == "Apply" and not e.get("subresource")]
    if len(entries) != 1 or entries[0].get("apiVersion") != manifest.get("apiVersion"):
        return False
    owned = entries[0].get("fieldsV1") or {}
    desired = _strip_identity(manifest)
    if not (_owned_within(owned, desired) and _desired_owned(owned, desired)
            and _values_match(desired, live, owned)):
        return False
    return _ready(live) if ready else True
