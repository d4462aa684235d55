"""The converge stamp's pure logic (plugins/module_utils/converge_stamp.py): what counts as the run's input, how
objects and nodes are marked, how the roles' contributions merge, and which difference is named first.
tests/integration/test_converge_stamp.py runs the action plugin against a real API server, and
tests/integration/test_platform_real.py shows a stamped rerun of the real platform."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.datalab.notebooks.plugins.module_utils import converge_stamp as cs  # noqa: E402

PLURALS = {"Namespace": "namespaces", "Secret": "secrets", "ConfigMap": "configmaps", "Service": "services",
           "ServiceAccount": "serviceaccounts", "PersistentVolumeClaim": "persistentvolumeclaims",
           "Deployment": "deployments", "StatefulSet": "statefulsets", "Job": "jobs", "Role": "roles", "RoleBinding": "rolebindings",
           "Ingress": "ingresses", "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
           "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings"}


def test_every_kind_a_stampable_role_writes_is_read_by_the_stamp():
    """A new kind in a role's templates that the stamp does not read would let a rerun skip its drift."""
    read = {kind[1] for kind in cs.OWNED_KINDS}
    written = {}
    for template in sorted(REPO.glob("roles/*/templates/*.j2")):
        for kind in re.findall(r"^kind: (\w+)", template.read_text(), flags=re.M):
            written.setdefault(kind, []).append(template.relative_to(REPO).as_posix())
    # The secret_operator role's objects: with that provider no stamp is written (the role says so).
    written.pop("TrustStore")
    assert "'stampable':" in (REPO / "roles/secret_operator/tasks/main.yml").read_text()
    missing = {kind: where for kind, where in written.items() if PLURALS.get(kind) not in read}
    assert not missing, f"kinds the stamp does not read: {missing}"


def test_every_kind_the_uninstall_removes_is_read_by_the_stamp():
    """An install's objects are the ones its uninstall finds: the two lists of kinds must agree."""
    import yaml
    tasks = yaml.safe_load((REPO / "roles/common/tasks/uninstall.yml").read_text())
    removes = [t for t in tasks if t.get("name", "").startswith("Remove the objects of install")][0]
    kinds = {k["kind"] for k in removes["vars"]["_common_uninstall_core_kinds"]}
    plurals = {kind[1] for kind in cs.OWNED_KINDS}
    missing = sorted(k for k in kinds if PLURALS.get(k) not in plurals)
    assert not missing, f"kinds the uninstall removes but the stamp does not read: {missing}"


def test_the_input_is_every_variable_but_those_of_the_run_itself():
    base = {"datalab_namespace": "a", "keycloak_node_port": 31093, "_preflight_roles": ["keycloak"],
            "ansible_run_tags": ["all"], "ansible_play_batch": ["lab-a"], "playbook_dir": "/x", "omit": "__omit_1"}
    env = {"HOME": "/root", "PATH": "/bin", "K8S_AUTH_CONTEXT": "kind"}
    first = cs.input_digest(base, env)
    # Run-level values and unrelated environment variables do not count...
    assert cs.input_digest(dict(base, ansible_play_batch=["lab-b"], omit="__omit_2", playbook_dir="/y", ansible_limit="lab-a",
                                _preflight_roles=["minio", "keycloak"]), dict(env, PATH="/usr/bin")) == first
    # ...every other variable, HOME, KUBECONFIG and the K8S_AUTH_* / HELM_* settings do.
    assert cs.input_digest(dict(base, keycloak_node_port=31094), env) != first
    assert cs.input_digest(dict(base, jupyterhub_admin_users=["x"]), env) != first
    for name, value in (("HOME", "/home/u"), ("KUBECONFIG", "/k"), ("K8S_AUTH_CONTEXT", "other"), ("HELM_DRIVER", "sql")):
        assert cs.input_digest(base, dict(env, **{name: value})) != first, name


def _obj(kind, name, rv, uid="u1", ns="datalab", api="v1"):
    return {"apiVersion": api, "kind": kind, "metadata": {"namespace": ns, "name": name, "uid": uid,
                                                          "resourceVersion": rv}}


def test_an_object_is_marked_by_its_identity_and_any_write_to_it():
    marks = cs.object_marks([_obj("Secret", "b", "7"), _obj("ConfigMap", "a", "5"),
                             _obj("Secret", cs.STAMP_NAME, "9")], skip={("datalab", cs.STAMP_NAME)})
    assert marks == ["v1/ConfigMap datalab/a u1 5", "v1/Secret datalab/b u1 7"]
    assert cs.object_marks([_obj("Secret", "b", "8")]) != cs.object_marks([_obj("Secret", "b", "7")])
    assert cs.object_marks([_obj("Secret", "b", "7", uid="u2")]) != cs.object_marks([_obj("Secret", "b", "7")])


def test_a_node_is_marked_by_its_addresses_not_its_status_reports():
    node = {"metadata": {"name": "n1", "resourceVersion": "1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.88.0.1"}, {"type": "Hostname", "address": "n1"}]}}
    later = {"metadata": {"name": "n1", "resourceVersion": "99"}, "status": dict(node["status"])}
    assert cs.node_marks([node]) == cs.node_marks([later]) == ["n1 Hostname=n1,InternalIP=10.88.0.1"]
    moved = {"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.88.0.2"}]}}
    assert cs.node_marks([moved]) != cs.node_marks([node])


def test_contributions_merge_and_are_checked_for_their_shape():
    merged = cs.merge_checks({
        "keycloak": {"realm": {"secret": "keycloak-realm", "url": "https://k"}, "files": {"/ca.crt": "d1"},
                     "renew_at": 2000},
        "spark_image": {"probes": [{"argv": ["buildah", "inspect"], "env": {"A": 1}}]},
        "other": {"renew_at": 1000.5},
    })
    assert merged["files"] == {"/ca.crt": "d1"}
    assert merged["probes"] == [{"argv": ["buildah", "inspect"], "env": {"A": "1"}}]
    assert merged["realms"] == [{"secret": "keycloak-realm", "url": "https://k"}]
    assert merged["renew_at"] == 1000.5  # the earliest
    assert merged["unstampable"] == []
    assert cs.merge_checks({"secret_operator": {"stampable": "shared"}})["unstampable"] == ["secret_operator: shared"]
    for bad, message in (([], "must be a dict"), ({"r": []}, "checks of r must be a dict"),
                         ({"r": {"file": {}}}, "unknown keys: file"),
                         ({"r": {"probes": [{"argv": []}]}}, "non-empty argv")):
        with pytest.raises(cs.StampError, match=message):
            cs.merge_checks(bad)


def test_the_first_difference_is_named():
    current = {"input": "i", "nodes": ["n1 InternalIP=1"], "objects": ["v1/Secret datalab/a u1 5"]}
    stamp = dict(current, format=cs.FORMAT, renew_at=1000.0)
    assert cs.difference(stamp, current, now=999) is None
    assert "no stamp" in cs.difference(None, current, now=0)
    assert "another version" in cs.difference(dict(stamp, format=0), current, now=0)
    assert "variables" in cs.difference(dict(stamp, input="j"), current, now=0)
    assert "renewal" in cs.difference(stamp, current, now=1000)
    assert "nodes" in cs.difference(dict(stamp, nodes=[]), current, now=0)
    assert cs.difference(dict(stamp, objects=["v1/Secret datalab/a u1 4"]), current, now=0) == \
        "objects of the install changed: Secret datalab/a"
    assert cs.difference({}, current, now=0) == "the stamp is unreadable or was written by another version of the collection"


def test_changed_objects_are_named_at_most_three():
    before = {f"v1/Secret ns/s{i} u 1" for i in range(5)}
    after = {f"v1/Secret ns/s{i} u 2" for i in range(5)}
    assert cs.describe_marks(before, after) == "Secret ns/s0, Secret ns/s1, Secret ns/s2 and 2 more"
    assert cs.describe_marks(set(), {"apps/v1/Deployment ns/keycloak u 3"}) == "Deployment ns/keycloak"
