"""The jupyterhub role's own manifests (RBAC, notebook ConfigMap, admission policy), rendered
without a cluster and checked with `kubernetes-validate --strict` for the pinned Kubernetes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLAYBOOK = REPO / "tests" / "unit" / "playbooks" / "render_jupyterhub_manifests.yml"
NOTEBOOK = REPO / "roles" / "jupyterhub" / "files" / "notebooks" / "process-s3.ipynb"
KUBERNETES = "1.34.0"
LABELS = ("app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
          "app.kubernetes.io/name", "app.kubernetes.io/instance")
CASES = {"self_signed": {}, "secret_operator": {}}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    work = tmp_path_factory.mktemp("manifests")
    hosts = {tls: {"datalab_namespace": "lab-unit", "datalab_tls_provider": tls} for tls in CASES}
    (work / "inventory.json").write_text(json.dumps({"all": {"hosts": hosts}}))
    extra = {"render_output_dir": str(work), "_jupyterhub_notebooks": {"process-s3.ipynb": NOTEBOOK.read_text()}}
    (work / "extra.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(work / "inventory.json"), str(PLAYBOOK),
                           "-e", f"@{work / 'extra.json'}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return {tls: work / f"{tls}.yaml" for tls in CASES}


def docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("tls", sorted(CASES))
def test_manifests_pass_strict_validation(rendered, tls):
    proc = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", KUBERNETES, str(rendered[tls])],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("tls", sorted(CASES))
def test_one_kind_per_template_with_the_install_labels(rendered, tls):
    kinds = []
    for doc in docs(rendered[tls]):
        kinds.append(doc["kind"])
        labels = doc["metadata"]["labels"]
        assert all(k in labels for k in LABELS), (doc["kind"], labels)
        assert labels["app.kubernetes.io/instance"] == "lab-unit"
        if doc["kind"].startswith("ValidatingAdmissionPolicy"):
            # cluster-scoped: the name carries the namespace, so two installs never collide
            assert "namespace" not in doc["metadata"]
            assert doc["metadata"]["name"] == "datalab-lab-unit-spark-pods"
        else:
            assert doc["metadata"]["namespace"] == "lab-unit"
    assert kinds == ["ServiceAccount", "Role", "RoleBinding", "ConfigMap",
                     "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]


@pytest.mark.parametrize("tls", sorted(CASES))
def test_policy_scope_and_allow_lists(rendered, tls):
    policy, binding = [d for d in docs(rendered[tls]) if d["kind"].startswith("ValidatingAdmissionPolicy")]
    selector = {"matchLabels": {"kubernetes.io/metadata.name": "lab-unit"}}
    assert policy["spec"]["matchConstraints"]["namespaceSelector"] == selector
    assert binding["spec"]["matchResources"]["namespaceSelector"] == selector
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert json.loads(variables["allowedSecrets"]) == ["minio-s3-credentials"]
    allowed_types = variables["disallowedVolumes"]
    for volume_type in ("configMap", "secret", "emptyDir", "projected", "persistentVolumeClaim", "downwardAPI"):
        assert f"has(v.{volume_type})" in allowed_types
    assert "has(v.hostPath)" not in allowed_types
    # the CA reaches user servers as a ConfigMap with either provider: no ephemeral volume is allowed
    assert "has(v.ephemeral)" not in allowed_types
    condition = policy["spec"]["matchConditions"][0]["expression"]
    assert "'spark'" in condition and "system:serviceaccount:lab-unit:spark" in condition


def test_notebook_configmap_carries_the_collection_notebook(rendered):
    [cm] = [d for d in docs(rendered["self_signed"]) if d["kind"] == "ConfigMap"]
    assert cm["metadata"]["name"] == "jupyterhub-notebooks"
    assert json.loads(cm["data"]["process-s3.ipynb"]) == json.loads(NOTEBOOK.read_text())
