"""Bad input never reaches the cluster: `site.yml` checks every role's input, and what the roles share
(the cluster, Helm, the NodePorts of all installs), before its first change.

Each case gives one wrong value to an otherwise complete install whose roles all run (the secret
operator step, Keycloak, MinIO, JupyterHub, the Spark image). The run must fail, its message must
name the variable and the value, and the cluster must be as it was: the test lists every object of
every kind the API server serves (apart from the ones the cluster's own controllers rewrite all the
time) before and after and compares them, with the Helm releases (Secrets) among them, and lists the
test-bed Keycloak's realms. Nothing is taken on trust from the exit code.
"""
from __future__ import annotations

import json
import sys
import time
import uuid

import pytest
import yaml
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

from tests.ansible_run import run_playbook
from tests.keycloak_admin import KeycloakAdmin
from tests.node_ports import free_node_ports

pytestmark = pytest.mark.integration

# Kinds the cluster's own controllers write on their own (heartbeats, leader election, events, pod
# status): they change whatever a playbook does. Everything else must stay as it was.
RESTLESS = {("", "Event"), ("events.k8s.io", "Event"), ("coordination.k8s.io", "Lease"), ("", "Node"),
            ("", "Pod"), ("", "Endpoints"), ("discovery.k8s.io", "EndpointSlice")}
SHA1 = "a" * 40


def snapshot(dyn):
    """{(group, kind, namespace, name): (uid, resourceVersion)} of every listable object."""
    seen = {}
    for res in dyn.resources.search():
        if not res.name or "/" in res.name or "list" not in (res.verbs or []) or (res.group, res.kind) in RESTLESS:
            continue
        if res.kind.endswith("List") or res.kind.endswith("Review"):
            continue
        try:
            items = dyn.request("GET", res.path()).items or []
        except ApiException as exc:
            if exc.status in (404, 405):
                continue
            raise
        for item in items:
            meta = item.metadata
            if meta.deletionTimestamp:
                continue
            seen[(res.group, res.kind, meta.namespace or "", meta.name)] = (meta.uid, meta.resourceVersion)
    return seen


def difference(before, after):
    keys = set(before) | set(after)
    return sorted("%s %s/%s/%s: %s -> %s" % (k[0] or "core", k[1], k[2], k[3], before.get(k), after.get(k))
                  for k in keys if before.get(k) != after.get(k))


@pytest.fixture(scope="module")
def bed(cluster, keycloak, tmp_path_factory):
    api_client = config.new_client_from_config(config_file=cluster.kubeconfig)
    core = client.CoreV1Api(api_client)
    dyn = dynamic.DynamicClient(api_client)
    # Namespaces that earlier tests are still deleting would change under the comparison.
    deadline = time.monotonic() + 300
    while any(ns.status.phase == "Terminating" for ns in core.list_namespace().items):
        assert time.monotonic() < deadline, "namespaces still terminating after 300 s"
        time.sleep(3)
    tmp = tmp_path_factory.mktemp("preflight")
    uid = uuid.uuid4().hex[:6]
    kc_port, hub_port, other_port = free_node_ports(core, 3)
    # A Service of somebody else that holds a NodePort.
    holder_ns = "dl-pre-holder-%s" % uid
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=holder_ns)))
    core.create_namespaced_service(holder_ns, client.V1Service(
        metadata=client.V1ObjectMeta(name="someone-else"),
        spec=client.V1ServiceSpec(type="NodePort", selector={"app": "none"}, ports=[
            client.V1ServicePort(port=80, target_port=80, node_port=other_port)])))
    # The control plane writes a new namespace's ServiceAccount and CA ConfigMap on its own, a moment later:
    # wait for them, or a fresh cluster writes them between a case's two snapshots.
    deadline = time.monotonic() + 60
    while not (core.list_namespaced_config_map(holder_ns, field_selector="metadata.name=kube-root-ca.crt").items
               and core.list_namespaced_service_account(holder_ns, field_selector="metadata.name=default").items):
        assert time.monotonic() < deadline, "namespace %s did not get its ServiceAccount and CA ConfigMap" % holder_ns
        time.sleep(0.5)
    hostvars = {
        "datalab_namespace": "dl-pre-%s" % uid, "datalab_keycloak_realm": "pre-%s" % uid,
        "datalab_kubeconfig": cluster.kubeconfig, "datalab_helm_binary": cluster.helm,
        "datalab_tls_provider": "self_signed", "datalab_hub_node_port": hub_port, "keycloak_node_port": kc_port,
        "keycloak_admin_url": keycloak["url"], "keycloak_admin_username": keycloak["username"],
        "keycloak_admin_password": keycloak["password"], "keycloak_admin_ca_path": keycloak["ca_path"],
        "spark_image_build": False,
    }
    yield {"core": core, "dyn": dyn, "tmp": tmp, "hostvars": hostvars, "kc_port": kc_port, "hub_port": hub_port,
           "other_port": other_port, "holder_ns": holder_ns, "admin": KeycloakAdmin(keycloak)}
    core.delete_namespace(holder_ns)


def realms(admin):
    status, body = admin.request("GET", "")
    assert status == 200, status
    return sorted(r["realm"] for r in body)


def write_inventory(path, hostvars):
    path.write_text(yaml.safe_dump({"notebook_platform": {"hosts": {"pre-check": hostvars}, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}, sort_keys=False))
    return path


# (variable, value, what the message says besides the variable's name and the value)
CASES = [
    ("keycloak_node_port", "http", "unable to convert to int"),
    ("keycloak_node_port", "@hub", "is also datalab_hub_node_port"),
    ("keycloak_node_port", "@other", "is held by Service"),
    ("datalab_hub_node_port", 8080, "NodePort range 30000-32767"),
    ("jupyterhub_profile_cpu_choices", [1, "two"], "unable to convert to float"),
    ("jupyterhub_profile_memory_choices", ["2 TB"], "must be sizes written"),
    ("keycloak_image", "Quay.io/Keycloak:latest", "not a valid image reference"),
    ("jupyterhub_authenticator", "ldap", "must be one of"),
    ("keycloak_realm_file", "/nonexistent/realm.json", "is not a JSON realm representation"),
    ("minio_storage_size", "ten gigs", "expected Kubernetes quantities"),
    ("keycloak_resources", {"requests": {"memory": "lots"}}, 'keycloak_resources.requests.memory = "lots"'),
    ("minio_bucket", "My_Bucket", "is not an S3 bucket name"),
    ("datalab_helm_binary", "/nonexistent/helm", "does not run as Helm 3"),
    ("datalab_tolerations", {"key": "pool"}, "unable to convert to list"),
    ("datalab_node_selector", ["pool=a"], "unable to convert to dict"),
    ("datalab_kubeconfig", "/nonexistent/kubeconfig", "is not a readable file"),
    ("datalab_context", "elsewhere", "is not a context of"),
    ("datalab_namespace", "Not_A_Label", "DNS-1123 label"),
    ("datalab_tls_provider", "vault", "must be one of"),
    ("jupyterhub_s3_endpoint", "minio:9000", "must be an http(s) URL"),
    ("jupyterhub_executor_allowed_secrets", ["Bad_Name"], "must be Secret names"),
    ("jupyterhub_chart_ref", "/nonexistent/jupyterhub.tgz", "does not exist"),
    ("spark_image_python_version", "python3", "must look like 3.11"),
    ("spark_image_jars", [{"group": "g", "artifact": "a", "version": "1", "sha1": "xyz"}], "40-hex sha1"),
    ("spark_image_engine", "kaniko", "must be one of"),
    ("secret_operator_timeout", "soon", "unable to convert to int"),
]


@pytest.mark.parametrize("variable,value,says", CASES,
                         ids=["%s=%s" % (v, json.dumps(x)[:24]) for v, x, dummy in CASES])
def test_bad_input_stops_site_yml_before_any_change(bed, variable, value, says):
    hostvars = dict(bed["hostvars"])
    value = {"@hub": bed["hub_port"], "@other": bed["other_port"]}.get(value, value) if isinstance(value, str) else value
    hostvars[variable] = value
    if variable == "jupyterhub_chart_ref":
        hostvars["jupyterhub_chart_repo_url"] = ""
    inventory = write_inventory(bed["tmp"] / ("hosts-%s.yml" % uuid.uuid4().hex[:6]), hostvars)
    before, realms_before = snapshot(bed["dyn"]), realms(bed["admin"])

    rc, out = run_playbook(inventory, "site.yml", timeout=600)

    assert rc != 0, out[-3000:]
    (line,) = [line for line in out.splitlines() if "Nothing was changed" in line and "fatal:" in line]
    failure = json.loads(line.split("=> ", 1)[1])["msg"]
    assert variable in failure and says in failure, failure
    # The value as given: text as it is, anything else as JSON or Python shows it (a resources dict is
    # named down to the bad leaf in `says`).
    shown = [value] if isinstance(value, str) else [json.dumps(value), repr(value), str(value)]
    assert any(form in failure for form in shown) or variable + "." in says, "%r not in: %s" % (shown, failure)
    assert "changed=0" in out
    assert difference(before, snapshot(bed["dyn"])) == []
    assert realms(bed["admin"]) == realms_before
    with pytest.raises(ApiException) as err:
        bed["core"].read_namespace(bed["hostvars"]["datalab_namespace"])
    assert err.value.status == 404


def test_the_same_install_with_good_input_passes_the_preflight(bed):
    """The control case: without a bad value the preflight play passes (run alone, it changes nothing)."""
    inventory = write_inventory(bed["tmp"] / "hosts-good.yml", dict(bed["hostvars"]))
    before = snapshot(bed["dyn"])
    rc, out = run_playbook(inventory, "playbooks/preflight.yml", timeout=600)
    assert rc == 0, out[-3000:]
    assert "failed=0" in out and "changed=0" in out
    assert difference(before, snapshot(bed["dyn"])) == []
