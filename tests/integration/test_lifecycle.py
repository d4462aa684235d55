"""Day-2 lifecycle on the test bed (issue 7): secret rotation, upgrade, uninstall/purge, recovery.

One install of its own (host lab-life, namespace datalab-life-<id>, realm demo-life-<id>, node
ports 31293/31295 when free) is converged once with site.yml; each test then does one lifecycle
step on it, in file order, and leaves it converged for the next one:

- rotation: playbooks/rotate_secrets.yml; the real test-bed Keycloak refuses the old client
  secret and accepts the new one in the hub's own flow (authorization code), the hub rolls out
  with the new fingerprint, the -vv log holds neither value;
- upgrade: a new Keycloak image tag and the next chart version in the inventory (the real Z2JH 4.4.0
  chart, repackaged by the test as 4.4.1-next.1 with new hub and proxy image tags); site.yml
  --diff shows the image change, changes exactly those two tasks and objects, waits for both
  rollouts;
- uninstall: removes everything of the install and nothing of another install (canary objects of
  a fake second install, a foreign object in the namespace), keeps the persistent data, a second
  run is changed=0; site.yml converges again on the kept data; purge removes the data, the realm
  and (once nothing foreign is left) the namespace; a second purge is changed=0;
- recovery: a fresh converge killed (SIGKILL of the process group) after Keycloak and before
  JupyterHub; the rerun succeeds, the objects equal those of an uninterrupted converge, a further
  run is changed=0;
- recovery inside Helm: a run killed while Helm upgrades the hub (a pod quota holds the rollout)
  leaves the release pending-upgrade; the rerun rolls that back, upgrades, and a further run is
  changed=0.

Only loopback is contacted: the API server and the test-bed Keycloak on 127.0.0.1.
"""
from __future__ import annotations

import base64
import difflib
import html
import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.ansible_run import REPO, argv, changed_tasks, env, host_recap, run_playbook
from tests.keycloak_admin import KeycloakAdmin
from tests.node_ports import free_node_ports
from tests.realplatform import helm_values, upstream_chart
from tests.standins.secret_operator import truststore_controller

CHART = upstream_chart()
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not CHART.is_file(), reason=f"{CHART} is not on this machine (DATALAB_UPSTREAM_CHARTS)")]

# The real chart, and the "next" one the upgrade tests move to: the same chart repackaged by the test
# (tmp dir) with a new version and new hub/proxy image tags, as a real chart upgrade brings.
CHART_VERSION, CHART_VERSION_NEXT = "4.4.0", "4.4.1-next.1"
HUB_IMAGE, HUB_IMAGE_NEXT = "quay.io/jupyterhub/k8s-hub:4.4.0", "quay.io/jupyterhub/k8s-hub:4.4.1"
PROXY_IMAGE, PROXY_IMAGE_NEXT = ("quay.io/jupyterhub/configurable-http-proxy:5.2.0",
                                 "quay.io/jupyterhub/configurable-http-proxy:5.2.1")
KEYCLOAK_IMAGE = "quay.io/keycloak/keycloak:26.5.5"
KEYCLOAK_IMAGE_NEXT = "quay.io/keycloak/keycloak:26.5.6"
INSTANCE_LABELS = ("app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance")
NODE_IP = re.compile(r"127\.0\.[01]\.\d{1,3}")
HOST = "lab-life"
# Where the killed converge stops: Keycloak is done, MinIO is being rolled out, the hub not started.
KILL_AT = "TASK [datalab.notebooks.minio : Create the MinIO data volume claim and Service, deploy MinIO and wait for it]"


# --- running playbooks ------------------------------------------------------------------

def playbook(life, *args, path="site.yml", log=None):
    started = time.monotonic()
    rc, out = run_playbook(life["inventory"], path, *args)
    if log:
        (life["tmp"] / log).write_text(out)
    life["timings"].append((log or path, round(time.monotonic() - started, 1)))
    return rc, out


def assert_ok(rc, out):
    assert rc == 0, out[-5000:]
    assert host_recap(out, HOST)["failed"] == 0, out[-5000:]


def assert_quiet(rc, out):
    assert_ok(rc, out)
    assert host_recap(out, HOST)["changed"] == 0, changed_tasks(out)


def write_inventory(life):
    life["inventory"].write_text(yaml.safe_dump({"notebook_platform": {
        "hosts": {HOST: life["hostvars"]}, "vars": life["groupvars"]}}, sort_keys=False))


# --- cluster and Keycloak helpers ----------------------------------------------------------

def ignore_missing(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 404:
            raise
    return None


def secret_data(apis, ns, name):
    data = apis["core"].read_namespaced_secret(name, ns).data or {}
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}


def helm_releases(cluster, ns):
    out = subprocess.run([cluster.helm, "list", "-n", ns, "-a", "-o", "json", "--kubeconfig", cluster.kubeconfig],
                         capture_output=True, text=True, check=True).stdout
    return {r["name"]: r for r in json.loads(out or "[]")}


def wait_for(predicate, timeout=180, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError("timed out waiting for " + what)


class Keycloak(KeycloakAdmin):
    """The test-bed Keycloak: admin calls for assertions and the hub's login flow."""

    def authorization_code(self, realm, client_id, redirect_uri, username, password):
        """Log in as a user the way the hub sends a browser: returns the code for redirect_uri."""

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.ctx),
                                             urllib.request.HTTPCookieProcessor(jar), NoRedirect())
        query = urllib.parse.urlencode({"client_id": client_id, "redirect_uri": redirect_uri,
                                        "response_type": "code", "scope": "openid", "state": uuid.uuid4().hex})
        page = self.open(urllib.request.Request(
            "%s/realms/%s/protocol/openid-connect/auth?%s" % (self.url, realm, query)), opener)[1]
        action = html.unescape(re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page.decode()).group(1))
        form = urllib.parse.urlencode({"username": username, "password": password, "credentialId": ""}).encode()
        location = None
        try:
            self.open(urllib.request.Request(action, data=form), opener)
        except urllib.error.HTTPError as exc:
            assert exc.code in (302, 303), exc.code
            location = exc.headers["Location"]
        assert location, "the login did not redirect back to the hub"
        assert location.startswith(redirect_uri + "?"), location
        return urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["code"][0]

    def exchange(self, realm, code, client_id, client_secret, redirect_uri):
        """The hub's token request: (HTTP status, OAuth error or None)."""
        form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                                       "client_id": client_id, "client_secret": client_secret}).encode()
        req = urllib.request.Request("%s/realms/%s/protocol/openid-connect/token" % (self.url, realm), data=form)
        try:
            status, body = self.open(req)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}").get("error")
        assert "access_token" in json.loads(body)
        return status, None


# --- what an install looks like, without what differs between two correct converges ----------

def _mask(value):
    """Generated values (fingerprints, the CA, node addresses picked by the scheduler) masked."""
    if isinstance(value, dict):
        return {k: ("<checksum>" if "checksum" in k else _mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str):
        if "-----BEGIN CERTIFICATE-----" in value:
            return "<certificate>"
        return NODE_IP.sub("<node-ip>", value)
    return value


def _meta(api_client, obj):
    meta = api_client.sanitize_for_serialization(obj.metadata)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if not k.startswith(("deployment.kubernetes.io/", "pv.kubernetes.io/", "volume."))}
    return {"labels": meta.get("labels") or {}, "annotations": annotations}


def snapshot(apis, cluster, life):
    """Specs, data keys and labels of every object of the install (plus the realm), masked."""
    ns, ac = life["ns"], apis["client"]
    core, apps, batch, rbac, adm = apis["core"], apis["apps"], apis["batch"], apis["rbac"], apis["adm"]
    shot = {}

    def add(kind, items, body):
        for obj in items:
            if obj.metadata.name in ("kube-root-ca.crt", "default") or obj.metadata.deletion_timestamp:
                continue
            shot["%s/%s" % (kind, obj.metadata.name)] = dict(_meta(ac, obj), **body(obj))

    def spec(obj, *drop):
        data = ac.sanitize_for_serialization(obj.spec)
        for key in drop:
            data.pop(key, None)
        return data

    namespace = ignore_missing(core.read_namespace, ns)
    shot["Namespace"] = namespace.metadata.labels if namespace else None
    add("Deployment", apps.list_namespaced_deployment(ns).items, lambda o: {"spec": spec(o)})
    add("Service", core.list_namespaced_service(ns).items, lambda o: {"spec": spec(o, "clusterIP", "clusterIPs")})
    add("PersistentVolumeClaim", core.list_namespaced_persistent_volume_claim(ns).items,
        lambda o: {"spec": spec(o, "volumeName")})
    add("ServiceAccount", core.list_namespaced_service_account(ns).items,
        lambda o: {"automount": o.automount_service_account_token})
    # Helm's release records are named by revision: the release is compared below instead.
    add("Secret", [o for o in core.list_namespaced_secret(ns).items if not o.type.startswith("helm.sh/")],
        lambda o: {"type": o.type, "keys": sorted(o.data or {})})
    # The jupyterhub role's release record holds Helm's revision and a digest of the values (with the node
    # address in them): compared by its keys, as the release itself is compared by chart and status.
    add("ConfigMap", core.list_namespaced_config_map(ns).items, lambda o: {"data": {
        k: ("<recorded>" if o.metadata.name.endswith("-release-record") else json.loads(v) if k.endswith(".json") else v)
        for k, v in (o.data or {}).items()}, "binary": sorted(o.binary_data or {})})
    add("Job", batch.list_namespaced_job(ns).items, lambda o: {"containers": ac.sanitize_for_serialization(
        o.spec.template.spec.containers)})
    add("Role", rbac.list_namespaced_role(ns).items, lambda o: {"rules": ac.sanitize_for_serialization(o.rules)})
    add("RoleBinding", rbac.list_namespaced_role_binding(ns).items, lambda o: {
        "ref": ac.sanitize_for_serialization(o.role_ref), "subjects": ac.sanitize_for_serialization(o.subjects)})
    selector = "app.kubernetes.io/instance=" + ns
    add("ValidatingAdmissionPolicy", adm.list_validating_admission_policy(label_selector=selector).items,
        lambda o: {"spec": spec(o)})
    add("ValidatingAdmissionPolicyBinding", adm.list_validating_admission_policy_binding(
        label_selector=selector).items, lambda o: {"spec": spec(o)})
    shot["helm"] = {name: (r["chart"], r["status"]) for name, r in helm_releases(cluster, ns).items()}
    kc, realm = life["kc"], life["realm"]
    status, clients = kc.request("GET", "/%s/clients?clientId=jupyterhub" % realm)
    if status == 200 and clients:
        (cl,) = clients
        users = kc.request("GET", "/%s/users?max=100" % realm)[1]
        groups = kc.request("GET", "/%s/groups" % realm)[1]
        fields = ("redirectUris", "webOrigins", "rootUrl", "publicClient", "standardFlowEnabled",
                  "directAccessGrantsEnabled")
        shot["realm"] = {"client": {k: cl.get(k) for k in fields},
                         "users": sorted(u["username"] for u in users), "groups": sorted(g["name"] for g in groups)}
    else:
        shot["realm"] = None
    return _mask(shot)


def assert_same(actual, expected):
    lines = []
    for key in sorted(set(actual) | set(expected)):
        if actual.get(key) != expected.get(key):
            lines += difflib.unified_diff(json.dumps(expected.get(key), indent=1, sort_keys=True).splitlines(),
                                          json.dumps(actual.get(key), indent=1, sort_keys=True).splitlines(),
                                          "expected " + key, "actual " + key, lineterm="", n=2)
    assert not lines, "objects differ from an uninterrupted converge:\n" + "\n".join(lines)[:8000]


def resource_versions(apis, ns):
    """resourceVersion of each object the collection applied itself (the Helm release's objects excluded)."""
    selector = "app.kubernetes.io/managed-by=datalab.notebooks,app.kubernetes.io/instance=" + ns
    core, apps, batch, rbac, adm = apis["core"], apis["apps"], apis["batch"], apis["rbac"], apis["adm"]
    lists = {
        "Deployment": apps.list_namespaced_deployment(ns, label_selector=selector),
        "Service": core.list_namespaced_service(ns, label_selector=selector),
        "ConfigMap": core.list_namespaced_config_map(ns, label_selector=selector),
        "Secret": core.list_namespaced_secret(ns, label_selector=selector),
        "ServiceAccount": core.list_namespaced_service_account(ns, label_selector=selector),
        "PersistentVolumeClaim": core.list_namespaced_persistent_volume_claim(ns, label_selector=selector),
        "Job": batch.list_namespaced_job(ns, label_selector=selector),
        "Role": rbac.list_namespaced_role(ns, label_selector=selector),
        "RoleBinding": rbac.list_namespaced_role_binding(ns, label_selector=selector),
        "ValidatingAdmissionPolicy": adm.list_validating_admission_policy(label_selector=selector),
        "ValidatingAdmissionPolicyBinding": adm.list_validating_admission_policy_binding(label_selector=selector),
    }
    # The converge stamp is rewritten by every full run that changed something: bookkeeping, not a platform object.
    return {"%s/%s" % (kind, o.metadata.name): o.metadata.resource_version
            for kind, found in lists.items() for o in found.items
            if "meta.helm.sh/release-name" not in (o.metadata.annotations or {})
            and (kind, o.metadata.name) != ("Secret", "datalab-converge-stamp")}


def rolled_out(apis, ns, name, image):
    """The Deployment's rollout finished and its only pod runs `image`."""
    dep = apis["apps"].read_namespaced_deployment(name, ns)
    assert dep.spec.template.spec.containers[0].image == image
    status = dep.status
    assert (status.observed_generation, status.updated_replicas, status.available_replicas, status.replicas) == (
        dep.metadata.generation, 1, 1, 1), status
    selector = ",".join("%s=%s" % kv for kv in dep.spec.selector.match_labels.items())
    pods = [p for p in apps_pods(apis, ns, selector) if not p.metadata.deletion_timestamp]
    assert [p.spec.containers[0].image for p in pods] == [image], [p.metadata.name for p in pods]
    assert all(c.ready for c in pods[0].status.container_statuses), pods[0].status
    return dep, pods[0]


def apps_pods(apis, ns, selector):
    return apis["core"].list_namespaced_pod(ns, label_selector=selector).items


def generated_secrets(apis, ns):
    """Every generated value of the install that must never reach a log."""
    values = []
    for name, keys in {"keycloak-admin": ["password"], "jupyterhub-oauth-client": ["client-secret"],
                       "keycloak-tls": ["password"], "minio-s3-credentials": ["accessKey", "secretKey"],
                       "datalab-ca-key": ["ca.key"]}.items():
        try:
            data = secret_data(apis, ns, name)
        except ApiException:
            continue
        values += [data[k].splitlines()[1] if k == "ca.key" else data[k] for k in keys]
    return values


def assert_no_secret_in(log, values):
    assert "task path:" in log  # really -vv
    leaked = [v[:4] + "..." for v in values if v and v in log]
    assert not leaked, "generated secrets in the log: %s" % leaked


def wipe(apis, life):
    """Remove whatever this module created, without the code under test."""
    for ns in (life["ns"], life["other_ns"]):
        ignore_missing(apis["core"].delete_namespace, ns)
    for ns in (life["ns"], life["other_ns"]):
        selector = "app.kubernetes.io/instance=" + ns
        for item in apis["adm"].list_validating_admission_policy_binding(label_selector=selector).items:
            ignore_missing(apis["adm"].delete_validating_admission_policy_binding, item.metadata.name)
        for item in apis["adm"].list_validating_admission_policy(label_selector=selector).items:
            ignore_missing(apis["adm"].delete_validating_admission_policy, item.metadata.name)
    if life["kc"].realm_exists(life["realm"]):
        life["kc"].request("DELETE", "/" + life["realm"])
    for ns in (life["ns"], life["other_ns"]):
        wait_for(lambda n=ns: ignore_missing(apis["core"].read_namespace, n) is None, 300, "namespace %s gone" % ns)


# --- the install under test ------------------------------------------------------------------

@pytest.fixture(scope="module")
def apis(cluster):
    api_client = config.new_client_from_config(config_file=cluster.kubeconfig)
    return {"client": api_client, "core": client.CoreV1Api(api_client), "apps": client.AppsV1Api(api_client),
            "batch": client.BatchV1Api(api_client), "rbac": client.RbacAuthorizationV1Api(api_client),
            "adm": client.AdmissionregistrationV1Api(api_client)}


def next_chart(tmp: Path) -> Path:
    """The real chart unpacked into `tmp`, with version CHART_VERSION_NEXT and the next hub/proxy tags."""
    subprocess.run(["tar", "-xzf", str(CHART), "-C", str(tmp)], check=True)
    chart = tmp / "jupyterhub"
    meta = chart / "Chart.yaml"
    text, n = re.subn(r"^version: 4\.4\.0$", f"version: {CHART_VERSION_NEXT}", meta.read_text(), flags=re.M)
    assert n == 1, "the chart's Chart.yaml has no line version: 4.4.0"
    meta.write_text(text)
    values = chart / "values.yaml"
    text = values.read_text()
    for image, nxt in ((HUB_IMAGE, HUB_IMAGE_NEXT), (PROXY_IMAGE, PROXY_IMAGE_NEXT)):
        name, tag = image.rsplit(":", 1)
        pattern = r"(name: %s\n(?:\s+#.*\n)*\s+tag: \")%s(\")" % (re.escape(name), re.escape(tag))
        text, n = re.subn(pattern, r"\g<1>%s\g<2>" % nxt.rsplit(":", 1)[1], text)
        assert n == 1, f"values.yaml: no single tag {tag} under name {name}"
    values.write_text(text)
    return chart


@pytest.fixture(scope="module")
def life(cluster, keycloak, apis, tmp_path_factory):
    uid = uuid.uuid4().hex[:6]
    tmp = tmp_path_factory.mktemp("lifecycle")
    ports = free_node_ports(apis["core"], 2)
    ns = "datalab-life-" + uid
    info = {
        "next_chart": next_chart(tmp), "ns": ns, "other_ns": ns + "-other", "realm": "demo-life-" + uid, "kc_port": ports[0], "hub_port": ports[1],
        "tmp": tmp, "inventory": tmp / "hosts.yml", "kc": Keycloak(keycloak), "timings": [], "reference": None,
    }
    info["hostvars"] = {"datalab_namespace": ns, "datalab_keycloak_realm": info["realm"],
                        "keycloak_node_port": ports[0], "datalab_hub_node_port": ports[1]}
    info["groupvars"] = {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "datalab_kubeconfig": cluster.kubeconfig, "datalab_helm_binary": cluster.helm,
        "datalab_tls_provider": "self_signed",
        "keycloak_image": KEYCLOAK_IMAGE, "keycloak_demo_users": True, "keycloak_demo_passwords": "username",
        "keycloak_admin_url": keycloak["url"], "keycloak_admin_username": keycloak["username"],
        "keycloak_admin_password": keycloak["password"], "keycloak_admin_ca_path": keycloak["ca_path"],
        # The realm lives in the test bed's Keycloak: browsers (the login flows below) go there, and the
        # realm's frontendUrl says so.
        "keycloak_public_address": urllib.parse.urlsplit(keycloak["url"]).netloc,
        "keycloak_rollout_timeout": 120, "minio_rollout_timeout": 120, "minio_job_timeout": 120,
        "minio_demo_data_url": "", "minio_demo_data_file": "",
        "jupyterhub_chart_ref": str(CHART), "jupyterhub_chart_repo_url": "",
        "jupyterhub_chart_version": CHART_VERSION,
        "jupyterhub_helm_timeout": "3m0s", "jupyterhub_admin_users": ["isla.williams"],
        "jupyterhub_spark_executor_image": "datalab/spark-executor:3.5.2-python3.11", "spark_image_build": False,
    }
    write_inventory(info)
    rc, out = playbook(info, log="converge.log")
    assert_ok(rc, out)
    info["reference"] = snapshot(apis, cluster, info)
    yield info
    try:
        wipe(apis, info)
    finally:
        print("\nlifecycle timings (s):", info["timings"])


# --- 4. secret rotation ----------------------------------------------------------------------

def test_rotation_replaces_the_hub_client_secret_in_keycloak_and_the_hub(life, apis, cluster):
    ns, realm, kc = life["ns"], life["realm"], life["kc"]
    old = secret_data(apis, ns, "jupyterhub-oauth-client")
    node_ip = apis["core"].read_namespaced_config_map("keycloak-address", ns).data["keycloakNodeIp"]
    callback = "http://%s:%d/hub/oauth_callback" % (node_ip, life["hub_port"])
    hub_before = apis["apps"].read_namespaced_deployment("hub", ns)
    checksum_before = hub_before.spec.template.metadata.annotations["datalab.notebooks/oauth-client-checksum"]
    code = kc.authorization_code(realm, "jupyterhub", callback, "isla.williams", "isla.williams")
    assert kc.exchange(realm, code, "jupyterhub", old["client-secret"], callback) == (200, None)

    rc, out = playbook(life, "-vv", path="playbooks/rotate_secrets.yml", log="rotate.log")
    assert_ok(rc, out)

    new = secret_data(apis, ns, "jupyterhub-oauth-client")
    assert new["client-id"] == old["client-id"] == "jupyterhub"
    assert new["client-secret"] != old["client-secret"] and len(new["client-secret"]) == 32
    # The hub's own login flow against the real Keycloak: the old secret is refused, the new one works.
    code = kc.authorization_code(realm, "jupyterhub", callback, "isla.williams", "isla.williams")
    status, error = kc.exchange(realm, code, "jupyterhub", old["client-secret"], callback)
    assert status == 401 and error in ("unauthorized_client", "invalid_client"), (status, error)
    assert kc.exchange(realm, code, "jupyterhub", new["client-secret"], callback) == (200, None)
    # The realm Secret (for --import-realm on a fresh database) carries the new value too.
    stored = json.loads(secret_data(apis, ns, "keycloak-realm")["realm.json"])
    assert [c["secret"] for c in stored["clients"] if c["clientId"] == "jupyterhub"] == [new["client-secret"]]
    # The hub: a new fingerprint in its pod template, rolled out; the secret itself reaches it only
    # through the environment (secretKeyRef), never through the chart values.
    values = helm_values(cluster, ns)
    checksum = values["hub"]["annotations"]["datalab.notebooks/oauth-client-checksum"]
    assert checksum != checksum_before
    env = values["hub"]["extraEnv"]["OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert env == {"name": "jupyterhub-oauth-client", "key": "client-secret"}
    assert new["client-secret"] not in json.dumps(values) and old["client-secret"] not in json.dumps(values)
    dep, pod = rolled_out(apis, ns, "hub", hub_before.spec.template.spec.containers[0].image)
    assert dep.metadata.generation > hub_before.metadata.generation
    assert pod.metadata.annotations["datalab.notebooks/oauth-client-checksum"] == checksum
    assert_no_secret_in(out, [old["client-secret"], new["client-secret"]] + generated_secrets(apis, ns))
    assert {"TASK [datalab.notebooks.keycloak : Reconcile the realm in Keycloak, realm %s]" % realm,
            "TASK [datalab.notebooks.jupyterhub : Install the JupyterHub chart]"} <= set(changed_tasks(out))


# --- 3. upgrade --------------------------------------------------------------------------------

def test_the_next_chart_differs_only_in_version_and_images(tmp_path):
    import tarfile

    chart = next_chart(tmp_path)
    with tarfile.open(CHART) as tar:
        original = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    changed = {name for name, data in original.items() if (chart / name).read_bytes() != data}
    assert changed == {"Chart.yaml", "values.yaml"}

    def diff(name):
        lines = list(difflib.unified_diff(original[name].decode().splitlines(), (chart / name).read_text().splitlines(),
                                          lineterm="", n=0))
        return ([line[1:].strip() for line in lines if line.startswith("-") and not line.startswith("---")],
                [line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")])

    assert diff("Chart.yaml") == (["version: 4.4.0"], [f"version: {CHART_VERSION_NEXT}"])
    removed, added = diff("values.yaml")
    assert [line.split("#")[0].strip() for line in removed] == ['tag: "4.4.0"', 'tag: "5.2.0"']
    assert [line.split("#")[0].strip() for line in added] == ['tag: "4.4.1"', 'tag: "5.2.1"']


def test_upgrade_changes_only_the_affected_objects_and_waits_for_the_rollouts(life, apis, cluster):
    ns = life["ns"]
    versions_before = resource_versions(apis, ns)
    release_before = helm_releases(cluster, ns)["jupyterhub"]
    values_before = helm_values(cluster, ns)
    next_version = CHART_VERSION_NEXT
    node_ip_before = apis["core"].read_namespaced_config_map("keycloak-address", ns).data["keycloakNodeIp"]

    # The inventory now pins the new versions; the later tests run with it.
    life["groupvars"].update(keycloak_image=KEYCLOAK_IMAGE_NEXT, jupyterhub_chart_ref=str(life["next_chart"]),
                             jupyterhub_chart_version=next_version)
    write_inventory(life)
    rc, out = playbook(life, "--diff", log="upgrade.log")
    assert_ok(rc, out)

    # The new Keycloak pod may land on another node: the published address follows it (the hub's
    # URL and the realm's redirect URI derive from it), and only then do those three change too.
    expected = {"TASK [datalab.notebooks.keycloak : Create the Keycloak ServiceAccount, volume claim, Service and "
                "Ingress, deploy Keycloak and wait for it]",
                "TASK [datalab.notebooks.jupyterhub : Install the JupyterHub chart]",
                "TASK [datalab.notebooks.jupyterhub : Record what the release was installed from, release jupyterhub]"}
    expected_objects = ["Deployment/keycloak", "ConfigMap/jupyterhub-release-record"]
    node_ip = apis["core"].read_namespaced_config_map("keycloak-address", ns).data["keycloakNodeIp"]
    if node_ip != node_ip_before:
        expected |= {"TASK [datalab.notebooks.keycloak : Publish the Keycloak address for the hub]",
                     "TASK [datalab.notebooks.keycloak : Store the realm in the Secret keycloak-realm]",
                     "TASK [datalab.notebooks.keycloak : Reconcile the realm in Keycloak, realm %s]" % life["realm"]}
        expected_objects += ["ConfigMap/keycloak-address", "Secret/keycloak-realm"]
    assert set(changed_tasks(out)) == expected, changed_tasks(out)
    # --diff shows the image change of the Deployment.
    assert re.search(r"^-\s+\"?image\"?:\s+\"?%s" % re.escape(KEYCLOAK_IMAGE), out, re.M), out[-4000:]
    assert re.search(r"^\+\s+\"?image\"?:\s+\"?%s" % re.escape(KEYCLOAK_IMAGE_NEXT), out, re.M), out[-4000:]
    # --diff shows the chart's change too (helm diff, with the post-renderer's labels): new chart
    # version and hub image in the hub's Deployment.
    assert re.search(r"^-\s+image: \"?%s\"?$" % re.escape(HUB_IMAGE), out, re.M), out[-6000:]
    assert re.search(r"^\+\s+image: \"?%s\"?$" % re.escape(HUB_IMAGE_NEXT), out, re.M), out[-6000:]
    assert re.search(r"^\+\s+helm\.sh/chart: jupyterhub-%s$" % re.escape(next_version), out, re.M), out[-6000:]
    # Both rollouts finished before the run ended.
    rolled_out(apis, ns, "keycloak", KEYCLOAK_IMAGE_NEXT)
    rolled_out(apis, ns, "hub", HUB_IMAGE_NEXT)
    rolled_out(apis, ns, "proxy", PROXY_IMAGE_NEXT)
    release = helm_releases(cluster, ns)["jupyterhub"]
    assert release["chart"] == "jupyterhub-" + next_version and release["status"] == "deployed"
    assert int(release["revision"]) == int(release_before["revision"]) + 1
    values = helm_values(cluster, ns)
    # Same values (up to the node address), new chart.
    assert _mask(values) == _mask(values_before)
    # Nothing else the collection applied was touched.
    versions = resource_versions(apis, ns)
    touched = sorted(k for k in versions_before if versions.get(k) != versions_before[k])
    assert touched == sorted(expected_objects), touched
    life["reference"] = snapshot(apis, cluster, life)


# --- 2. uninstall and purge ----------------------------------------------------------------------

def _canaries(apis, cluster, life):
    """A fake second install (same object names, its own namespace and instance) and its admission policy."""
    other = life["other_ns"]
    labels = {"app.kubernetes.io/part-of": "datalab-notebooks", "app.kubernetes.io/managed-by": "datalab.notebooks",
              "app.kubernetes.io/instance": other, "app.kubernetes.io/name": "keycloak"}
    core = apis["core"]
    core.create_namespace({"metadata": {"name": other, "labels": labels}})
    wait_for(lambda: core.list_namespaced_service_account(other, field_selector="metadata.name=default").items,
             60, "default ServiceAccount")
    core.create_namespaced_secret(other, {"metadata": {"name": "keycloak-admin", "labels": labels},
                                          "stringData": {"username": "admin", "password": "canary"}})
    core.create_namespaced_config_map(other, {"metadata": {"name": "keycloak-address", "labels": labels},
                                              "data": {"keycloakAddress": "127.0.1.2:1"}})
    core.create_namespaced_persistent_volume_claim(other, {"metadata": {"name": "keycloak-data", "labels": labels},
                                                           "spec": {"accessModes": ["ReadWriteOnce"],
                                                                    "resources": {"requests": {"storage": "1Gi"}}}})
    subprocess.run([cluster.helm, "install", "jupyterhub", str(CHART), "-n", other, "--kubeconfig",
                    cluster.kubeconfig, "--set", "proxy.service.type=ClusterIP", "--set", "prePuller.hook.enabled=false",
                    "--set", "prePuller.continuous.enabled=false", "--set", "scheduling.userScheduler.enabled=false",
                    "--wait", "--timeout", "3m"], check=True, capture_output=True)
    name = "datalab-%s-spark-pods" % other
    rules = [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
    apis["adm"].create_validating_admission_policy({
        "metadata": {"name": name, "labels": labels},
        "spec": {"failurePolicy": "Fail", "validations": [{"expression": "true"}], "matchConstraints": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": other}}, "resourceRules": rules}}})
    apis["adm"].create_validating_admission_policy_binding({
        "metadata": {"name": name, "labels": labels},
        "spec": {"policyName": name, "validationActions": ["Deny"], "matchResources": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": other}}}}})
    return _canary_uids(apis, cluster, life)


def _canary_uids(apis, cluster, life):
    other, name = life["other_ns"], "datalab-%s-spark-pods" % life["other_ns"]
    core = apis["core"]
    return {
        "namespace": core.read_namespace(other).metadata.uid,
        "secret": core.read_namespaced_secret("keycloak-admin", other).metadata.uid,
        "configmap": core.read_namespaced_config_map("keycloak-address", other).metadata.uid,
        "pvc": core.read_namespaced_persistent_volume_claim("keycloak-data", other).metadata.uid,
        "hub": apis["apps"].read_namespaced_deployment("hub", other).metadata.uid,
        "helm": helm_releases(cluster, other)["jupyterhub"]["status"],
        "policy": apis["adm"].read_validating_admission_policy(name).metadata.uid,
        "binding": apis["adm"].read_validating_admission_policy_binding(name).metadata.uid,
    }


def _user_objects(apis, ns):
    """What KubeSpawner would have made for a logged-in user: a server pod and a home volume."""
    labels = {"app": "jupyterhub", "release": "jupyterhub", "app.kubernetes.io/managed-by": "kubespawner",
              "hub.jupyter.org/username": "isla.williams"}
    apis["core"].create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": "claim-isla-2ewilliams", "labels": dict(labels, component="singleuser-storage")},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    apis["core"].create_namespaced_pod(ns, {
        "metadata": {"name": "jupyter-isla-2ewilliams", "labels": dict(labels, component="singleuser-server")},
        "spec": {"serviceAccountName": "spark", "containers": [{"name": "notebook", "image": "quay.io/jupyter/"
                                                                "pyspark-notebook:spark-3.5.2"}]}})
    # Something of the namespace owner's that is not part of the install.
    apis["core"].create_namespaced_config_map(ns, {"metadata": {"name": "team-notes"}, "data": {"keep": "me"}})


def _names(items):
    return sorted(o.metadata.name for o in items if not o.metadata.deletion_timestamp)


def test_uninstall_removes_one_install_keeps_its_data_and_purge_removes_the_rest(life, apis, cluster):
    ns, core, realm = life["ns"], apis["core"], life["realm"]
    _user_objects(apis, ns)
    canaries = _canaries(apis, cluster, life)
    before = snapshot(apis, cluster, life)
    data_uids = {p.metadata.name: p.metadata.uid for p in core.list_namespaced_persistent_volume_claim(ns).items}
    kept_secrets = {n: secret_data(apis, ns, n) for n in ("keycloak-admin", "minio-s3-credentials")}
    secrets = generated_secrets(apis, ns)

    # The preview names what would go and removes nothing.
    rc, out = playbook(life, "--check", "--diff", path="playbooks/uninstall.yml", log="uninstall-check.log")
    assert_ok(rc, out)
    assert host_recap(out, HOST)["changed"] > 0 and '"Deployment/keycloak",' in out and '"Secret/keycloak-admin",' not in out
    assert snapshot(apis, cluster, life) == before and set(helm_releases(cluster, ns)) == {"jupyterhub"}

    # Uninstall: everything of the install goes, the data and everything of others stays.
    rc, out = playbook(life, "-vv", path="playbooks/uninstall.yml", log="uninstall.log")
    assert_ok(rc, out)
    assert_no_secret_in(out, secrets)
    assert helm_releases(cluster, ns) == {}
    assert _names(apps_pods(apis, ns, "")) == []
    assert _names(apis["apps"].list_namespaced_deployment(ns).items) == []
    assert _names(core.list_namespaced_service(ns).items) == []
    assert _names(apis["batch"].list_namespaced_job(ns).items) == []
    assert _names(apis["rbac"].list_namespaced_role(ns).items) == []
    assert _names(apis["rbac"].list_namespaced_role_binding(ns).items) == []
    assert _names(core.list_namespaced_service_account(ns).items) == ["default"]
    assert _names(core.list_namespaced_config_map(ns).items) == ["kube-root-ca.crt", "team-notes"]
    assert _names(core.list_namespaced_secret(ns).items) == ["keycloak-admin", "minio-s3-credentials"]
    assert {p.metadata.name: p.metadata.uid for p in core.list_namespaced_persistent_volume_claim(ns).items} \
        == data_uids == {n: data_uids[n] for n in ("claim-isla-2ewilliams", "hub-db-dir", "keycloak-data", "minio-data")}
    selector = "app.kubernetes.io/instance=" + ns
    assert apis["adm"].list_validating_admission_policy(label_selector=selector).items == []
    assert apis["adm"].list_validating_admission_policy_binding(label_selector=selector).items == []
    assert life["kc"].realm_exists(realm), "the realm is persistent data: kept without purge"
    assert _canary_uids(apis, cluster, life) == canaries

    rc, out = playbook(life, path="playbooks/uninstall.yml", log="uninstall-again.log")
    assert_quiet(rc, out)

    # site.yml installs again on the kept data: same volumes, same credentials, same objects.
    rc, out = playbook(life, log="reinstall.log")
    assert_ok(rc, out)
    assert {p.metadata.name: p.metadata.uid for p in core.list_namespaced_persistent_volume_claim(ns).items} \
        == data_uids
    assert {n: secret_data(apis, ns, n) for n in kept_secrets} == kept_secrets
    after = snapshot(apis, cluster, life)
    assert_same(after, before)
    clients = life["kc"].request("GET", "/%s/clients?clientId=jupyterhub" % realm)[1]
    secret = life["kc"].request("GET", "/%s/clients/%s/client-secret" % (realm, clients[0]["id"]))[1]
    assert secret["value"] == secret_data(apis, ns, "jupyterhub-oauth-client")["client-secret"]
    # The reference for an install from nothing: without the user's volume and the foreign ConfigMap.
    life["reference"] = {k: v for k, v in after.items()
                         if k not in ("PersistentVolumeClaim/claim-isla-2ewilliams", "ConfigMap/team-notes")}

    # Purge: the data and the realm go; the namespace stays while it holds an object of someone else.
    rc, out = playbook(life, "-e", "datalab_uninstall_purge=true", path="playbooks/uninstall.yml", log="purge.log")
    assert_ok(rc, out)
    assert "still holds objects that are not part of this install: ConfigMap/team-notes" in out
    assert _names(core.list_namespaced_persistent_volume_claim(ns).items) == []
    assert _names(core.list_namespaced_secret(ns).items) == []
    assert _names(core.list_namespaced_config_map(ns).items) == ["kube-root-ca.crt", "team-notes"]
    assert not life["kc"].realm_exists(realm)
    core.delete_namespaced_config_map("team-notes", ns)
    rc, out = playbook(life, "-e", "datalab_uninstall_purge=true", path="playbooks/uninstall.yml",
                       log="purge-namespace.log")
    assert_ok(rc, out)
    assert "TASK [datalab.notebooks.common : Delete the namespace %s]" % ns in changed_tasks(out)
    assert ignore_missing(core.read_namespace, ns) is None
    rc, out = playbook(life, "-e", "datalab_uninstall_purge=true", path="playbooks/uninstall.yml",
                       log="purge-again.log")
    assert_quiet(rc, out)
    assert _canary_uids(apis, cluster, life) == canaries


# --- 5. recovery after an interrupted converge ---------------------------------------------------

def test_a_converge_killed_after_keycloak_recovers_on_rerun(life, apis, cluster):
    ns, core = life["ns"], apis["core"]
    if ignore_missing(core.read_namespace, ns) is not None:  # run alone: start from nothing
        wipe(apis, life)
    reference = life["reference"]

    started = time.monotonic()
    proc = subprocess.Popen(argv(life["inventory"], "site.yml"), cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(KILL_AT):
                time.sleep(0.5)  # into the task: the MinIO Deployment is being applied and awaited
                break
        else:
            raise AssertionError("the converge ended before MinIO:\n" + "".join(seen[-80:]))
        # After Keycloak (its address is published, the realm exists), before JupyterHub.
        assert core.read_namespaced_config_map("keycloak-address", ns).data["keycloakAddress"]
        assert life["kc"].realm_exists(life["realm"])
        assert helm_releases(cluster, ns) == {}
    finally:
        kill_run(proc)
        proc.stdout.close()
    life["timings"].append(("killed converge", round(time.monotonic() - started, 1)))
    (life["tmp"] / "killed.log").write_text("".join(seen))
    assert proc.returncode == -signal.SIGKILL
    assert not any(line.startswith("PLAY [Deploy JupyterHub") for line in seen)

    rc, out = playbook(life, log="recovered.log")
    assert_ok(rc, out)
    assert_same(snapshot(apis, cluster, life), reference)
    rc, out = playbook(life, log="recovered-again.log")
    assert_quiet(rc, out)


def _descendants(pid):
    """Process ids below `pid` (read from /proc), e.g. the module processes and helm of a playbook run."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _is_helm(pid):
    try:
        return Path("/proc/%d/exe" % pid).resolve().name == "helm"
    except OSError:
        return False


def kill_run(proc):
    """SIGKILL a playbook run with everything it started: Ansible runs modules in sessions of their
    own, which a kill of its process group would leave running (a helm upgrade would finish)."""
    below = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(30)
    return below


def _release_secrets(apis, ns, release):
    """Helm's own record of the release: revision -> status (from the labels of its storage Secrets)."""
    found = apis["core"].list_namespaced_secret(ns, label_selector="owner=helm,name=" + release).items
    return {int(s.metadata.labels["version"]): s.metadata.labels["status"] for s in found}


def test_a_run_killed_while_helm_upgrades_the_hub_is_undone_and_completed(life, apis, cluster):
    """Killed inside "Install the JupyterHub chart": Helm leaves the release pending-upgrade and would
    refuse every later operation; the rerun rolls the interrupted upgrade back and upgrades again."""
    ns, core = life["ns"], apis["core"]
    if helm_releases(cluster, ns).get("jupyterhub", {}).get("status") != "deployed":  # run alone
        rc, out = playbook(life, log="helm-kill-setup.log")
        assert_ok(rc, out)
    start = _release_secrets(apis, ns, "jupyterhub")
    pending_revision = max(start) + 1
    # A change for the chart to roll out: the inventory switches to the other chart version (back to
    # the first one after the upgrade test). A quota that admits no pod holds the hub's
    # rollout, so Helm waits in pending-upgrade.
    charts = {CHART_VERSION: (CHART, HUB_IMAGE, PROXY_IMAGE),
              CHART_VERSION_NEXT: (life["next_chart"], HUB_IMAGE_NEXT, PROXY_IMAGE_NEXT)}
    deployed = helm_releases(cluster, ns)["jupyterhub"]["chart"]
    (target_version, (target_chart, target_hub, target_proxy)), = [
        (v, c) for v, c in charts.items() if deployed != "jupyterhub-" + v]
    life["groupvars"].update(jupyterhub_chart_ref=str(target_chart), jupyterhub_chart_version=target_version)
    write_inventory(life)
    core.create_namespaced_resource_quota(ns, {"metadata": {"name": "hold-rollouts"}, "spec": {"hard": {"pods": "0"}}})
    started = time.monotonic()
    log = open(life["tmp"] / "helm-killed.log", "w")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(argv(life["inventory"], "site.yml"), cwd=REPO, env=env(), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while _release_secrets(apis, ns, "jupyterhub").get(pending_revision) != "pending-upgrade":
            assert proc.poll() is None, "the run ended before Helm started the upgrade: see helm-killed.log"
            assert time.monotonic() < deadline, "Helm never started the upgrade"
            time.sleep(0.3)
        time.sleep(1)  # Helm has applied the new objects and waits for the hub's rollout
        helm_pids = [pid for pid in _descendants(proc.pid) if _is_helm(pid)]
        assert helm_pids, "no helm process under the run"
    finally:
        kill_run(proc)
        log.close()
        core.delete_namespaced_resource_quota("hold-rollouts", ns)
    life["timings"].append(("killed inside helm", round(time.monotonic() - started, 1)))
    assert proc.returncode == -signal.SIGKILL
    assert _release_secrets(apis, ns, "jupyterhub")[pending_revision] == "pending-upgrade"
    assert helm_releases(cluster, ns)["jupyterhub"]["status"] == "pending-upgrade"

    rc, out = playbook(life, log="helm-recovered.log")
    assert_ok(rc, out)
    undo = "TASK [datalab.notebooks.jupyterhub : Undo the interrupted operation (pending-install, -upgrade or -rollback)"
    assert any(t.startswith(undo) for t in changed_tasks(out)), changed_tasks(out)
    assert "TASK [datalab.notebooks.jupyterhub : Install the JupyterHub chart after the recovery]" in changed_tasks(out)
    # Helm's history: the interrupted upgrade (Helm keeps that record as it was), its rollback, then
    # the upgrade that completed, which is the release now.
    history = _release_secrets(apis, ns, "jupyterhub")
    assert max(history) == pending_revision + 2, history
    assert (history[pending_revision + 1], history[pending_revision + 2]) == ("superseded", "deployed"), history
    release = helm_releases(cluster, ns)["jupyterhub"]
    assert release["chart"] == "jupyterhub-" + target_version and int(release["revision"]) == pending_revision + 2
    rolled_out(apis, ns, "hub", target_hub)
    rolled_out(apis, ns, "proxy", target_proxy)
    rc, out = playbook(life, log="helm-recovered-again.log")
    assert_quiet(rc, out)
    life["reference"] = snapshot(apis, cluster, life)


# --- the shared TLS operators ------------------------------------------------------------------------

def test_uninstall_keeps_the_shared_operators_unless_asked_and_unused(life, apis, cluster):
    """secret_operator_uninstall_operators removes the operator releases, only when no install uses them; the
    install's TrustStore goes with the install."""
    crds = ("secretclasses.secrets.stackable.tech", "truststores.secrets.stackable.tech")
    ext = client.ApiextensionsV1Api(apis["client"])
    if any(ext.list_custom_resource_definition(field_selector="metadata.name=" + crd).items for crd in crds):
        pytest.skip("the Stackable CRDs belong to someone else on this cluster")
    uid = life["ns"].rsplit("-", 1)[1]
    ops, user_ns, ns = "dl-life-ops-" + uid, "dl-life-so-user-" + uid, "dl-life-so-" + uid
    standins = REPO / "tests" / "standins" / "charts"
    connection = ("ansible_connection", "ansible_python_interpreter", "datalab_kubeconfig", "datalab_helm_binary")
    so = dict(life, inventory=life["tmp"] / "operators.yml")
    so["inventory"].write_text(yaml.safe_dump({"notebook_platform": {"hosts": {HOST: {
        "datalab_namespace": ns, "datalab_tls_provider": "secret_operator", "secret_operator_namespace": ops,
        "secret_operator_chart_ref": str(standins / "secret-operator"), "secret_operator_chart_version": "",
        "secret_operator_commons_chart_ref": str(standins / "commons-operator"),
        "secret_operator_commons_chart_version": "", "secret_operator_timeout": 60}},
        "vars": {k: life["groupvars"][k] for k in connection}}}))
    try:
        with truststore_controller(apis["client"]):
            rc, out = playbook(so, path="playbooks/secret_operator.yml", log="operators.log")
        assert_ok(rc, out)
        assert apis["core"].read_namespaced_config_map("datalab-ca", ns).data["ca.crt"]
        # Another install still gets its keystore from the operators (as the keycloak role mounts it).
        apis["core"].create_namespace({"metadata": {"name": user_ns}})
        volume = {"name": "tls", "ephemeral": {"volumeClaimTemplate": {"spec": {
            "storageClassName": "secrets.stackable.tech", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1"}}}}}}
        apis["apps"].create_namespaced_deployment(user_ns, {
            "metadata": {"name": "keycloak", "labels": {"app.kubernetes.io/part-of": "datalab-notebooks"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "kc"}}, "template": {
                "metadata": {"labels": {"app": "kc"}},
                "spec": {"containers": [{"name": "kc", "image": KEYCLOAK_IMAGE}], "volumes": [volume]}}}})

        rc, out = playbook(so, path="playbooks/uninstall.yml", log="operators-kept.log")
        assert_ok(rc, out)
        assert "serve every install on the cluster and are kept" in out
        # the install's TrustStore is removed, and with it (garbage collection) the ConfigMap the operator wrote
        custom = client.CustomObjectsApi(apis["client"])
        assert not custom.list_namespaced_custom_object("secrets.stackable.tech", "v1alpha1", ns, "truststores")["items"]
        wait_for(lambda: ignore_missing(apis["core"].read_namespaced_config_map, "datalab-ca", ns) is None, 60,
                 "ConfigMap datalab-ca removed with its TrustStore")
        rc, out = playbook(so, "-e", "secret_operator_uninstall_operators=true", path="playbooks/uninstall.yml",
                           log="operators-in-use.log")
        assert_quiet(rc, out)
        assert "installs in namespace(s) %s still get" % user_ns in out
        assert set(helm_releases(cluster, ops)) == {"secret-operator", "commons-operator"}

        apis["core"].delete_namespace(user_ns)
        wait_for(lambda: not apis["apps"].list_namespaced_deployment(user_ns).items, 120, "the other install gone")
        rc, out = playbook(so, "-e", "secret_operator_uninstall_operators=true", path="playbooks/uninstall.yml",
                           log="operators-removed.log")
        assert_ok(rc, out)
        assert helm_releases(cluster, ops) == {}
        assert ignore_missing(apis["core"].read_namespace, ops) is None
        rc, out = playbook(so, "-e", "secret_operator_uninstall_operators=true", path="playbooks/uninstall.yml",
                           log="operators-removed-again.log")
        assert_quiet(rc, out)
    finally:
        for release in ("secret-operator", "commons-operator"):
            subprocess.run([cluster.helm, "uninstall", release, "-n", ops, "--kubeconfig", cluster.kubeconfig],
                           capture_output=True, check=False)
        for name in (ops, user_ns, ns):
            ignore_missing(apis["core"].delete_namespace, name)
        for crd in crds:
            ignore_missing(ext.delete_custom_resource_definition, crd)
