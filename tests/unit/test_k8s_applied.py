"""The test plugin datalab.notebooks.k8s_applied on plain API dicts (no cluster).

The shapes of `managedFields` are those the API server (Kubernetes 1.34, the test bed) wrote for
the collection's own objects after a server-side apply by field manager datalab-notebooks.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

# The checkout is the collection through the link `make setup` creates.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.datalab.notebooks.plugins.test.k8s_applied import (  # noqa: E402
    TestModule as JinjaTests,
)
from ansible_collections.datalab.notebooks.plugins.test.k8s_applied import k8s_applied  # noqa: E402

LABELS = {"app.kubernetes.io/instance": "demo", "app.kubernetes.io/name": "keycloak"}
OWNED_LABELS = {"f:labels": {"f:app.kubernetes.io/instance": {}, "f:app.kubernetes.io/name": {}}}


def managed(fields, manager="datalab-notebooks", operation="Apply", api_version="v1", **extra):
    return dict({"apiVersion": api_version, "fieldsType": "FieldsV1", "fieldsV1": fields, "manager": manager,
                 "operation": operation, "time": "2026-11-25T21:06:36Z"}, **extra)


def secret_manifest(data=None, labels=None):
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "keycloak-admin", "namespace": "demo", "labels": dict(labels or LABELS)},
            "type": "Opaque", "data": dict(data or {"username": "YWRtaW4=", "password": "c2VjcmV0"})}


def secret_live(data=None, owned_data=None, labels=None, managed_fields=None):
    data = dict(data or {"username": "YWRtaW4=", "password": "c2VjcmV0"})
    owned_data = owned_data if owned_data is not None else list(data)
    fields = {"f:data": {"f:" + k: {} for k in owned_data}, "f:metadata": OWNED_LABELS, "f:type": {}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data,
            "metadata": {"name": "keycloak-admin", "namespace": "demo", "uid": "u-1", "resourceVersion": "2097",
                         "creationTimestamp": "2026-11-25T21:06:36Z", "labels": dict(labels or LABELS),
                         "managedFields": managed_fields if managed_fields is not None else [managed(fields)]}}


def deployment_manifest(image="quay.io/keycloak/keycloak:26.5.5", limits=True, annotations=True):
    resources = {"requests": {"cpu": "500m", "memory": "1Gi"}}
    if limits:
        resources["limits"] = {"memory": "2Gi"}
    template_meta = {"labels": dict(LABELS)}
    if annotations:
        template_meta["annotations"] = {"datalab.notebooks/keystore-checksum": "abc"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "keycloak", "namespace": "demo", "labels": dict(LABELS)},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "containers": [{
                        "name": "keycloak", "image": image, "args": ["start", "--import-realm"],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"name": "https", "containerPort": 8443, "protocol": "TCP"}],
                        "resources": resources,
                        "securityContext": {"capabilities": {"drop": ["ALL"]}},
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def deployment_live(manifest=None, owned_from=None, ready=True):
    """The object an apply of `owned_from` (default: `manifest`) left, then `manifest`'s values, plus defaults."""
    manifest = manifest or deployment_manifest()
    owner = owned_from or manifest
    container = owner["spec"]["template"]["spec"]["containers"][0]
    template_meta = {"f:labels": {"f:" + k: {} for k in LABELS}}
    if "annotations" in owner["spec"]["template"]["metadata"]:
        template_meta["f:annotations"] = {"f:datalab.notebooks/keystore-checksum": {}}
    fields = {
        "f:metadata": OWNED_LABELS,
        "f:spec": {
            "f:replicas": {}, "f:selector": {}, "f:strategy": {"f:type": {}},
            "f:template": {
                "f:metadata": template_meta,
                "f:spec": {
                    "f:containers": {'k:{"name":"keycloak"}': {
                        ".": {}, "f:args": {}, "f:image": {}, "f:name": {},
                        "f:env": {'k:{"name":"%s"}' % e["name"]: {".": {}, "f:name": {}, "f:value": {}}
                                  for e in container["env"]},
                        "f:ports": {'k:{"containerPort":8443,"protocol":"TCP"}': {
                            ".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}},
                        "f:resources": {"f:" + k: {"f:" + r: {} for r in v} for k, v in container["resources"].items()},
                        "f:securityContext": {"f:capabilities": {"f:drop": {}}},
                    }},
                    "f:volumes": {'k:{"name":"data"}': {".": {}, "f:emptyDir": {}, "f:name": {}}},
                },
            },
        },
    }
    live = copy.deepcopy(manifest)
    live["metadata"].update(uid="u-2", generation=3, resourceVersion="4242",
                            managedFields=[managed(fields, api_version="apps/v1"),
                                           managed({"f:status": {}}, manager="kube-controller-manager",
                                                   operation="Update", api_version="apps/v1", subresource="status")])
    live["spec"]["revisionHistoryLimit"] = 10  # defaults the server adds
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    live["spec"]["template"]["spec"]["dnsPolicy"] = "ClusterFirst"
    live["status"] = ({"observedGeneration": 3, "replicas": 1, "availableReplicas": 1, "readyReplicas": 1,
                       "updatedReplicas": 1} if ready else
                      {"observedGeneration": 3, "replicas": 1, "unavailableReplicas": 1, "updatedReplicas": 1})
    return live


# --- Secrets and the basics ---------------------------------------------------------------------

def test_registered_as_a_jinja_test():
    assert JinjaTests().tests() == {"k8s_applied": k8s_applied}


def test_an_object_left_as_the_last_apply_made_it_is_applied():
    assert k8s_applied(secret_manifest(), [secret_live()])
    assert k8s_applied(secret_manifest(), secret_live())  # lookup() instead of query()


def test_a_missing_object_is_not_applied():
    for live in ([], {}, None):
        assert not k8s_applied(secret_manifest(), live)


def test_the_manifest_may_be_the_rendered_template():
    text = ("apiVersion: v1\nkind: Secret\nmetadata:\n  name: keycloak-admin\n  namespace: demo\n"
            "  labels: {\"app.kubernetes.io/instance\": \"demo\", \"app.kubernetes.io/name\": \"keycloak\"}\n"
            "type: Opaque\ndata:\n  \"password\": \"c2VjcmV0\"\n  \"username\": \"YWRtaW4=\"\n")
    assert k8s_applied(text, [secret_live()])


def test_a_changed_value_is_not_applied():
    assert not k8s_applied(secret_manifest(data={"username": "YWRtaW4=", "password": "bmV3"}), [secret_live()])


def test_a_new_key_is_not_applied():
    data = {"username": "YWRtaW4=", "password": "c2VjcmV0", "extra": "eA=="}
    assert not k8s_applied(secret_manifest(data=data), [secret_live()])


def test_a_key_the_manifest_no_longer_sets_would_be_dropped():
    data = {"username": "YWRtaW4=", "password": "c2VjcmV0", "old": "b2xk"}
    assert not k8s_applied(secret_manifest(), [secret_live(data=data)])


def test_a_value_someone_else_set_would_be_taken_over():
    # Same value, but another manager owns the key: the apply takes it over (managedFields change).
    live = secret_live(owned_data=["username"])
    assert not k8s_applied(secret_manifest(), [live])


def test_fields_set_by_others_and_not_in_the_manifest_do_not_matter():
    live = secret_live()
    live["metadata"]["annotations"] = {"note": "kept"}
    live["metadata"]["managedFields"].append(managed({"f:metadata": {"f:annotations": {"f:note": {}}}},
                                                     manager="kubectl-annotate", operation="Update"))
    assert k8s_applied(secret_manifest(), [live])


def test_a_removed_label_is_not_applied():
    live = secret_live(labels={"app.kubernetes.io/instance": "demo"})
    assert not k8s_applied(secret_manifest(), [live])


def test_an_object_being_deleted_is_not_applied():
    live = secret_live()
    live["metadata"]["deletionTimestamp"] = "2026-11-25T22:00:00Z"
    assert not k8s_applied(secret_manifest(), [live])


@pytest.mark.parametrize("entries", [
    [],
    [managed({"f:data": {}}, manager="kubectl", operation="Update")],
    [managed({}, operation="Update")],
    [managed({}, api_version="v2")],
])
def test_without_an_apply_by_the_field_manager_nothing_is_applied(entries):
    assert not k8s_applied(secret_manifest(), [secret_live(managed_fields=entries)])


def test_another_field_manager_name():
    assert not k8s_applied(secret_manifest(), [secret_live()], field_manager="someone-else")


def test_another_object_is_not_applied():
    other = secret_manifest()
    other["metadata"]["name"] = "other"
    assert not k8s_applied(other, [secret_live()])
    other = secret_manifest()
    other["kind"] = "ConfigMap"
    assert not k8s_applied(other, [secret_live()])


def test_bad_arguments_are_refused():
    from ansible.errors import AnsibleFilterError
    with pytest.raises(AnsibleFilterError):
        k8s_applied("a: 1\n---\nb: 2\n", [])
    with pytest.raises(AnsibleFilterError):
        k8s_applied(["not", "a", "dict"], [])
    with pytest.raises(AnsibleFilterError):
        k8s_applied(secret_manifest(), [secret_live(), secret_live()])


# --- Deployments: associative lists, atomic fields, readiness -----------------------------------

def test_deployment_as_applied_with_server_defaults():
    assert k8s_applied(deployment_manifest(), [deployment_live()])
    assert k8s_applied(deployment_manifest(), [deployment_live()], ready=True)


def test_deployment_not_ready_is_not_applied_when_ready_is_asked_for():
    live = deployment_live(ready=False)
    assert k8s_applied(deployment_manifest(), [live])
    assert not k8s_applied(deployment_manifest(), [live], ready=True)


def test_deployment_rollout_not_observed_yet_is_not_ready():
    live = deployment_live()
    live["metadata"]["generation"] = 4
    assert not k8s_applied(deployment_manifest(), [live], ready=True)


def test_new_image_is_not_applied():
    assert not k8s_applied(deployment_manifest(image="quay.io/keycloak/keycloak:26.5.6"), [deployment_live()])


def test_a_removed_limit_would_be_dropped_by_the_apply():
    # The manifest no longer sets resources.limits, which the last apply set: the apply removes it.
    live = deployment_live(manifest=deployment_manifest(), owned_from=deployment_manifest())
    assert not k8s_applied(deployment_manifest(limits=False), [live])


def test_a_removed_annotation_would_be_dropped_by_the_apply():
    assert not k8s_applied(deployment_manifest(annotations=False), [deployment_live()])


def test_atomic_lists_must_be_equal():
    manifest = deployment_manifest()
    manifest["spec"]["template"]["spec"]["containers"][0]["args"] = ["start"]
    assert not k8s_applied(manifest, [deployment_live()])


def test_atomic_maps_must_be_equal_not_only_contain_the_manifest():
    # spec.selector is atomic: a key the server or an older apply left there would be replaced.
    live = deployment_live()
    live["spec"]["selector"]["matchLabels"]["extra"] = "x"
    assert not k8s_applied(deployment_manifest(), [live])


def test_associative_list_element_values_and_members():
    manifest = deployment_manifest()
    manifest["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = "3"
    assert not k8s_applied(manifest, [deployment_live()])
    manifest = deployment_manifest()
    manifest["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "C", "value": "4"})
    assert not k8s_applied(manifest, [deployment_live()])
    manifest = deployment_manifest()
    del manifest["spec"]["template"]["spec"]["containers"][0]["env"][1]
    assert not k8s_applied(manifest, [deployment_live(owned_from=deployment_manifest())])


def test_empty_maps_are_leaves():
    live = deployment_live()
    assert live["spec"]["template"]["spec"]["volumes"][0] == {"name": "data", "emptyDir": {}}
    assert k8s_applied(deployment_manifest(), [live])


def test_set_lists():
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "finalizers": ["a/b"]}}
    live = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "finalizers": ["a/b"],
                         "managedFields": [managed({"f:metadata": {"f:finalizers": {".": {}, 'v:"a/b"': {}}}})]}}
    assert k8s_applied(manifest, [live])
    manifest["metadata"]["finalizers"] = ["a/b", "c/d"]
    assert not k8s_applied(manifest, [live])
    manifest["metadata"]["finalizers"] = []
    assert not k8s_applied(manifest, [live])


def test_atomic_list_elements_must_be_equal():
    # ValidatingAdmissionPolicy variables: each element is owned as a whole.
    manifest = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": "p"}, "spec": {"variables": [{"name": "a", "expression": "1"}]}}
    fields = {"f:spec": {"f:variables": {'k:{"name":"a"}': {}}}}
    live = copy.deepcopy(manifest)
    live["metadata"]["managedFields"] = [managed(fields, api_version="admissionregistration.k8s.io/v1")]
    assert k8s_applied(manifest, [live])
    live["spec"]["variables"][0]["expression"] = "2"
    assert not k8s_applied(manifest, [live])


def test_other_kinds_need_only_exist_to_be_ready():
    assert k8s_applied(secret_manifest(), [secret_live()], ready=True)


def test_zero_values_the_api_server_omits():
    # An env entry with value "" comes back without `value`; an apply would not change it.
    manifest = deployment_manifest()
    manifest["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = ""
    live = deployment_live(manifest=manifest)
    del live["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"]
    assert k8s_applied(manifest, [live])
    # ... but a value the object lacks is not a zero value the manifest may drop.
    manifest["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = "x"
    assert not k8s_applied(manifest, [live])
    # Inside atomic fields, too: a zero value may be missing, nothing else may differ.
    manifest = deployment_manifest()
    manifest["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = []
    fields = deployment_live()["metadata"]["managedFields"]
    live = deployment_live()
    fields[0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"keycloak"}'][
        "f:securityContext"]["f:capabilities"] = {}
    live["metadata"]["managedFields"] = fields
    assert k8s_applied(manifest, [live])
    live["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    assert not k8s_applied(manifest, [live])


# --- the action plugin's decision (plugins/module_utils/k8s_apply_spec.py) ------------------------

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator  # noqa: E402

from ansible_collections.datalab.notebooks.plugins.module_utils import k8s_apply_spec as spec  # noqa: E402


def test_plan_skips_only_what_an_apply_would_not_change():
    assert spec.plan(secret_manifest(), [secret_live()]) == "unchanged"
    assert spec.plan(secret_manifest(), []) == "apply"
    assert spec.plan(secret_manifest(data={"username": "YWRtaW4=", "password": "bmV3"}), [secret_live()]) == "apply"
    assert spec.plan(secret_manifest(), [secret_live()], field_manager="someone-else") == "apply"


def test_plan_with_wait_applies_a_deployment_that_is_not_ready():
    assert spec.plan(deployment_manifest(), [deployment_live()], wait=True) == "unchanged"
    assert spec.plan(deployment_manifest(), [deployment_live(ready=False)], wait=False) == "unchanged"
    assert spec.plan(deployment_manifest(), [deployment_live(ready=False)], wait=True) == "apply"


def test_plan_absent_deletes_only_what_exists():
    assert spec.plan(secret_manifest(), [secret_live()], state="absent") == "delete"
    assert spec.plan(secret_manifest(), [], state="absent") == "absent"
    with pytest.raises(ValueError, match="at most one live object, got 2"):
        spec.plan(secret_manifest(), [secret_live(), secret_live()])


def test_results_leave_out_managed_fields():
    live = secret_live()
    out = spec.without_managed_fields(live)
    assert "managedFields" not in out["metadata"] and out["metadata"]["name"] == "keycloak-admin"
    assert "managedFields" in live["metadata"], "the input is left as it is"


def test_parse_manifest_takes_one_object_and_names_what_is_missing():
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: demo\n"
    assert spec.parse_manifest(text)["metadata"]["name"] == "a"
    assert spec.identity(spec.parse_manifest(text)) == {"api_version": "v1", "kind": "ConfigMap", "name": "a",
                                                        "namespace": "demo"}
    assert spec.describe(spec.parse_manifest(text)) == "ConfigMap a in namespace demo"
    with pytest.raises(ValueError, match="expected one object, got 2 YAML documents"):
        spec.parse_manifest(text + "---\n" + text)
    with pytest.raises(ValueError, match="has no kind, metadata.name"):
        spec.parse_manifest("apiVersion: v1\nmetadata: {}\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        spec.parse_manifest("a: [b\n")
    with pytest.raises(ValueError, match="expected an object"):
        spec.parse_manifest("- a\n")


def test_arguments_need_exactly_one_source_per_object():
    check = ArgumentSpecValidator(spec.APPLY_ARG_SPEC).validate
    ok = check({"objects": [{"template": "a.yaml.j2"}, {"definition": {"kind": "x"}, "state": "absent"}]})
    assert not ok.error_messages
    assert ok.validated_parameters["objects"][0]["state"] == "present"
    assert ok.validated_parameters["field_manager"] == "datalab-notebooks"
    assert check({"objects": [{"state": "present"}]}).error_messages
    assert check({"objects": [{"template": "a", "definition": {}}]}).error_messages
    assert check({"objects": [{"template": "a", "state": "gone"}]}).error_messages
    assert spec.check_auth({"kubeconfig": "/k", "context": ""}) == {"kubeconfig": "/k"}
    with pytest.raises(ValueError, match="unknown connection option.*password"):
        spec.check_auth({"password": "x"})
