"""The test bed's real node (tools/testbed/node.py): pods that run, on this machine only.

Every workload here carries the real node's toleration and node selector; each test has its own
namespace and lets the API server allocate NodePorts.  The only addresses a test opens are the
API server, the node's loopback NodePort address (127.0.0.10) and kubectl's port-forward on
127.0.0.1; pods dial the test bed's own addresses, apart from the containment checks, which
prove that a pod's try to reach an address outside the machine is refused or dropped here.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from kubernetes import client

from tests.integration.realpods import pod_manifest as _pod
from tests.integration.realpods import ready as _ready
from tests.integration.test_testbed import _exists, _until
from tools.testbed import cluster as testbed_cluster
from tools.testbed import hoststate, netguard, node
from tools.testbed.procs import Procs, TestbedError, check_port_free, teardown_shield

pytestmark = pytest.mark.integration
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Whether a test bed ran when this module was collected (before any fixture started one).
_BED_AT_START = testbed_cluster.running() or node.node_dir(testbed_cluster.paths.cluster_dir()).exists()


@pytest.mark.own_testbed
def test_host_left_as_found_after_up_and_down():
    """cluster-up with the real node, then cluster-down: links, addresses, routes, iptables,
    sysctls, mounts, cgroups and the CNI/netns paths equal the snapshot from before."""
    if _BED_AT_START or testbed_cluster.running():
        pytest.skip("a test bed is running (the shared one): an up/down cycle would stop it; "
                    "tools/run_tests.py compares the host before cluster-up and after cluster-down")
    if not node.enabled():
        pytest.skip("the real node is disabled (DATALAB_TESTBED_REAL_NODE=0 or a port-offset test bed)")
    before = hoststate.snapshot()
    try:
        testbed_cluster.ensure_up()
        during = hoststate.snapshot()
        assert hoststate.compare(before, during), "the node changed nothing on the host: is it running?"
    finally:
        testbed_cluster.down()
    after = hoststate.snapshot()
    assert hoststate.compare(before, after) == []


def _testbed(state, command):
    env = {**os.environ, "DATALAB_STATE": str(state), "DATALAB_TESTBED_REAL_NODE": "1"}
    return subprocess.run([sys.executable, "-m", "tools.testbed", command], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.own_testbed
def test_a_killed_test_beds_node_is_undone_by_the_next_cluster_up():
    """A run killed without cluster-down (a session's end, a CI timeout) leaves the bridge, chains,
    sysctls and mounts; its clean-up may even delete its state directory.  The next test bed on the
    machine finds the dead owner, undoes its changes and starts; after its cluster-down the host is
    as found."""
    if _BED_AT_START or testbed_cluster.running():
        pytest.skip("a test bed is running (the shared one): this test needs the machine's only real node")
    if not node.enabled():
        pytest.skip("the real node is disabled (DATALAB_TESTBED_REAL_NODE=0 or a port-offset test bed)")
    top = Path(tempfile.mkdtemp(prefix="dl-kill-"))  # short: containerd's socket paths have a limit
    first, second = top / "killed", top / "next"
    before = hoststate.snapshot()
    try:
        up = _testbed(first, "cluster-up")
        assert up.returncode == 0, up.stderr
        state = first / "cluster"
        for pr in (node.procs(state), Procs(state)):
            for pid, dummy in pr.recorded().values():
                try:
                    os.killpg(pid, 9)
                except ProcessLookupError:
                    pass
        for pid in node._shims(state):
            os.kill(pid, 9)
        shutil.rmtree(first, ignore_errors=True)  # what `rm -rf` of a CI directory leaves: the mounts
        assert node._link_exists(node.BRIDGE)

        again = _testbed(second, "cluster-up")
        assert again.returncode == 0, again.stderr
        assert f"the real node of a test bed that no longer runs ({state})" in again.stderr + again.stdout
        assert node._owner()["state"] == str(second / "cluster")
    finally:
        with teardown_shield():  # a stop of the session waits until both are down
            _testbed(second, "cluster-down")
            _testbed(first, "cluster-down")
            shutil.rmtree(top, ignore_errors=True)
    assert not node.OWNER_FILE.exists()
    assert hoststate.compare(before, hoststate.snapshot()) == []


def test_hoststate_compare_names_each_difference():
    before = {"links": ["lo"], "sysctls": {"net.ipv4.ip_forward": "0"}, "iptables": {"filter": ["*filter"]}}
    after = {"links": ["lo", "dl-rn0 bridge"], "sysctls": {"net.ipv4.ip_forward": "1"},
             "iptables": {"filter": ["*filter"], "nat": ["*nat", ":KUBE-SERVICES - [0:0]"]}}
    assert hoststate.compare(before, before) == []
    assert hoststate.compare(before, after) == [
        "iptables nat: was None, now ['*nat', ':KUBE-SERVICES - [0:0]']",
        "links: new: dl-rn0 bridge",
        "sysctls net.ipv4.ip_forward: was '0', now '1'",
    ]


@pytest.fixture()
def ns(core):
    name = f"realnode-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    _until(lambda: _exists(lambda: core.read_namespaced_service_account("default", name)), 30, "default SA")
    yield name
    core.delete_namespace(name, grace_period_seconds=0)


def _container(real, args, name="main", **extra):
    return {"name": name, "image": real["images"]["probe"], "imagePullPolicy": "Never", "args": args, **extra}


def _run_pod(core, ns, real, name, args, timeout=60, **spec):
    """A pod that runs the probe once; returns (phase, its log)."""
    core.create_namespaced_pod(ns, _pod(real, name, [_container(real, args)], restartPolicy="Never", **spec))
    pod = _until(lambda: (p := core.read_namespaced_pod(name, ns)).status.phase in ("Succeeded", "Failed") and p,
                 timeout, f"pod {name} to finish")
    return pod.status.phase, core.read_namespaced_pod_log(name, ns)


def _kubectl(cluster, *args, timeout=30):
    return subprocess.run(["kubectl", f"--kubeconfig={cluster.kubeconfig}", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _serve(core, apps, ns, real, name, text, port=8080):
    """A Deployment of the probe serving `text` and a ClusterIP or NodePort Service for it."""
    labels = {"app": name}
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": _pod(real, name, [_container(real, ["serve", f":{port}", text],
                                                 readinessProbe={"httpGet": {"path": "/", "port": port},
                                                                 "periodSeconds": 1})])["spec"]}}})
    svc = core.create_namespaced_service(ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "NodePort", "selector": labels, "ports": [{"port": port, "targetPort": port}]}})
    _until(lambda: any(_ready(core, ns, p.metadata.name)
                       for p in core.list_namespaced_pod(ns, label_selector=f"app={name}").items),
           60, f"{name} to be Ready")
    return svc


def _get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def test_real_node_is_registered_tainted_and_kwok_nodes_are_simulated(core, real):
    nodes = {n.metadata.name: n for n in core.list_node().items}
    me = nodes[real["name"]]
    assert me.metadata.labels[node.KIND_LABEL] == "real"
    assert [(t.key, t.value, t.effect) for t in me.spec.taints or []] == [(node.TAINT_KEY, "true", "NoSchedule")]
    assert {a.type: a.address for a in me.status.addresses}["InternalIP"] == real["address"]
    others = [n for n in nodes if n != real["name"]]
    assert others and all(testbed_cluster.node_kind(n) == "simulated" for n in others)
    assert testbed_cluster.node_kind(real["name"]) == "real"


def test_deployment_serves_on_loopback_nodeport(cluster, api, core, ns, real):
    apps = client.AppsV1Api(api)
    text = f"hello-{ns}"
    svc = _serve(core, apps, ns, real, "web", text)
    node_port = svc.spec.ports[0].node_port
    assert node_port, "the API server allocated no NodePort"
    pod = core.list_namespaced_pod(ns, label_selector="app=web").items[0]
    assert testbed_cluster.node_kind(pod.spec.node_name) == "real"
    assert pod.status.pod_ip.startswith("10.88.")
    status, body = _until(lambda: _try_get(f"http://{real['nodeport_address']}:{node_port}/"), 20,
                          "the NodePort to answer")
    assert status == 200 and body.startswith(f"{text} from web-")


def _try_get(url):
    try:
        return _get(url, timeout=2)
    except OSError:
        return None


def test_pod_resolves_and_reaches_a_service_by_name(cluster, api, core, ns, real):
    apps = client.AppsV1Api(api)
    svc = _serve(core, apps, ns, real, "named", f"by-name-{ns}")
    _until(lambda: testbed_cluster.node_running() and _dns_ready(cluster), 60, "CoreDNS to be Ready")
    phase, log = _run_pod(core, ns, real, "lookup", ["lookup", f"named.{ns}.svc.cluster.local"])
    assert phase == "Succeeded", log
    assert log.split() == [svc.spec.cluster_ip]
    phase, log = _run_pod(core, ns, real, "client", ["get", "http://named:8080/"])
    assert phase == "Succeeded", log
    assert "status=200" in log and f"by-name-{ns} from named-" in log
    # CoreDNS answers only cluster.local: any other name fails at once, asked of nobody outside
    t0 = time.monotonic()
    phase, log = _run_pod(core, ns, real, "outside-name", ["lookup", "example.com"])
    assert phase == "Failed" and "example.com" in log, log
    assert time.monotonic() - t0 < 30


def _dns_ready(cluster):
    from tools.testbed.cluster import Api  # noqa: PLC0415
    return node.coredns_ready(Api(testbed_cluster.paths.cluster_dir()))


def test_service_account_rbac_applies_in_cluster(api, core, ns, real):
    rbac = client.RbacAuthorizationV1Api(api)
    for sa in ("nobody", "reader"):
        core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
    rbac.create_namespaced_role(ns, {"metadata": {"name": "pod-reader"},
                                     "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]})
    path = f"api/v1/namespaces/{ns}/pods"
    phase, log = _run_pod(core, ns, real, "as-nobody", ["api", path], serviceAccountName="nobody")
    assert phase == "Succeeded" and log.startswith("status=403"), log
    assert f"system:serviceaccount:{ns}:nobody" in log
    phase, log = _run_pod(core, ns, real, "as-reader", ["api", path], serviceAccountName="reader")
    assert phase == "Succeeded" and log.startswith("status=200"), log
    assert '"kind":"PodList"' in log.replace(" ", "")


def test_kubectl_logs_exec_and_port_forward(cluster, core, ns, real):
    token = uuid.uuid4().hex[:8]
    core.create_namespaced_pod(ns, _pod(real, "srv", [_container(real, ["serve", ":8080", f"pf-{token}"])]))
    _until(lambda: _ready(core, ns, "srv"), 60, "pod srv to be Ready")
    logs = _until(lambda: (r := _kubectl(cluster, "-n", ns, "logs", "srv")).returncode == 0 and r.stdout, 20,
                  "kubectl logs")
    assert "serving on :8080" in logs
    out = _kubectl(cluster, "-n", ns, "exec", "srv", "--", "/probe", "echo", f"exec-{token}")
    assert out.returncode == 0 and out.stdout.strip() == f"exec-{token}", out.stderr
    pf = subprocess.Popen(["kubectl", f"--kubeconfig={cluster.kubeconfig}", "-n", ns, "port-forward", "pod/srv",
                           "--address=127.0.0.1", ":8080"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = pf.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+) ->", line)
        assert m, f"no port-forward address in {line!r}: {pf.stderr.read() if pf.poll() is not None else ''}"
        status, body = _get(f"http://127.0.0.1:{m.group(1)}/")
        assert status == 200 and body.startswith(f"pf-{token} from srv")
    finally:
        pf.terminate()
        pf.wait(10)


def test_pvc_written_in_one_pod_is_read_in_the_next(core, ns, real):
    core.create_namespaced_persistent_volume_claim(ns, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}}})
    volume = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}
    mount = {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    text = f"kept-{uuid.uuid4().hex[:8]}"
    for name, args in (("writer", ["write", "/data/note", text]), ("reader", ["cat", "/data/note"])):
        core.create_namespaced_pod(ns, _pod(real, name, [_container(real, args, **mount)], restartPolicy="Never",
                                            **volume))
        pod = _until(lambda n=name: (p := core.read_namespaced_pod(n, ns)).status.phase in ("Succeeded", "Failed")
                     and p, 60, f"pod {name}")
        assert pod.status.phase == "Succeeded", core.read_namespaced_pod_log(name, ns)
        assert testbed_cluster.node_kind(pod.spec.node_name) == "real"
    assert core.read_namespaced_pod_log("reader", ns) == text


def test_memory_limit_is_enforced(core, ns, real):
    container = _container(real, ["hog", "256"], resources={"limits": {"memory": "48Mi"}})
    core.create_namespaced_pod(ns, _pod(real, "hog", [container], restartPolicy="Never"))
    pod = _until(lambda: (p := core.read_namespaced_pod("hog", ns)).status.phase in ("Succeeded", "Failed") and p,
                 60, "the hog to end")
    term = pod.status.container_statuses[0].state.terminated
    assert pod.status.phase == "Failed" and term.reason == "OOMKilled" and term.exit_code == 137


def _default_gateway() -> str:
    out = subprocess.run(["ip", "-4", "route", "show", "default"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"default via (\S+)", out)
    return m.group(1) if m else "192.0.2.1"


def test_pod_cannot_reach_outside_the_machine(core, ns, real):
    target = f"{_default_gateway()}:80"
    # A pod has no default route: the connect fails inside the pod at once.
    phase, log = _run_pod(core, ns, real, "no-route", ["dial", target, "3"])
    assert phase == "Failed" and "network is unreachable" in log, log
    # A pod that adds a default route via the node itself (NET_ADMIN) reaches the host, whose guard drops it.
    before = netguard.counters()
    init = _container(real, ["route-default", real["address"]], name="route",
                      securityContext={"capabilities": {"add": ["NET_ADMIN"]}})
    phase, log = _run_pod(core, ns, real, "via-node", ["dial", target, "3"], initContainers=[init])
    assert phase == "Failed" and "timeout" in log, log
    after = netguard.counters()
    assert after["forward"] > before["forward"], (before, after)


def test_missing_image_fails_fast_and_names_it(core, ns, real):
    image = f"local.test/absent-{uuid.uuid4().hex[:6]}:1"
    t0 = time.monotonic()
    for name, policy in (("pull", "IfNotPresent"), ("never", "Never")):
        core.create_namespaced_pod(ns, _pod(real, name, [{"name": "main", "image": image,
                                                          "imagePullPolicy": policy}]))

    def waiting(name):
        pod = core.read_namespaced_pod(name, ns)
        st = (pod.status.container_statuses or [None])[0]
        return st and st.state.waiting and st.state.waiting.reason not in ("ContainerCreating", None) and st.state.waiting

    pulled = _until(lambda: waiting("pull"), 30, "the pull to fail")
    never = _until(lambda: waiting("never"), 30, "ErrImageNeverPull")
    elapsed = time.monotonic() - t0
    assert pulled.reason in ("ErrImagePull", "ImagePullBackOff") and image in pulled.message, pulled
    assert "127.0.0.1:9" in pulled.message or "proxyconnect" in pulled.message, pulled.message
    assert never.reason == "ErrImageNeverPull" and image in never.message, never
    assert elapsed < 20, f"took {elapsed:.1f}s"


def test_node_components_are_listed_in_status(real):
    st = testbed_cluster.status()
    for comp in node.COMPONENTS:
        assert st[f"node/{comp}"].startswith("running"), st[f"node/{comp}"]
    assert os.path.exists(real["containerd_socket"])


def _free_offset() -> int:
    """A DATALAB_TESTBED_PORT_OFFSET whose control-plane ports are all free now (other test beds run here)."""
    base = [p for v in testbed_cluster.PORTS.values() for p in (v if isinstance(v, tuple) else (v,))]
    base = [p - testbed_cluster._OFF for p in base]  # pylint: disable=protected-access
    for offset in range(300, 2000, 7):
        try:
            for port in base:
                check_port_free("127.0.0.1", port + offset, "probe")
        except TestbedError:
            continue
        return offset
    raise AssertionError("no free port offset between 300 and 2000")


def test_second_test_bed_cannot_take_the_node_and_leaves_the_first_intact(cluster, real, tmp_path):
    """Only one real node per machine: a second test bed (own state, shifted ports) that asks for
    one is refused with a reason, and the running node keeps its bridge, guard and health."""
    env = {**os.environ, "DATALAB_STATE": str(tmp_path), "DATALAB_TESTBED_PORT_OFFSET": str(_free_offset()),
           "DATALAB_TESTBED_REAL_NODE": "1"}
    try:
        proc = subprocess.run([sys.executable, "-m", "tools.testbed", "cluster-up"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 1, proc.stderr
        assert f"the bridge {real['bridge']} exists already" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        subprocess.run([sys.executable, "-m", "tools.testbed", "cluster-down"], cwd=REPO, env=env,
                       capture_output=True, timeout=120, check=False)
    assert testbed_cluster.node_running()
    assert netguard.present()
