"""datalab.notebooks.nodeport_address against the test bed's real API server.

Workloads are pinned to known nodes with nodeSelector; the nodes' loopback addresses
(InternalIP 127.0.0.x, ExternalIP 127.0.1.x) are what the module must return. Only the
API server on 127.0.0.1 is contacted: no pod, ClusterIP or node port is ever dialled.
The module runs for real, through ansible-playbook, with the JSON stdout callback.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODULE = "datalab.notebooks.nodeport_address"


# --- cluster objects ----------------------------------------------------------------

def _until(check, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.5)


def _exists(read):
    try:
        read()
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def _deployment(name, app, node, replicas=1):
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app, "deployment": name}},
            "template": {
                "metadata": {"labels": {"app": app, "deployment": name}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    # Never pulled: the test bed simulates the pod lifecycle.
                    "containers": [{"name": "main", "image": "registry.invalid/never-pulled:1",
                                    "ports": [{"name": "https", "containerPort": 8443},
                                              {"name": "http", "containerPort": 8080}]}],
                },
            },
        },
    }


def _service(name, app, type_="NodePort"):
    ports = [{"name": "https", "port": 443, "targetPort": "https"},
             {"name": "http", "port": 80, "targetPort": "http"}]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": type_, "selector": {"app": app}, "ports": ports}}


def _create_nodeport_service(core, namespace, name, app):
    """Create a NodePort Service; the API server allocates both ports, the test reads them back."""
    svc = core.create_namespaced_service(namespace, _service(name, app))
    return {p.name: p.node_port for p in svc.spec.ports}


def _ready_nodes(discovery, namespace, service):
    # Raw JSON: the client's models reject a slice whose endpoints are null (a Service without pods).
    response = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=%s" % service, _preload_content=False)
    slices = json.loads(response.data)["items"]
    return sorted({ep["nodeName"] for s in slices for ep in (s.get("endpoints") or [])
                   if (ep.get("conditions") or {}).get("ready") and ep.get("nodeName")})


@pytest.fixture(scope="module")
def api(cluster):
    with config.new_client_from_config(config_file=cluster.kubeconfig) as api_client:
        yield api_client


@pytest.fixture(scope="module")
def env(cluster, api):
    """A namespace with NodePort Services whose ready endpoints run on known nodes."""
    if len(cluster.nodes) < 3:
        pytest.skip("needs a test bed with 3 nodes")
    core, apps, discovery = client.CoreV1Api(api), client.AppsV1Api(api), client.DiscoveryV1Api(api)
    namespace = "nodeport-%s" % uuid.uuid4().hex[:6]
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        _until(lambda: _exists(lambda: core.read_namespaced_service_account("default", namespace)), 30,
               "the default ServiceAccount")
        node1, node2, node3 = (n["name"] for n in cluster.nodes[:3])
        ports = {
            # One ready pod on node 2.
            "web": _create_nodeport_service(core, namespace, "web", "web"),
            # Two pods, on node 3 and node 1: two candidates.
            "spread": _create_nodeport_service(core, namespace, "spread", "spread"),
            # No pods at all.
            "idle": _create_nodeport_service(core, namespace, "idle", "idle"),
            # Pods come later (the wait test).
            "late": _create_nodeport_service(core, namespace, "late", "late"),
        }
        core.create_namespaced_service(namespace, _service("internal", "web", type_="ClusterIP"))
        apps.create_namespaced_deployment(namespace, _deployment("web", "web", node2))
        apps.create_namespaced_deployment(namespace, _deployment("spread-a", "spread", node3))
        apps.create_namespaced_deployment(namespace, _deployment("spread-b", "spread", node1))
        _until(lambda: _ready_nodes(discovery, namespace, "web") == [node2], 90, "a ready endpoint of web")
        _until(lambda: _ready_nodes(discovery, namespace, "spread") == sorted([node1, node3]), 90,
               "ready endpoints of spread")
        yield {"namespace": namespace, "ports": ports, "nodes": {n["name"]: n for n in cluster.nodes},
               "node_names": (node1, node2, node3), "apps": apps, "kubeconfig": cluster.kubeconfig}
    finally:
        core.delete_namespace(namespace)


# --- running the module ----------------------------------------------------------------

def _playbook(tasks, path):
    play = {"hosts": "localhost", "gather_facts": False,
            "vars": {"ansible_python_interpreter": sys.executable}, "tasks": tasks}
    path.write_text(json.dumps([play], indent=1), encoding="utf-8")  # JSON is YAML
    return path


def _ansible_env():
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    return env


def _command(playbook):
    return [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
            str(playbook)]


def _results(proc_stdout):
    report = json.loads(proc_stdout)
    return {t["task"]["name"]: t["hosts"]["localhost"] for t in report["plays"][0]["tasks"]}


def _task(name, args, **keywords):
    task = {"name": name, MODULE: args, "ignore_errors": True}
    task.update(keywords)
    return task


def _case_tasks(env):
    ns, kubeconfig = env["namespace"], env["kubeconfig"]

    def args(**kw):
        base = {"kubeconfig": kubeconfig, "namespace": ns, "name": "web", "port": "https"}
        base.update(kw)
        return base

    tasks = [
        _task("default", args()),
        _task("internal", args(address_types=["InternalIP"])),
        _task("by number", args(port="443")),
        _task("http port", args(port="http", scheme="http")),
        _task("two nodes", args(name="spread")),
        _task("check mode", args(), check_mode=True),
        _task("module_defaults", {"namespace": ns, "name": "web", "port": "https"},
              module_defaults={"group/datalab.notebooks.k8s": {"kubeconfig": kubeconfig}}),
        _task("missing service", args(name="absent")),
        _task("cluster ip", args(name="internal")),
        _task("unknown port", args(port="grpc")),
        _task("port needed", args(port=None)),
        _task("no endpoint", args(name="idle")),
        _task("no endpoint after wait", args(name="idle", wait=True, wait_timeout=2)),
        _task("no such address type", args(address_types=["ExternalDNS", "InternalDNS"])),
        _task("bad kubeconfig", args(kubeconfig=str(REPO / "no-such-kubeconfig"))),
    ]
    bare_python = _python_without_kubernetes()
    if bare_python:
        tasks.append(_task("no client library", args(), vars={"ansible_python_interpreter": bare_python}))
    for task in tasks:
        if task[MODULE].get("port", "") is None:
            del task[MODULE]["port"]
    return tasks


def _python_without_kubernetes():
    """The venv's base interpreter, which normally lacks the kubernetes library."""
    base = Path(sys.base_prefix, "bin", "python%d.%d" % sys.version_info[:2])
    probe = subprocess.run([str(base), "-c", "import kubernetes"], capture_output=True, check=False)
    return str(base) if probe.returncode else None


@pytest.fixture(scope="module")
def results(env, tmp_path_factory):
    """Every case in one ansible-playbook run: one Ansible start-up instead of one per case."""
    playbook = _playbook(_case_tasks(env), tmp_path_factory.mktemp("nodeport") / "cases.yml")
    started = time.monotonic()
    proc = subprocess.run(_command(playbook), capture_output=True, text=True, env=_ansible_env(), timeout=300,
                          check=False)
    assert proc.stdout.lstrip().startswith("{"), proc.stdout + proc.stderr
    out = _results(proc.stdout)
    out["_seconds"] = time.monotonic() - started
    return out


def _expect_ok(result):
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    return result


def _expect_failure(result, message):
    assert result.get("failed"), result
    assert "\n" not in result["msg"], result["msg"]
    assert "Traceback" not in json.dumps(result)
    assert message in result["msg"], result["msg"]
    return result["msg"]


# --- success ---------------------------------------------------------------------------

def test_external_ip_of_the_endpoint_node(env, results):
    node = env["nodes"][env["node_names"][1]]
    port = env["ports"]["web"]["https"]
    result = _expect_ok(results["default"])
    assert result["node_name"] == node["name"]
    assert result["node_ip"] == node["ExternalIP"]
    assert result["address_type"] == "ExternalIP"
    assert result["node_port"] == port
    assert result["port_name"] == "https"
    assert result["address"] == "%s:%d" % (node["ExternalIP"], port)
    assert result["url"] == "https://%s:%d" % (node["ExternalIP"], port)
    assert result["candidates"] == [{"node_name": node["name"], "node_ip": node["ExternalIP"],
                                     "address_type": "ExternalIP", "address": result["address"]}]


def test_internal_ip_when_asked(env, results):
    node = env["nodes"][env["node_names"][1]]
    result = _expect_ok(results["internal"])
    assert (result["node_ip"], result["address_type"]) == (node["InternalIP"], "InternalIP")
    assert result["address"] == "%s:%d" % (node["InternalIP"], env["ports"]["web"]["https"])


def test_port_by_number_and_other_port(env, results):
    assert _expect_ok(results["by number"])["node_port"] == env["ports"]["web"]["https"]
    http = _expect_ok(results["http port"])
    assert http["node_port"] == env["ports"]["web"]["http"]
    assert http["url"].startswith("http://127.0.1.")


def test_several_nodes_sorted_by_name(env, results):
    node1, _node2, node3 = (env["nodes"][n] for n in env["node_names"])
    result = _expect_ok(results["two nodes"])
    assert [c["node_name"] for c in result["candidates"]] == sorted([node1["name"], node3["name"]])
    first = min((node1, node3), key=lambda n: n["name"])
    assert (result["node_name"], result["node_ip"]) == (first["name"], first["ExternalIP"])


def test_check_mode_gives_the_same_answer(results):
    checked = _expect_ok(results["check mode"])
    assert not checked.get("skipped")
    assert checked["address"] == results["default"]["address"]


def test_connection_options_from_module_defaults(results):
    assert _expect_ok(results["module_defaults"])["address"] == results["default"]["address"]


def test_waits_for_a_ready_endpoint(env, tmp_path):
    """The Service exists, its pods come 3 s after the module started: wait must pick them up."""
    node = env["nodes"][env["node_names"][0]]
    playbook = _playbook([_task("late", {"kubeconfig": env["kubeconfig"], "namespace": env["namespace"],
                                         "name": "late", "port": "https", "wait": True, "wait_timeout": 60})],
                         tmp_path / "late.yml")
    started = time.monotonic()
    with subprocess.Popen(_command(playbook), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=_ansible_env()) as proc:
        time.sleep(3)
        env["apps"].create_namespaced_deployment(env["namespace"], _deployment("late", "late", node["name"]))
        stdout, stderr = proc.communicate(timeout=120)
    result = _expect_ok(_results(stdout)["late"] if stdout.strip() else {"failed": True, "msg": stderr})
    assert time.monotonic() - started > 3
    assert result["address"] == "%s:%d" % (node["ExternalIP"], env["ports"]["late"]["https"])


# --- failures: one line, no traceback, names the fix ---------------------------------------

def test_service_missing(env, results):
    assert _expect_failure(results["missing service"], "") == "Service %s/absent not found" % env["namespace"]


def test_not_a_nodeport_service(results):
    _expect_failure(results["cluster ip"], "is of type ClusterIP, it has no node port; make it a NodePort")


def test_unknown_port(env, results):
    msg = _expect_failure(results["unknown port"], "has no port grpc")
    assert msg.endswith("its ports are: https (443/TCP), http (80/TCP)")
    _expect_failure(results["port needed"], "has several ports; set port to one of: https (443/TCP), http (80/TCP)")


def test_no_ready_endpoint(env, results):
    msg = _expect_failure(results["no endpoint"], "Service %s/idle port https (443/TCP) has no ready endpoint"
                          % env["namespace"])
    assert msg.endswith("set wait: true to wait for one")
    _expect_failure(results["no endpoint after wait"], "(no endpoints) after waiting 2s")


def test_node_without_the_address_type(env, results):
    node = env["node_names"][1]
    _expect_failure(results["no such address type"], "no node address of type ExternalDNS or InternalDNS: node %s "
                    "(has ExternalIP, Hostname, InternalIP)" % node)


def test_bad_kubeconfig(results):
    _expect_failure(results["bad kubeconfig"], "cannot load the Kubernetes client configuration")


def test_runs_on_the_controller_whatever_the_target_interpreter(env, results):
    """The action plugin reads from the controller's process, like the kubernetes.core.k8s lookup: a
    target whose Python lacks the kubernetes library gets the same answer, and no module is started."""
    if "no client library" not in results:
        pytest.skip("no interpreter without the kubernetes library on this machine")
    assert _expect_ok(results["no client library"])["address"] == _expect_ok(results["default"])["address"]
