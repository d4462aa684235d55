"""inventories/production pulls nothing from the internet: every image of every pod the real charts render
(Zero-to-JupyterHub 4.4.0, Stackable secret-operator and commons-operator 26.3.0, from DATALAB_UPSTREAM_CHARTS)
with the values the roles make from that inventory names the internal registry.

The values come from the roles themselves (the `values` entry point of jupyterhub, the release values of
secret_operator), on the controller; the charts are rendered with `helm template` (the test bed's Helm), once
as the inventory configures them and once with every optional part of Z2JH turned on (pre-puller, user
scheduler and placeholders, autohttps), whose images the inventory mirrors too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.realplatform import upstream_chart

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PRODUCTION = REPO / "inventories" / "production" / "group_vars" / "notebook_platform"
REGISTRY = "registry.example.com/"
CHARTS = upstream_chart().parent
Z2JH = CHARTS / "jupyterhub-4.4.0.tgz"
STACKABLE = {"secret-operator": CHARTS / "secret-operator-26.3.0.tgz",
             "commons-operator": CHARTS / "commons-operator-26.3.0.tgz"}
POD_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "Job", "Pod", "ReplicaSet"}
ALL_PARTS_ON = {
    "prePuller": {"hook": {"enabled": True}, "continuous": {"enabled": True}},
    "scheduling": {"userScheduler": {"enabled": True}, "userPlaceholder": {"enabled": True, "replicas": 1}},
    "proxy": {"https": {"enabled": True, "type": "letsencrypt", "hosts": ["jupyter.example.com"],
                        "letsencrypt": {"contactEmail": "ops@example.com"}}},
}


def ansible(playbook, inventory, tmp_path, *extra):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(playbook),
                           "-e", f"render_output_dir={tmp_path}", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def merge(base, over):
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def pod_images(helm, chart, values, tmp_path, name):
    """{"<Kind>/<name> <container>": image} for every container and init container the chart renders."""
    values_file = tmp_path / f"{name}.values.json"
    values_file.write_text(json.dumps(values))
    out = subprocess.run([helm, "template", "probe", str(chart), "--namespace", "prod-ns", "--kube-version", "1.34.0",
                          "--values", str(values_file)], capture_output=True, text=True, check=True).stdout
    images = {}
    for doc in yaml.safe_load_all(out):
        if not doc or doc.get("kind") not in POD_KINDS:
            continue
        spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
        for container in spec.get("initContainers", []) + spec.get("containers", []):
            images[f"{doc['kind']}/{doc['metadata']['name']} {container['name']}"] = container["image"]
    return images


@pytest.fixture(scope="module")
def helm(cluster):
    return cluster.helm


@pytest.mark.skipif(not Z2JH.is_file(), reason=f"{Z2JH} is not on this machine (DATALAB_UPSTREAM_CHARTS)")
def test_production_jupyterhub_chart_pulls_only_from_the_internal_registry(helm, tmp_path):
    host_vars = {"datalab_namespace": "prod-ns", "datalab_hub_node_port": 31095, "datalab_keycloak_realm": "demo",
                 "datalab_node_selector": {}, "datalab_tolerations": [], "_jupyterhub_oauth_client_checksum": "0",
                 "datalab_hub_callback_url": "https://jupyter.example.com/hub/oauth_callback"}
    for name in ("main.yml", "spark_image.yml", "jupyterhub.yml"):
        host_vars.update(yaml.safe_load((PRODUCTION / name).read_text()))
    host_vars.pop("datalab_kubeconfig")
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"production": host_vars}}}))
    ansible(REPO / "tests" / "unit" / "playbooks" / "render_jupyterhub_values.yml", inventory, tmp_path)
    values = json.loads((tmp_path / "production.json").read_text())

    as_configured = pod_images(helm, Z2JH, values, tmp_path, "configured")
    assert {"Deployment/hub hub", "Deployment/proxy chp"} <= set(as_configured), as_configured
    everything = pod_images(helm, Z2JH, merge(values, ALL_PARTS_ON), tmp_path, "everything")
    # the optional parts are really there: pre-puller (awaiter, pause), user scheduler, placeholders, autohttps
    kinds = {key.split(" ")[0] for key in everything}
    assert {"DaemonSet/hook-image-puller", "DaemonSet/continuous-image-puller", "Job/hook-image-awaiter",
            "Deployment/user-scheduler", "StatefulSet/user-placeholder", "Deployment/autohttps"} <= kinds, kinds
    elsewhere = {key: image for key, image in {**as_configured, **everything}.items() if not image.startswith(REGISTRY)}
    assert not elsewhere, elsewhere
    # the user servers' images are the profiles' (values only: KubeSpawner makes those pods at run time)
    profile = values["singleuser"]["profileList"][0]["profile_options"]["image"]["choices"]
    assert all(c["kubespawner_override"]["image"].startswith(REGISTRY) for c in profile.values())
    assert values["singleuser"]["image"]["name"].startswith(REGISTRY)


@pytest.mark.skipif(not all(p.is_file() for p in STACKABLE.values()),
                    reason=f"the Stackable charts are not in {CHARTS} (DATALAB_UPSTREAM_CHARTS)")
def test_production_stackable_charts_pull_only_from_the_internal_registry(helm, tmp_path):
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"production": {}}}}))
    ansible(REPO / "tests" / "unit" / "playbooks" / "render_secret_operator_values.yml", inventory, tmp_path,
            "-e", "@" + str(PRODUCTION / "secret_operator.yml"), "-e", "datalab_namespace=prod-ns")
    values = json.loads((tmp_path / "production.json").read_text())
    for release, chart in STACKABLE.items():
        images = pod_images(helm, chart, values[release], tmp_path, release)
        assert images, f"{release}: no pods rendered"
        elsewhere = {key: image for key, image in images.items() if not image.startswith(REGISTRY)}
        assert not elsewhere, elsewhere
    csi = pod_images(helm, STACKABLE["secret-operator"], values["secret-operator"], tmp_path, "csi")
    assert {image.rsplit("/", 1)[-1] for image in csi.values()} >= {
        "secret-operator:26.3.0", "csi-provisioner:v5.3.0", "csi-node-driver-registrar:v2.15.0"}, csi
