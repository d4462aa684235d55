"""Snippet 02 (the Spark driver Service hook) with a real KubeSpawner on the real API server.

Run once per hub environment the e2e set-up builds (tools/e2e_setup.py): `hub50` (KubeSpawner
7.0.0, what the Z2JH 4.4.0 hub image ships) and `hub-current` (KubeSpawner 7.1.x, whose
get_service_manifest takes an extra argument). Where the venvs are comes from the set-up itself
(`python -m tools.e2e_setup paths`, JSON), never from a directory name worked out here. The set-up
builds what is missing (`make test` runs it before its first pytest layer, so this costs nothing
there); when it cannot complete, the tests fail with its message: a fresh machine runs exactly
the tests a warm one does.

In a scratch namespace: the snippet is loaded into a traitlets Config as the chart does, a
KubeSpawner is made from that Config, and its after_pod_created_hook is called for a pod:
the Service appears (headless, ports 4040/2222/7777, owned by the pod), a second call keeps it
untouched, a new pod of the same name takes it over, and deleting the pod lets the garbage
collector remove it. Only the API server on loopback is contacted.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SNIPPET = REPO / "roles" / "jupyterhub" / "files" / "hub-config" / "02-spark-driver-service.py"

CHECK = r'''
import asyncio, json, os, sys, time
from traitlets.config import Config
from kubernetes_asyncio import client as k8s
from kubespawner import KubeSpawner

ns, snippet = sys.argv[1], sys.argv[2]
# Labels of a user pod, with values no real hub uses (other tests clean up user pods by label).
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jupyter-hook", "labels": {
    "app": "jupyterhub", "release": "hook-test", "component": "singleuser-server",
    "hub.jupyter.org/username": "hook-test-user", "hub.jupyter.org/servername": ""}},
    "spec": {"containers": [{"name": "notebook", "image": "quay.io/jupyter/pyspark-notebook:spark-3.5.2"}]}}


async def main():
    c = Config()
    exec(compile(open(snippet).read(), "hub.extraConfig.02-spark-driver-service", "exec"), {"c": c})
    spawner = KubeSpawner(_mock=True, namespace=ns, config=c)
    api, out = spawner.api, {}

    async def new_pod():
        await api.create_namespaced_pod(ns, POD)
        return api.api_client.sanitize_for_serialization(await api.read_namespaced_pod("jupyter-hook", ns))

    async def delete_pod():
        try:
            await api.delete_namespaced_pod("jupyter-hook", ns, grace_period_seconds=0)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise

    async def service():
        return api.api_client.sanitize_for_serialization(await api.read_namespaced_service("jupyter-hook", ns))

    pod = await new_pod()
    await spawner.after_pod_created_hook(spawner, pod)
    svc = await service()
    out["created"] = {"clusterIP": svc["spec"]["clusterIP"], "owner": svc["metadata"]["ownerReferences"][0]["uid"],
                      "pod": pod["metadata"]["uid"], "ports": sorted(p["port"] for p in svc["spec"]["ports"]),
                      "selector": svc["spec"]["selector"]}
    version = svc["metadata"]["resourceVersion"]
    await spawner.after_pod_created_hook(spawner, pod)
    out["untouched"] = (await service())["metadata"]["resourceVersion"] == version

    await delete_pod()
    for _ in range(60):
        try:
            await api.read_namespaced_pod("jupyter-hook", ns)
            await asyncio.sleep(0.5)
        except k8s.ApiException:
            break
    # KWOK finishes a deletion by name: give it a moment, or it may delete the new pod of that name.
    await asyncio.sleep(3)
    pod = await new_pod()
    await spawner.after_pod_created_hook(spawner, pod)
    out["taken_over"] = (await service())["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]

    await delete_pod()
    out["collected"] = False
    for _ in range(120):
        try:
            await service()
            await asyncio.sleep(0.5)
        except k8s.ApiException as exc:
            out["collected"] = exc.status == 404
            break
    print(json.dumps(out))

asyncio.run(main())
'''


@pytest.fixture(scope="module")
def hub_python():
    """{venv name: its python}, from `python -m tools.e2e_setup paths` (which installs what is missing)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "tools.e2e_setup", "paths"], cwd=REPO, capture_output=True,
                              text=True, timeout=1200, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("`python -m tools.e2e_setup paths` did not finish within 1200 s", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"the e2e set-up failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", pytrace=False)
    return json.loads(proc.stdout)["hub_python"]


@pytest.fixture(scope="module")
def namespace(cluster):
    core = client.CoreV1Api(config.new_client_from_config(config_file=cluster.kubeconfig))
    name = "dl-hook-" + uuid.uuid4().hex[:6]
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.mark.parametrize("venv", ["hub50", "hub-current"])
def test_driver_service_hook_with_real_kubespawner(hub_python, cluster, namespace, tmp_path, venv):
    assert Path(hub_python[venv]).exists(), hub_python
    python = hub_python[venv]
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": cluster.kubeconfig}
    proc = subprocess.run([python, str(script), namespace, str(SNIPPET)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    created = out["created"]
    assert created["clusterIP"] == "None"
    assert created["ports"] == [2222, 4040, 7777]
    assert created["owner"] == created["pod"]
    assert created["selector"]["hub.jupyter.org/username"] == "hook-test-user"
    assert out["untouched"], "a second call rewrote an equivalent Service"
    assert out["taken_over"], "the Service of an earlier pod was not handed to the new pod"
    assert out["collected"], "the Service outlived its pod"
