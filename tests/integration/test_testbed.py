"""Proof that the test bed is a real Kubernetes API: controllers, scheduler, admission, storage.

Only the API server on 127.0.0.1 is contacted; pod and service IPs are never dialled.
"""
from __future__ import annotations

import ipaddress
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.node_ports import free_node_ports
from tools.testbed import build, versions
from tools.testbed import cluster as testbed_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(cluster):
    return config.new_client_from_config(config_file=cluster.kubeconfig)


@pytest.fixture()
def ns(api):
    name = f"proof-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    _until(lambda: _exists(lambda: core.read_namespaced_service_account("default", name)), 30, "default SA")
    yield name
    core.delete_namespace(name)


def _exists(fn) -> bool:
    try:
        fn()
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def _until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _pod_spec(**extra):
    return {"containers": [{"name": "main", "image": "registry.invalid/never-pulled:1"}], **extra}


def test_server_version_is_the_pinned_one(api):
    info = client.VersionApi(api).get_code()
    assert info.git_version == versions.KUBERNETES


def test_nodes_have_distinct_loopback_addresses(api, cluster):
    nodes = client.CoreV1Api(api).list_node(label_selector="testbed.datalab.io/node-kind=simulated").items
    assert len(nodes) >= 2
    seen = set()
    for node in nodes:
        addrs = {a.type: a.address for a in node.status.addresses}
        internal, external = ipaddress.ip_address(addrs["InternalIP"]), ipaddress.ip_address(addrs["ExternalIP"])
        assert internal in ipaddress.ip_network("127.0.0.0/24") and int(str(internal).rsplit(".", maxsplit=1)[-1]) >= 2
        assert external in ipaddress.ip_network("127.0.1.0/24") and int(str(external).rsplit(".", maxsplit=1)[-1]) >= 2
        assert not node.spec.taints
        assert {str(internal), str(external)}.isdisjoint(seen)
        seen |= {str(internal), str(external)}
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)


def test_deployment_spreads_two_replicas_and_becomes_available(api, ns):
    apps = client.AppsV1Api(api)
    labels = {"app": "spread"}
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "spread"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": _pod_spec(topologySpreadConstraints=[{
                "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": labels}}])}}})

    def available():
        d = apps.read_namespaced_deployment_status("spread", ns)
        return (d.status.available_replicas or 0) == 2 and any(
            c.type == "Available" and c.status == "True" for c in d.status.conditions or [])

    _until(available, 60, "Deployment Available")
    pods = client.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app=spread").items
    assert len({p.spec.node_name for p in pods}) == 2
    assert all(p.status.phase == "Running" for p in pods)


def test_nodeport_service_gets_requested_port_and_ready_endpoints(api, ns):
    core, disc = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    core.create_namespaced_pod(ns, {"apiVersion": "v1", "kind": "Pod",
                                    "metadata": {"name": "kc", "labels": {"app": "kc"}},
                                    "spec": _pod_spec(nodeSelector={"kubernetes.io/hostname": "testbed-node-2"})})
    # Requested, not allocated: the roles name their NodePorts.  A port nothing holds now.
    wanted = free_node_ports(core, 1)[0]
    svc = core.create_namespaced_service(ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "kc"},
        "spec": {"type": "NodePort", "selector": {"app": "kc"},
                 "ports": [{"name": "https", "port": 8443, "targetPort": 8443, "nodePort": wanted}]}})
    assert svc.spec.ports[0].node_port == wanted

    def ready_slice():
        slices = disc.list_namespaced_endpoint_slice(ns, label_selector="kubernetes.io/service-name=kc").items
        eps = [e for s in slices for e in (s.endpoints or []) if e.conditions and e.conditions.ready]
        return eps

    eps = _until(ready_slice, 60, "a ready EndpointSlice endpoint")
    assert eps[0].node_name == "testbed-node-2"
    assert ipaddress.ip_address(eps[0].addresses[0]) in ipaddress.ip_network("10.0.0.0/8")


def test_job_completes(api, ns):
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(ns, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
                                     "spec": {"template": {"spec": _pod_spec(restartPolicy="Never")}}})

    def complete():
        j = batch.read_namespaced_job_status("once", ns)
        return any(c.type == "Complete" and c.status == "True" for c in j.status.conditions or [])

    _until(complete, 60, "Job Complete")


def test_pvc_binds_with_default_storage_class(api, ns):
    core = client.CoreV1Api(api)
    core.create_namespaced_persistent_volume_claim(ns, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})

    def bound():
        pvc = core.read_namespaced_persistent_volume_claim("data", ns)
        return pvc if pvc.status.phase == "Bound" else None

    pvc = _until(bound, 60, "PVC Bound")
    assert pvc.spec.storage_class_name  # filled in by the DefaultStorageClass admission plugin


def test_validating_admission_policy_denies_with_its_message(api, ns):
    adm = client.AdmissionregistrationV1Api(api)
    policy = f"proof-no-hostpath-{ns}"
    message = "proof policy: hostPath volumes are not allowed"
    adm.create_validating_admission_policy({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": policy},
        "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [{
            "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]},
            "validations": [{"expression": "!has(object.spec.volumes) || "
                                           "object.spec.volumes.all(v, !has(v.hostPath))", "message": message}]}})
    adm.create_validating_admission_policy_binding({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy},
        "spec": {"policyName": policy, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}})
    core = client.CoreV1Api(api)
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad"},
           "spec": _pod_spec(volumes=[{"name": "h", "hostPath": {"path": "/etc"}}])}
    try:
        # The policy is enforced once the API server's informer has it: retry briefly.
        deadline = time.monotonic() + 30
        while True:
            try:
                core.create_namespaced_pod(ns, bad)
            except ApiException as exc:
                assert exc.status in (400, 403, 422), exc
                assert message in exc.body
                break
            client.CoreV1Api(api).delete_namespaced_pod("bad", ns, grace_period_seconds=0)
            _until(lambda: not _exists(lambda: core.read_namespaced_pod("bad", ns)), 30, "pod gone")
            assert time.monotonic() < deadline, "policy never enforced"
            time.sleep(1)
        core.create_namespaced_pod(ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "good"},
                                        "spec": _pod_spec()})
    finally:
        adm.delete_validating_admission_policy_binding(policy)
        adm.delete_validating_admission_policy(policy)


# --- Helm and its diff plugin --------------------------------------------------------------

def _helm(cluster, *args: str, kube: bool = True) -> subprocess.CompletedProcess:
    """Run the test bed's Helm as kubernetes.core.helm does: no HELM_* variables of our own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    argv = [cluster.helm, *args, *(["--kubeconfig", cluster.kubeconfig] if kube else [])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)


def test_helm_lists_the_pinned_diff_plugin(cluster):
    from ansible_collections.kubernetes.core.plugins.module_utils.helm import parse_helm_plugin_list

    proc = _helm(cluster, "plugin", "list", kube=False)
    assert proc.returncode == 0, proc.stderr
    # The parser kubernetes.core.helm uses to decide whether to run `helm diff upgrade`.
    plugins = {row[0]: row[1] for row in parse_helm_plugin_list(proc.stdout.splitlines())}
    assert plugins.get("diff") == versions.HELM_DIFF.lstrip("v")
    assert "WARNING" not in proc.stdout + proc.stderr


def _configmap_chart(root: Path) -> Path:
    chart = root / "diffproof"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: diffproof\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n")
    return chart


def test_helm_diff_upgrade_shows_a_changed_value(cluster, ns, tmp_path):
    chart = str(_configmap_chart(tmp_path))
    release = "diffproof"
    proc = _helm(cluster, "install", release, chart, "-n", ns, "--set", "greeting=hello")
    assert proc.returncode == 0, proc.stderr
    try:
        diff = ["diff", "upgrade", release, chart, "-n", ns, "--no-color", "--detailed-exitcode"]
        changed = _helm(cluster, *diff, "--set", "greeting=world")
        assert changed.returncode == 2, changed.stdout + changed.stderr  # 2: there are changes
        assert f"{ns}, {release}-greeting, ConfigMap (v1) has changed:" in changed.stdout
        lines = [line.strip() for line in changed.stdout.splitlines()]
        assert '-   greeting: "hello"' in lines and '+   greeting: "world"' in lines, changed.stdout

        same = _helm(cluster, *diff, "--set", "greeting=hello")
        assert same.returncode == 0, same.stdout + same.stderr
        assert same.stdout.strip() == ""
    finally:
        _helm(cluster, "uninstall", release, "-n", ns, "--wait")


def test_helm_wrapper_replaces_an_old_symlink_and_is_idempotent(cluster, tmp_path):
    """A state directory from before the plugin (bin/helm a symlink) gets the wrapper and the plugin
    from the already-running path of ensure_up(); a second call changes nothing."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "helm").symlink_to(build.BINARIES["helm"].path)
    testbed_cluster._ensure_helm(tmp_path)
    wrapper = tmp_path / "bin" / "helm"
    assert not wrapper.is_symlink() and os.access(wrapper, os.X_OK)
    diff = tmp_path / "helm-plugins" / "diff" / "bin" / "diff"
    assert diff.resolve() == build.BINARIES["helm-diff"].path.resolve()
    before = {p: p.lstat().st_mtime_ns for p in (wrapper, diff, tmp_path / "helm-plugins" / "diff" / "plugin.yaml")}
    testbed_cluster._ensure_helm(tmp_path)
    assert {p: p.lstat().st_mtime_ns for p in before} == before
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    out = subprocess.run([str(wrapper), "plugin", "list"], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.splitlines()[1].split("\t")[0] == "diff"
