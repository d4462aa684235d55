"""The action plugin datalab.notebooks.k8s_apply against the test bed's real API server.

It runs for real, through ansible-playbook (JSON callback), on templates of a temporary playbook
directory: first apply, a rerun that starts no module, drift someone made by hand (a removed label
is restored, an annotation another manager added is kept), a changed value, check mode, deletion,
and the errors it reports before it writes anything.
"""
from __future__ import annotations

import json
import sys
import uuid

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.ansible_run import localhost_task

pytestmark = pytest.mark.integration


CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {{ ns }}
  labels:
    app.kubernetes.io/name: demo
    app.kubernetes.io/part-of: datalab-notebooks
data:
  greeting: "{{ greeting }}"
"""

SERVICE = """apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: {{ ns }}
spec:
  selector:
    app: web
  ports:
    - name: http
      port: 80
      protocol: TCP  # the key of a Service port is (port, protocol): a manifest must name both to match
      targetPort: 8080
"""

TWO_DOCUMENTS = CONFIGMAP + "---\n" + CONFIGMAP


@pytest.fixture()
def ns(cluster):
    api = config.new_client_from_config(config_file=cluster.kubeconfig)
    core = client.CoreV1Api(api)
    name = "k8s-apply-" + uuid.uuid4().hex[:6]
    core.create_namespace({"metadata": {"name": name}})
    yield {"name": name, "core": core, "kubeconfig": cluster.kubeconfig}
    core.delete_namespace(name)


def _run(ns, tmp_path, objects, check=False, extra_vars=None, no_log=False, auth=None):
    templates = tmp_path / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "configmap.yaml.j2").write_text(CONFIGMAP)
    (templates / "service.yaml.j2").write_text(SERVICE)
    (templates / "two.yaml.j2").write_text(TWO_DOCUMENTS)
    task = {"name": "apply", "datalab.notebooks.k8s_apply": {
        "auth": auth if auth is not None else {"kubeconfig": ns["kubeconfig"]}, "objects": objects},
        "ignore_errors": True, "no_log": no_log}
    play = {"hosts": "localhost", "gather_facts": False,
            "vars": dict({"ansible_python_interpreter": sys.executable, "ns": ns["name"], "greeting": "hello"},
                         **(extra_vars or {})),
            "tasks": [task]}
    return localhost_task(tmp_path, play, *(["--check"] if check else []))


def _actions(result):
    return [(o["kind"], o["action"], o["changed"]) for o in result["objects"]]


def _configmap(ns):
    return ns["core"].read_namespaced_config_map("settings", ns["name"])


BOTH = [{"template": "configmap.yaml.j2"}, {"template": "service.yaml.j2"}]


def test_apply_then_a_rerun_starts_no_module(ns, tmp_path):
    first = _run(ns, tmp_path, BOTH)
    assert first.get("failed") is not True, first
    assert first["changed"] is True
    assert _actions(first) == [("ConfigMap", "apply", True), ("Service", "apply", True)]
    assert _configmap(ns).data == {"greeting": "hello"}
    managers = {(m.manager, m.operation) for m in _configmap(ns).metadata.managed_fields}
    assert ("datalab-notebooks", "Apply") in managers

    rerun = _run(ns, tmp_path, BOTH)
    assert rerun["changed"] is False
    assert _actions(rerun) == [("ConfigMap", "unchanged", False), ("Service", "unchanged", False)]
    assert rerun["objects"][0]["result"]["data"] == {"greeting": "hello"}


def test_drift_is_repaired_and_fields_of_others_are_kept(ns, tmp_path):
    _run(ns, tmp_path, BOTH)
    core, name = ns["core"], ns["name"]
    # By hand: a label removed (JSON patch, manager "kubectl-edit"), an annotation added by someone else.
    core.patch_namespaced_config_map(
        "settings", name, [{"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1name"}],
        field_manager="kubectl-edit")
    core.patch_namespaced_config_map("settings", name, {"metadata": {"annotations": {"team": "data"}}},
                                     field_manager="someone-else")
    assert "app.kubernetes.io/name" not in _configmap(ns).metadata.labels

    repaired = _run(ns, tmp_path, BOTH)
    assert _actions(repaired) == [("ConfigMap", "apply", True), ("Service", "unchanged", False)]
    live = _configmap(ns)
    assert live.metadata.labels["app.kubernetes.io/name"] == "demo"
    assert live.metadata.annotations == {"team": "data"}
    assert _run(ns, tmp_path, BOTH)["changed"] is False

    # A value someone else set on a field the template owns is taken back (force_conflicts).
    core.patch_namespaced_config_map("settings", name, {"data": {"greeting": "changed by hand"}},
                                     field_manager="someone-else")
    taken_back = _run(ns, tmp_path, BOTH)
    assert _actions(taken_back)[0] == ("ConfigMap", "apply", True)
    assert _configmap(ns).data == {"greeting": "hello"}


def test_a_changed_value_check_mode_and_deletion(ns, tmp_path):
    _run(ns, tmp_path, BOTH)
    preview = _run(ns, tmp_path, BOTH, check=True, extra_vars={"greeting": "bonjour"})
    assert _actions(preview) == [("ConfigMap", "apply", True), ("Service", "unchanged", False)]
    assert _configmap(ns).data == {"greeting": "hello"}, "check mode wrote to the cluster"

    changed = _run(ns, tmp_path, BOTH, extra_vars={"greeting": "bonjour"})
    assert _actions(changed)[0] == ("ConfigMap", "apply", True)
    assert _configmap(ns).data == {"greeting": "bonjour"}

    gone = [{"template": "configmap.yaml.j2", "state": "absent"}, {"template": "service.yaml.j2", "state": "absent"}]
    deleted = _run(ns, tmp_path, gone)
    assert _actions(deleted) == [("ConfigMap", "delete", True), ("Service", "delete", True)]
    with pytest.raises(ApiException) as err:
        _configmap(ns)
    assert err.value.status == 404
    assert _actions(_run(ns, tmp_path, gone)) == [("ConfigMap", "absent", False), ("Service", "absent", False)]


def test_no_log_hides_the_objects(ns, tmp_path):
    result = _run(ns, tmp_path, BOTH, no_log=True, extra_vars={"greeting": "a secret value"})
    assert "a secret value" not in json.dumps(result)
    assert _configmap(ns).data == {"greeting": "a secret value"}


@pytest.mark.parametrize("objects, auth, message", [
    ([{"template": "missing.yaml.j2"}], None, "object 1 (missing.yaml.j2): the template file missing.yaml.j2 could not be found"),
    ([{"template": "configmap.yaml.j2"}, {"template": "two.yaml.j2"}], None,
     "object 2 (two.yaml.j2): expected one object, got 2 YAML documents; nothing was applied"),
    ([{"template": "configmap.yaml.j2", "definition": {"kind": "ConfigMap"}}], None, "mutually exclusive"),
    ([{"template": "configmap.yaml.j2"}], {"password": "x"}, "unknown connection option(s) in auth: password"),
])
def test_errors_name_the_object_and_write_nothing(ns, tmp_path, objects, auth, message):
    auth = dict({"kubeconfig": ns["kubeconfig"]}, **auth) if auth else None
    result = _run(ns, tmp_path, objects, auth=auth)
    assert result["failed"] is True
    assert message in result["msg"], result["msg"]
    with pytest.raises(ApiException) as err:
        _configmap(ns)
    assert err.value.status == 404
