"""Helpers for tests that run real pods on the test bed's real node (tools/testbed/node.py).

A pod runs for real only with the node's toleration and node selector (`real` is
`ClusterInfo.real_node`); everything else lands on the simulated KWOK nodes.
"""
from __future__ import annotations

import uuid

import pytest
from kubernetes import client, config

from tests.integration.test_testbed import _exists, _until


# Fixtures: registered for every test module by tests/conftest.py (pytest_plugins).
@pytest.fixture(scope="module")
def real(cluster):
    if not cluster.real_node:
        pytest.skip("the test bed runs without a real node (DATALAB_TESTBED_REAL_NODE=0 or a port offset)")
    return cluster.real_node


@pytest.fixture(scope="module")
def api(cluster, real):
    return config.new_client_from_config(config_file=cluster.kubeconfig)


@pytest.fixture(scope="module")
def core(api):
    return client.CoreV1Api(api)


def new_namespace(core, prefix: str) -> str:
    """A namespace of its own (`<prefix>-<6 hex>`), its default ServiceAccount present."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    _until(lambda: _exists(lambda: core.read_namespaced_service_account("default", name)), 30, "default SA")
    return name


def pod_manifest(real: dict, name: str, containers: list[dict], **spec) -> dict:
    """A Pod on the real node: its toleration and node selector, a one-second grace period."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeSelector": real["node_selector"], "tolerations": [real["toleration"]],
                     "terminationGracePeriodSeconds": 1, "containers": containers, **spec}}


def ready(core, ns: str, name: str):
    """The pod when its Ready condition is True, else False."""
    pod = core.read_namespaced_pod(name, ns)
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []) and pod


def finished(core, ns: str, name: str, timeout: float):
    """Wait until the pod Succeeded or Failed; returns (pod, its log)."""
    pod = _until(lambda: (p := core.read_namespaced_pod(name, ns)).status.phase in ("Succeeded", "Failed") and p,
                 timeout, f"pod {name} to finish")
    return pod, core.read_namespaced_pod_log(name, ns)


def describe(core, ns: str, name: str) -> str:
    """Phase, container states and recent events of a pod, for an assertion message."""
    try:
        pod = core.read_namespaced_pod(name, ns)
        states = [(s.name, s.state.to_dict()) for s in pod.status.container_statuses or []]
        events = [f"{e.reason}: {e.message}" for e in core.list_namespaced_event(
            ns, field_selector=f"involvedObject.name={name}").items][-8:]
        return f"phase={pod.status.phase} states={states} events={events}"
    except Exception as exc:  # noqa: BLE001 - only for a message
        return f"(could not describe {name}: {exc})"
