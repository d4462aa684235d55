# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The converge stamp's pure logic: what a full run of site.yml records when it ends well, and how a later run
finds out whether anything it would look at has changed since.

A stamp holds the digest of the run's input (the host's variables, a few environment variables, the collection's
files), the marks of every object the install owns (kind, name, uid, resourceVersion: any write changes them),
the addresses of the nodes, and what the roles contributed: files with their digests, commands whose output must
stay the same (the executor image in the engine and in the cluster), the realm to compare with Keycloak, and the
time from which a certificate is renewed. `difference` names the first thing that differs, or returns None.
"""

from __future__ import annotations

import hashlib
import json

from ansible_collections.datalab.notebooks.plugins.module_utils.k8s_connection import CONNECTION_ARG_SPEC

ARG_SPEC = dict(
    CONNECTION_ARG_SPEC,
    state=dict(type="str", choices=["check", "present", "absent"], required=True),
    namespace=dict(type="str", required=True),
    instance=dict(type="str", required=True),
    input=dict(type="str", default=""),
    checks=dict(type="dict", default={}),
    facts=dict(type="dict", default={}),
)

STAMP_NAME = "datalab-converge-stamp"
STAMP_KEY = "stamp.json"
FORMAT = 1

# Every kind the roles write, and every kind the uninstall removes (tests/unit/test_converge_stamp_logic.py holds the
# roles' templates and the uninstall's list to this), as the API lists them: path prefix -> plurals, read by the
# install's instance label.
_NAMESPACED = {"/api/v1": "secrets configmaps services serviceaccounts persistentvolumeclaims",
               "/apis/apps/v1": "deployments statefulsets", "/apis/batch/v1": "jobs",
               "/apis/rbac.authorization.k8s.io/v1": "roles rolebindings", "/apis/networking.k8s.io/v1": "ingresses"}
_CLUSTER_SCOPED = {"/api/v1": "namespaces",
                   "/apis/admissionregistration.k8s.io/v1": "validatingadmissionpolicies validatingadmissionpolicybindings"}
# (path prefix, plural, namespaced)
OWNED_KINDS = tuple((prefix, plural, namespaced)
                    for kinds, namespaced in ((_NAMESPACED, True), (_CLUSTER_SCOPED, False))
                    for prefix, plurals in kinds.items() for plural in plurals.split())
# Helm's record of the install's releases (one Secret per revision), which the roles read to decide on Helm.
HELM_RELEASES = ("/api/v1", "secrets", True, "owner=helm")

# Variables of the run that say how or from where it runs, not what it installs; the rest of the host's
# variables are the input. Tags, check mode and the stamp switch decide whether a stamp is used at all.
RUN_VARIABLES = frozenset((
    "ansible_check_mode", "ansible_diff_mode", "ansible_verbosity", "ansible_forks", "ansible_run_tags",
    "ansible_skip_tags", "ansible_limit", "ansible_play_batch", "ansible_play_hosts", "ansible_play_hosts_all", "ansible_play_name",
    "ansible_play_role_names", "ansible_role_names", "ansible_dependent_role_names", "ansible_current_hosts",
    "ansible_failed_hosts", "ansible_search_path", "ansible_facts", "ansible_parent_role_names",
    "ansible_parent_role_paths", "ansible_role_name", "ansible_collection_name", "ansible_loop_var",
    "ansible_index_var", "play_hosts", "playbook_dir", "role_names", "role_name", "role_path", "hostvars", "vars",
    "environment", "omit", "datalab_converge_stamp", "datalab_converge_checks",
))
# The preflight play's own variables, worked out from the others (in an order that can change from run to run).
RUN_VARIABLE_PREFIXES = ("_preflight_",)
# The controller's environment variables the roles and the Kubernetes client read.
ENVIRONMENT = ("HOME", "XDG_CACHE_HOME", "KUBECONFIG")
ENVIRONMENT_PREFIXES = ("K8S_AUTH_", "HELM_")


class StampError(Exception):
    """A stamp or a contribution that cannot be used; the message is one line."""


def digest(value):
    """Hex SHA-256 of a JSON-able value, key order ignored."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()


def input_digest(variables, environ):
    """Digest of the run's input: the templated host variables except RUN_VARIABLES, and ENVIRONMENT."""
    kept = {name: value for name, value in variables.items()
            if name not in RUN_VARIABLES and not name.startswith(RUN_VARIABLE_PREFIXES)}
    env = {name: value for name, value in environ.items()
           if name in ENVIRONMENT or name.startswith(ENVIRONMENT_PREFIXES)}
    return digest({"variables": kept, "environment": env})


def object_marks(items, skip=()):
    """One sorted line per object: what any write to it changes (its resourceVersion), and which object it is
    (a deleted and re-created object has a new uid). `skip` holds (namespace, name) of Secrets left out."""
    marks = []
    for item in items:
        meta = item.get("metadata") or {}
        if item.get("kind") == "Secret" and (meta.get("namespace"), meta.get("name")) in skip:
            continue
        marks.append("%s/%s %s/%s %s %s" % (item.get("apiVersion"), item.get("kind"), meta.get("namespace") or "",
                                            meta.get("name"), meta.get("uid"), meta.get("resourceVersion")))
    return sorted(marks)


def node_marks(nodes):
    """The nodes' names and addresses: where the install publishes its addresses. Not their resourceVersion,
    which the kubelet's status reports change every few minutes."""
    return sorted("%s %s" % ((node.get("metadata") or {}).get("name"),
                             ",".join(sorted("%s=%s" % (a.get("type"), a.get("address"))
                                             for a in (node.get("status") or {}).get("addresses") or [])))
                  for node in nodes)


def probe_mark(rc, stdout):
    """What a probe command showed: its exit code and its output."""
    return digest({"rc": rc, "stdout": stdout})


def merge_checks(contributed):
    """The roles' contributions (role name -> its checks) as one set of checks, each checked for its shape:
    files (path -> digest), probes (each argv and env), realm (the import's arguments), renew_at (seconds since
    the epoch), stampable (false with a reason: no stamp is written)."""
    if not isinstance(contributed, dict):
        raise StampError("the checks must be a dict from a role's name to its checks, not %s" % type(contributed).__name__)
    merged = {"files": {}, "probes": [], "realms": [], "renew_at": None, "unstampable": []}
    for role in sorted(contributed):
        checks = contributed[role]
        if not isinstance(checks, dict):
            raise StampError("the checks of %s must be a dict" % role)
        unknown = sorted(set(checks) - {"files", "probes", "realm", "renew_at", "stampable"})
        if unknown:
            raise StampError("the checks of %s have unknown keys: %s" % (role, ", ".join(unknown)))
        if checks.get("stampable", True) is not True:
            merged["unstampable"].append("%s: %s" % (role, checks["stampable"]))
        for path, value in (checks.get("files") or {}).items():
            merged["files"][str(path)] = str(value)
        for probe in checks.get("probes") or []:
            if not isinstance(probe, dict) or not isinstance(probe.get("argv"), list) or not probe["argv"]:
                raise StampError("a probe of %s needs a non-empty argv list" % role)
            merged["probes"].append({"argv": [str(a) for a in probe["argv"]],
                                     "env": {str(k): str(v) for k, v in (probe.get("env") or {}).items()}})
        if checks.get("realm"):
            merged["realms"].append(dict(checks["realm"]))
        if checks.get("renew_at") is not None:
            at = float(checks["renew_at"])
            merged["renew_at"] = at if merged["renew_at"] is None else min(merged["renew_at"], at)
    return merged


def difference(stamp, current, now):
    """The first thing that differs between a stamp and what a run found, as a phrase; None when nothing does.
    `current` holds input, objects and nodes as the stamp holds them; files and probes are compared by the
    caller as it runs them (`changed_file`, `changed_probe`), the realm last, since it costs the most."""
    if stamp is None:
        return "there is no stamp of a full run that ended well"
    if stamp.get("format") != FORMAT:
        return "the stamp is unreadable or was written by another version of the collection"
    if stamp.get("input") != current["input"]:
        return "the inventory's variables, the environment or the collection's files changed"
    if stamp.get("renew_at") is not None and now >= stamp["renew_at"]:
        return "a certificate is due for renewal"
    if stamp.get("nodes") != current["nodes"]:
        return "the cluster's nodes or their addresses changed"
    before, after = set(stamp.get("objects") or []), set(current["objects"])
    if before != after:
        return "objects of the install changed: %s" % describe_marks(before, after)
    return None


def describe_marks(before, after):
    """Which objects changed between two sets of marks, named (at most three)."""
    def who(mark):
        kind, name = mark.split(" ")[:2]
        return "%s %s" % (kind.split("/")[-1], name.strip("/"))
    gone = {who(m) for m in before - after}
    new = {who(m) for m in after - before}
    names = sorted(gone | new)
    return ", ".join(names[:3]) + (" and %d more" % (len(names) - 3) if len(names) > 3 else "")
