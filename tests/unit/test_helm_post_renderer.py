"""The jupyterhub role's Helm post-renderer (roles/jupyterhub/files/post-renderer).

It runs here the way Helm runs it: the shell wrapper, manifests on stdin, the environment the
role's helm task sets. The integration tests show its labels on the objects of a real release.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RENDERER = REPO / "roles" / "jupyterhub" / "files" / "post-renderer" / "helm-post-renderer"
LABELS = {"app.kubernetes.io/part-of": "datalab-notebooks", "app.kubernetes.io/name": "jupyterhub",
          "app.kubernetes.io/instance": "datalab-a"}

MANIFESTS = """\
---
# Source: jupyterhub/templates/hub/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hub
  labels:
    component: hub
    app.kubernetes.io/instance: jupyterhub
    app.kubernetes.io/managed-by: Helm
spec:
  selector:
    matchLabels: {component: hub, release: jupyterhub}
  template:
    metadata:
      labels: {component: hub, release: jupyterhub}
    spec:
      containers: [{name: hub, image: "quay.io/jupyterhub/k8s-hub:4.4.0", args: ["--port=8081"]}]
---
# Source: jupyterhub/templates/empty.yaml
---
apiVersion: v1
kind: Service
metadata:
  name: proxy-public
spec:
  ports: [{port: 80, targetPort: 8000}]
---
apiVersion: v1
kind: ConfigMapList
items:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: one}
    data: {"multi": "line\\nvalue"}
"""


def render(stdin, env):
    return subprocess.run([str(RENDERER)], input=stdin, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **env), check=False)


def good_env(labels=None):
    return {"DATALAB_HELM_PYTHON": sys.executable, "DATALAB_HELM_LABELS": json.dumps(labels or LABELS)}


def test_the_wrapper_is_executable():
    assert os.access(RENDERER, os.X_OK)


def test_every_object_gets_the_install_labels_over_the_charts_own():
    proc = render(MANIFESTS, good_env())
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "ConfigMapList"]
    hub, service, cm_list = docs
    assert hub["metadata"]["labels"] == dict(LABELS, component="hub", **{"app.kubernetes.io/managed-by": "Helm"})
    assert service["metadata"]["labels"] == LABELS
    assert cm_list["items"][0]["metadata"]["labels"] == LABELS
    assert "metadata" not in cm_list  # a List is no object of its own


def test_every_document_opens_with_a_separator_the_first_too():
    """helm diff (with HELM_DIFF_USE_UPGRADE_DRY_RUN) reads Helm's manifest from its first `---`:
    without one before the first object, that object would count as removed on every run."""
    proc = render(MANIFESTS, good_env())
    assert proc.stdout.startswith("---\n")
    assert proc.stdout.count("---\n") == 3


def test_text_that_go_reads_as_a_number_stays_quoted():
    """Z2JH's `checksum/auth-token` is 4 hex characters: `5e34` is text to PyYAML but a number to Go's
    YAML reader, and Helm then refuses the Deployment (annotations must be strings). Found when a
    first install failed with "cannot unmarshal number into ... annotations of type string"."""
    values = ["5e34", "1e10", "12", "0x1f", "1_000", ".5", "-3.0e-2", ".inf", ".NaN", "0o17", "true", "null"]
    manifest = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "c", "annotations": {f"a{i}": v for i, v in enumerate(values)}}, "data": {"plain": "5e3x"}})
    proc = render(manifest, good_env())
    assert proc.returncode == 0, proc.stderr
    for i, value in enumerate(values):
        assert f"a{i}: '{value}'" in proc.stdout, value
    assert "plain: 5e3x" in proc.stdout
    assert yaml.safe_load(proc.stdout)["metadata"]["annotations"] == {f"a{i}": v for i, v in enumerate(values)}


def test_selectors_pod_templates_and_everything_else_stay_as_rendered():
    proc = render(MANIFESTS, good_env())
    out = {d["kind"]: d for d in yaml.safe_load_all(proc.stdout)}
    src = {d["kind"]: d for d in yaml.safe_load_all(MANIFESTS) if d}
    for kind in src:
        strip = [dict(d, metadata={k: v for k, v in d.get("metadata", {}).items() if k != "labels"})
                 for d in (out[kind], src[kind])]
        if kind == "ConfigMapList":
            strip = [dict(d, items=[dict(i, metadata={"name": i["metadata"]["name"]}) for i in d["items"]])
                     for d in strip]
        assert strip[0] == strip[1], kind
    assert out["Deployment"]["spec"]["template"]["metadata"]["labels"] == {"component": "hub", "release": "jupyterhub"}


def test_empty_input_gives_empty_output():
    proc = render("---\n# nothing\n", good_env())
    assert proc.returncode == 0 and proc.stdout.strip() in ("", "[]"), proc.stdout


@pytest.mark.parametrize("env, message", [
    ({"DATALAB_HELM_PYTHON": ""}, "DATALAB_HELM_PYTHON is not set"),
    ({"DATALAB_HELM_LABELS": ""}, "DATALAB_HELM_LABELS is not set"),
    ({"DATALAB_HELM_LABELS": "{not json"}, "DATALAB_HELM_LABELS is not JSON"),
    ({"DATALAB_HELM_LABELS": json.dumps({"a": 1})}, "must be a JSON object of strings"),
    ({"DATALAB_HELM_LABELS": json.dumps(["a"])}, "must be a JSON object of strings"),
])
def test_bad_environment_fails_with_a_message_that_names_it(env, message):
    proc = render(MANIFESTS, dict(good_env(), **env))
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stdout == ""


def test_output_that_is_not_yaml_is_refused():
    proc = render("kind: [unclosed\n", good_env())
    assert proc.returncode == 2
    assert "the chart's output is not YAML" in proc.stderr
