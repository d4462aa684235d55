"""The common, keycloak, minio and secret_operator roles on the test bed.

One install of its own (namespace dl-core-<id>, realm core-<id>, free node ports) is
converged with `site.yml --tags keycloak,minio`: the objects are checked in the real
API server, the realm in the test bed's real Keycloak, the keystore with a real TLS
handshake on a node's loopback address. Then a second run and a `--check --diff`
run must report changed=0, and bad input must be refused before anything is applied.

What cannot be checked here: no container runs (KWOK completes pods without running
them), so the bucket Job's work (bucket, policy, upload) is asserted as the Job
object that would do it, not as S3 state; Keycloak in the cluster never starts, so
the realm import goes to the test bed's Keycloak process.

Only loopback is contacted: the API server, the test-bed Keycloak on 127.0.0.1 and
a TLS server this test starts on a node address (127.0.1.x).
"""
from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.ansible_run import changed_tasks, env, recap, run_playbook
from tests.keycloak_admin import KeycloakAdmin
from tests.node_ports import free_node_ports
from tests.standins.secret_operator import truststore_controller

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STANDINS = REPO / "tests" / "standins" / "charts"
# Node ports the local inventory uses (lab-a, lab-b): never take them.
LABELS = ("app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
          "app.kubernetes.io/name", "app.kubernetes.io/instance")
CSV_HEADER = ("timesecs,coppm,humidity,temperature,flowrate,heatervoltage,"
              + ",".join("r%d" % i for i in range(1, 15)))


# --- helpers ------------------------------------------------------------------------

def playbook(inventory, *args, playbook_path="site.yml"):
    return run_playbook(inventory, playbook_path, *args, timeout=1200)


def secret_data(api, ns, name):
    data = api.read_namespaced_secret(name, ns).data or {}
    return {k: base64.b64decode(v) for k, v in data.items()}


def write_inventory(path, hostvars, groupvars):
    inventory = {"notebook_platform": {"hosts": hostvars, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable, **groupvars}}}
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


def delete_namespace(api, ns):
    try:
        api.delete_namespace(ns)
    except ApiException as exc:
        if exc.status != 404:
            raise


# --- the install under test ---------------------------------------------------------

@pytest.fixture(scope="module")
def kube(cluster):
    return client.CoreV1Api(config.new_client_from_config(config_file=cluster.kubeconfig))


@pytest.fixture(scope="module")
def apis(cluster):
    api_client = config.new_client_from_config(config_file=cluster.kubeconfig)
    return {"core": client.CoreV1Api(api_client), "apps": client.AppsV1Api(api_client),
            "batch": client.BatchV1Api(api_client), "custom": client.CustomObjectsApi(api_client),
            "ext": client.ApiextensionsV1Api(api_client)}


@pytest.fixture(scope="module")
def install(cluster, keycloak, kube, tmp_path_factory):
    uid = uuid.uuid4().hex[:6]
    tmp = tmp_path_factory.mktemp("stack-core")
    kc_port, hub_port = free_node_ports(kube, 2)
    data_file = tmp / "20160930_203718.csv"
    data_file.write_text(CSV_HEADER + "\n" + "\n".join(
        ",".join(str(i * 0.3 + j) for j in range(20)) for i in range(50)) + "\n")
    info = {
        "ns": "dl-core-%s" % uid, "realm": "core-%s" % uid, "kc_port": kc_port, "hub_port": hub_port,
        "data_file": data_file, "tmp": tmp, "host": "core-%s" % uid,
    }
    info["inventory"] = write_inventory(tmp / "hosts.yml", {info["host"]: {
        "datalab_namespace": info["ns"], "datalab_keycloak_realm": info["realm"],
        "datalab_hub_node_port": hub_port, "keycloak_node_port": kc_port,
    }}, {
        "datalab_kubeconfig": cluster.kubeconfig, "datalab_helm_binary": cluster.helm,
        "datalab_tls_provider": "self_signed",
        "keycloak_demo_users": True, "keycloak_demo_passwords": "username",
        "keycloak_admin_url": keycloak["url"], "keycloak_admin_username": keycloak["username"],
        "keycloak_admin_password": keycloak["password"], "keycloak_admin_ca_path": keycloak["ca_path"],
        "keycloak_rollout_timeout": 120, "minio_rollout_timeout": 120, "minio_job_timeout": 120,
        "minio_demo_data_file": str(data_file),
    })
    admin = KeycloakAdmin(keycloak)
    rc, out = playbook(info["inventory"], "--tags", "keycloak,minio", "-vv")
    (tmp / "first-run.log").write_text(out)
    info.update(rc=rc, log=out, admin=admin)
    yield info
    delete_namespace(kube, info["ns"])
    KeycloakAdmin(keycloak).delete("/" + info["realm"])


def test_first_converge_succeeds(install):
    assert install["rc"] == 0, install["log"][-4000:]
    assert recap(install["log"])[install["host"]]["failed"] == 0


def test_every_object_carries_the_install_labels(install, apis):
    ns = install["ns"]
    objects = (apis["core"].list_namespaced_secret(ns).items + apis["core"].list_namespaced_config_map(ns).items
               + apis["core"].list_namespaced_service(ns).items
               + apis["core"].list_namespaced_persistent_volume_claim(ns).items
               + apis["core"].list_namespaced_service_account(ns).items
               + apis["apps"].list_namespaced_deployment(ns).items + apis["batch"].list_namespaced_job(ns).items)
    ours = [o for o in objects if o.metadata.name not in ("kube-root-ca.crt", "default")]
    assert len(ours) >= 14, sorted(o.metadata.name for o in ours)
    for obj in ours:
        labels = obj.metadata.labels or {}
        missing = [k for k in LABELS if k not in labels]
        assert not missing, "%s lacks %s" % (obj.metadata.name, missing)
        assert labels["app.kubernetes.io/instance"] == ns
        assert labels["app.kubernetes.io/part-of"] == "datalab-notebooks"
    namespace = apis["core"].read_namespace(ns)
    assert all(k in namespace.metadata.labels for k in LABELS)


def test_keycloak_address_is_the_node_running_keycloak(install, apis):
    ns = install["ns"]
    cm = apis["core"].read_namespaced_config_map("keycloak-address", ns).data
    (pod,) = apis["core"].list_namespaced_pod(ns, label_selector="app.kubernetes.io/name=keycloak").items
    node = apis["core"].read_node(pod.spec.node_name)
    external = [a.address for a in node.status.addresses if a.type == "ExternalIP"][0]
    # Browsers use the node address; the hub's own calls the Service's name, which stays when the pod moves.
    assert cm == {"keycloakAddress": "%s:%d" % (external, install["kc_port"]), "keycloakNodeIp": external,
                  "keycloakServiceUrl": "https://keycloak.%s.svc.cluster.local:8443" % ns}
    # One issuer whichever address a request came to: the browsers' one.
    status, realm = install["admin"].request("GET", "/" + install["realm"])
    assert status == 200 and realm["attributes"]["frontendUrl"] == "https://" + cm["keycloakAddress"]
    svc = apis["core"].read_namespaced_service("keycloak", ns)
    assert svc.spec.type == "NodePort"
    assert [(p.name, p.port, p.node_port) for p in svc.spec.ports] == [("https", 8443, install["kc_port"])]


def test_keycloak_deployment_follows_the_reference_with_fixes(install, apis):
    ns = install["ns"]
    dep = apis["apps"].read_namespaced_deployment("keycloak", ns)
    pod = dep.spec.template.spec
    (container,) = pod.containers
    args = container.args
    assert args[0] == "start" and "--hostname-strict=false" in args and "--import-realm" in args
    assert "--https-key-store-file=/tls/keystore.p12" in args
    assert "--https-key-store-password=$(KEYCLOAK_KEYSTORE_PASSWORD)" in args
    keystore_password = secret_data(apis["core"], ns, "keycloak-tls")["password"].decode()
    assert keystore_password not in json.dumps(dep.to_dict(), default=str)
    env = {e.name: e.value_from.secret_key_ref for e in container.env}
    admin_ref, keystore_ref = env["KC_BOOTSTRAP_ADMIN_PASSWORD"], env["KEYCLOAK_KEYSTORE_PASSWORD"]
    assert (admin_ref.name, admin_ref.key) == ("keycloak-admin", "password")
    assert (keystore_ref.name, keystore_ref.key) == ("keycloak-tls", "password")
    probe = container.readiness_probe.http_get
    assert (probe.path, probe.scheme, probe.port) == ("/realms/master", "HTTPS", "https")
    sc = pod.security_context
    assert (sc.run_as_user, sc.run_as_group, sc.fs_group) == (1000, 1000, 1000)
    mounts = {m.mount_path: m.name for m in container.volume_mounts}
    assert mounts["/opt/keycloak/data"] == "data" and mounts["/opt/keycloak/data/import"] == "realm"
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["data"].persistent_volume_claim.claim_name == "keycloak-data"
    assert volumes["tls"].secret.secret_name == "keycloak-tls"
    pvc = apis["core"].read_namespaced_persistent_volume_claim("keycloak-data", ns)
    assert pvc.spec.resources.requests["storage"] == "1Gi"
    assert pod.automount_service_account_token is False
    assert dep.status.available_replicas == 1


def test_realm_uses_the_one_client_secret_and_the_hub_callback(install, apis):
    ns, realm, admin = install["ns"], install["realm"], install["admin"]
    (cl,) = admin.get("/%s/clients?clientId=jupyterhub" % realm)
    secret = admin.get("/%s/clients/%s/client-secret" % (realm, cl["id"]))["value"]
    oauth = secret_data(apis["core"], ns, "jupyterhub-oauth-client")
    assert oauth["client-id"] == b"jupyterhub"
    assert secret.encode() == oauth["client-secret"]
    node_ip = apis["core"].read_namespaced_config_map("keycloak-address", ns).data["keycloakNodeIp"]
    hub = "http://%s:%d" % (node_ip, install["hub_port"])
    assert cl["redirectUris"] == [hub + "/hub/oauth_callback"]
    assert cl["webOrigins"] == [hub]
    assert cl["publicClient"] is False and cl["standardFlowEnabled"] is True
    # The realm Secret holds the same realm, for --import-realm on a fresh database.
    stored = json.loads(secret_data(apis["core"], ns, "keycloak-realm")["realm.json"])
    assert stored["realm"] == realm
    (stored_client,) = [c for c in stored["clients"] if c["clientId"] == "jupyterhub"]
    assert stored_client["secret"].encode() == oauth["client-secret"]


def test_realm_has_the_demo_groups_and_users(install):
    realm, admin = install["realm"], install["admin"]
    users = {u["username"]: u for u in admin.get("/%s/users?max=100&briefRepresentation=false" % realm)}
    assert sorted(users) == sorted(["daniel.king", "sophia.clarke", "william.lewis", "isla.williams",
                                    "justin.martin", "pamela.scott", "mark.ketting"])
    assert users["isla.williams"]["email"] == "isla.williams@knab.com"
    groups = admin.get("/%s/users/%s/groups" % (realm, users["mark.ketting"]["id"]))
    assert [g["path"] for g in groups] == ["/Marketing"]
    groups = admin.get("/%s/users/%s/groups" % (realm, users["daniel.king"]["id"]))
    assert [g["path"] for g in groups] == ["/Compliance and Regulation/Analytics"]
    # Demo password = user name (local/kind inventories only): a real login proves it.
    form = urllib.parse.urlencode({"grant_type": "password", "client_id": "admin-cli",
                                   "username": "isla.williams", "password": "isla.williams"}).encode()
    req = urllib.request.Request("%s/realms/%s/protocol/openid-connect/token" % (admin.url, realm), data=form)
    with urllib.request.urlopen(req, context=admin.ctx, timeout=30) as resp:
        assert "access_token" in json.load(resp)


def test_keystore_serves_tls_that_the_platform_ca_verifies(install, apis):
    """A real handshake on the Keycloak node address and node port, as the hub would make it."""
    ns = install["ns"]
    tls = secret_data(apis["core"], ns, "keycloak-tls")
    key, cert, extra = pkcs12.load_key_and_certificates(tls["keystore.p12"], tls["password"])
    ca_pem = apis["core"].read_namespaced_config_map("datalab-ca", ns).data["ca.crt"]
    node_ip = apis["core"].read_namespaced_config_map("keycloak-address", ns).data["keycloakNodeIp"]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "ca.pem").write_text(ca_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    sock = socket.create_server((node_ip, install["kc_port"]))
    sock.settimeout(20)

    def serve(count):
        for dummy in range(count):
            conn, dummy_addr = sock.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tconn:
                    tconn.recv(1)
            except (ssl.SSLError, OSError):
                pass

    names = [node_ip, "keycloak.%s.svc" % ns, "keycloak.%s.svc.cluster.local" % ns]
    thread = threading.Thread(target=serve, args=(len(names),), daemon=True)
    thread.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
        for name in names:
            with socket.create_connection((node_ip, install["kc_port"]), timeout=10) as raw:
                with client_ctx.wrap_socket(raw, server_hostname=name) as tconn:
                    assert tconn.version().startswith("TLS")
                    tconn.send(b"x")
    finally:
        thread.join(timeout=20)
        sock.close()
    assert extra and extra[0].subject == extra[0].issuer  # the CA travels in the chain


def test_minio_credentials_server_and_bucket_job(install, apis):
    ns = install["ns"]
    creds = secret_data(apis["core"], ns, "minio-s3-credentials")
    assert len(creds["accessKey"]) == 20 and len(creds["secretKey"]) == 40
    dep = apis["apps"].read_namespaced_deployment("minio", ns)
    (container,) = dep.spec.template.spec.containers
    assert container.image == "quay.io/minio/minio:RELEASE.2024-12-18T13-15-44Z"
    env = {e.name: e.value_from.secret_key_ref for e in container.env if e.value_from}
    assert env["MINIO_ROOT_USER"].key == "accessKey" and env["MINIO_ROOT_PASSWORD"].key == "secretKey"
    svc = apis["core"].read_namespaced_service("minio", ns)
    assert ("http", 9000) in [(p.name, p.port) for p in svc.spec.ports] and svc.spec.type == "ClusterIP"
    (job,) = apis["batch"].list_namespaced_job(ns, label_selector="app.kubernetes.io/component=bucket-setup").items
    assert job.status.succeeded == 1
    (mc,) = job.spec.template.spec.containers
    assert mc.image.startswith("quay.io/minio/mc:")
    script = mc.command[-1]
    assert 'mc mb --ignore-existing "s3/$BUCKET"' in script
    assert 'mc anonymous set none "s3/$BUCKET"' in script
    assert "admin user add" not in script and "public" not in script.replace("# Private", "")
    env = {e.name: e.value for e in mc.env if e.value is not None}
    assert env["BUCKET"] == "demo"
    assert env["DATA_KEY"] == "gas-sensor/raw/20160930_203718.csv"
    assert env["DATA_FILE"] == "/data/20160930_203718.csv"
    data = apis["core"].read_namespaced_config_map("minio-demo-data", ns)
    assert base64.b64decode(data.binary_data["demo-data"]) == install["data_file"].read_bytes()


def test_verbose_log_contains_no_generated_secret(install, apis):
    ns = install["ns"]
    values = []
    for name, keys in {"keycloak-admin": ["password"], "jupyterhub-oauth-client": ["client-secret"],
                       "keycloak-tls": ["password"], "minio-s3-credentials": ["accessKey", "secretKey"],
                       "datalab-ca-key": ["ca.key"]}.items():
        data = secret_data(apis["core"], ns, name)
        values += [data[k].decode() for k in keys]
    key_body = values[-1].splitlines()[1]
    values[-1] = key_body  # one line of the CA key: enough to find any fragment of it
    log = install["log"]
    assert "<localhost> " in log or "ESTABLISH LOCAL CONNECTION" in log or "task path:" in log  # really -vv
    leaked = [v[:4] + "..." for v in values if v in log]
    assert not leaked, "generated secrets in the -vv log: %s" % leaked


def test_second_run_changes_nothing(install):
    rc, out = playbook(install["inventory"], "--tags", "keycloak,minio")
    assert rc == 0, out[-4000:]
    assert recap(out)[install["host"]]["changed"] == 0, changed_tasks(out)


def test_check_diff_on_the_converged_install_changes_nothing(install):
    rc, out = playbook(install["inventory"], "--tags", "keycloak,minio", "--check", "--diff")
    assert rc == 0, out[-4000:]
    result = recap(out)[install["host"]]
    assert result["changed"] == 0 and result["failed"] == 0, changed_tasks(out)


def test_drift_made_by_hand_is_repaired_and_what_others_added_is_kept(install, apis):
    """Changes made by hand between runs (kubectl edit, scale, annotate) go through datalab.notebooks.k8s_apply:
    a removed label, a changed image, a deleted key and a scaled-down Deployment are restored by the next
    run; an annotation another field manager added is kept; the run after that changes nothing."""
    core, apps, ns = apis["core"], apis["apps"], install["ns"]
    core.patch_namespaced_service(
        "keycloak", ns, [{"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1name"}],
        field_manager="kubectl-edit")
    minio = apps.read_namespaced_deployment("minio", ns)
    image = minio.spec.template.spec.containers[0].image
    apps.patch_namespaced_deployment("minio", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": minio.spec.template.spec.containers[0].name, "image": "registry.invalid/other:1"}]}}}},
        field_manager="kubectl-edit")
    address = core.read_namespaced_config_map("keycloak-address", ns).data
    core.patch_namespaced_config_map("keycloak-address", ns, [{"op": "remove", "path": "/data/keycloakServiceUrl"}],
                                     field_manager="kubectl-edit")
    apps.patch_namespaced_deployment_scale("keycloak", ns, {"spec": {"replicas": 0}}, field_manager="kubectl-scale")
    core.patch_namespaced_service("minio", ns, {"metadata": {"annotations": {"team.example/owner": "data"}}},
                                  field_manager="someone-else")

    rc, out = playbook(install["inventory"], "--tags", "keycloak,minio")
    assert rc == 0, out[-4000:]
    assert recap(out)[install["host"]]["changed"] > 0
    assert core.read_namespaced_service("keycloak", ns).metadata.labels["app.kubernetes.io/name"] == "keycloak"
    assert apps.read_namespaced_deployment("minio", ns).spec.template.spec.containers[0].image == image
    # The restored key is back; the node address may differ: the new Keycloak pod can land on another node.
    restored = core.read_namespaced_config_map("keycloak-address", ns).data
    assert set(restored) == set(address) and restored["keycloakServiceUrl"] == address["keycloakServiceUrl"]
    keycloak = apps.read_namespaced_deployment("keycloak", ns)
    assert (keycloak.spec.replicas, keycloak.status.available_replicas) == (1, 1)
    assert core.read_namespaced_service("minio", ns).metadata.annotations["team.example/owner"] == "data"

    rc, out = playbook(install["inventory"], "--tags", "keycloak,minio")
    assert rc == 0, out[-4000:]
    assert recap(out)[install["host"]]["changed"] == 0, changed_tasks(out)


def test_new_demo_data_runs_a_new_job_and_removes_the_old_one(install, apis):
    ns = install["ns"]
    (old,) = apis["batch"].list_namespaced_job(ns, label_selector="app.kubernetes.io/component=bucket-setup").items
    other = install["tmp"] / "other.csv"
    other.write_text(CSV_HEADER + "\n1,2,3\n")
    rc, out = playbook(install["inventory"], "--tags", "minio", "-e", "minio_demo_data_file=%s" % other)
    assert rc == 0, out[-4000:]
    jobs = apis["batch"].list_namespaced_job(ns, label_selector="app.kubernetes.io/component=bucket-setup").items
    live = [j for j in jobs if not j.metadata.deletion_timestamp]
    assert [j.metadata.name for j in live] != [old.metadata.name] and len(live) == 1
    env = {e.name: e.value for e in live[0].spec.template.spec.containers[0].env if e.value is not None}
    assert env["DATA_KEY"] == "gas-sensor/raw/other.csv"
    # Back to the first input: converged again, and the rerun is quiet.
    rc, out = playbook(install["inventory"], "--tags", "minio")
    assert rc == 0, out[-4000:]
    rc, out = playbook(install["inventory"], "--tags", "minio")
    assert recap(out)[install["host"]]["changed"] == 0, changed_tasks(out)


# --- bad input is refused before anything is applied ----------------------------------

BAD_INPUT = [
    ("keycloak", {"keycloak_image": "Quay.io/Keycloak//keycloak:"}, "not a valid image reference"),
    ("keycloak", {"keycloak_node_port": 29999}, "NodePort range 30000-32767"),
    ("keycloak", {"keycloak_node_port": 32768}, "NodePort range 30000-32767"),
    ("keycloak", {"datalab_tls_provider": "vault"}, "value of datalab_tls_provider must be one of"),
    ("keycloak", {"datalab_namespace": ""}, "must be a non-empty DNS-1123 label"),
    ("keycloak", {"datalab_namespace": "Not_A_Label"}, "must be a non-empty DNS-1123 label"),
    ("keycloak", {"keycloak_realm_file": "@notjson"}, "is not a JSON realm representation"),
    ("keycloak", {"datalab_hub_node_port": 8080}, "datalab_hub_node_port must be within"),
    ("keycloak", {"datalab_node_selector": {"pool": "two words"}}, "datalab_node_selector must map"),
    ("minio", {"datalab_tolerations": [{"key": "pool", "operator": "Exists", "value": "a"}]},
     "datalab_tolerations must be a list"),
    ("minio", {"datalab_tolerations": [{"key": "pool", "effect": "NoEntry"}]}, "datalab_tolerations must be a list"),
    ("minio", {"minio_image": "quay.io/minio/minio:bad tag"}, "not a valid image reference"),
    ("minio", {"minio_demo_data_url": "http://example.invalid/a.csv", "minio_demo_data_file": "/etc/hostname"},
     "give at most one of them"),
    ("secret_operator", {"datalab_tls_provider": "secret_operator",
                         "secret_operator_images": {"csi_provisioner": "registry.example.com/csi-provisioner"}},
     "secret_operator_images maps"),
    ("secret_operator", {"datalab_tls_provider": "secret_operator",
                         "secret_operator_images": {"commons_operator": "Registry.example.com/Commons:1 x"}},
     "not a valid image reference"),
]


@pytest.mark.parametrize("component,extra,message", BAD_INPUT,
                         ids=["%s-%s" % (c, next(iter(e))) for c, e, dummy in BAD_INPUT])
def test_bad_input_is_refused_before_anything_is_applied(cluster, kube, tmp_path, component, extra, message):
    ns = "dl-bad-%s" % uuid.uuid4().hex[:6]
    if extra.get("keycloak_realm_file") == "@notjson":
        bad = tmp_path / "realm.json"
        bad.write_text('{"realm": "demo", "users": [')
        extra = {"keycloak_realm_file": str(bad)}
    hostvars = {"datalab_namespace": ns, "datalab_kubeconfig": cluster.kubeconfig, **extra}
    inventory = write_inventory(tmp_path / "hosts.yml", {"bad-input": hostvars}, {})
    try:
        rc, out = playbook(inventory, playbook_path="playbooks/%s.yml" % component)
        assert rc != 0
        assert message in out, out[-3000:]
        assert "changed=0" in out
        with pytest.raises(ApiException) as err:
            kube.read_namespace(ns)
        assert err.value.status == 404
    finally:
        delete_namespace(kube, ns)


# --- the secret_operator provider, with the stand-in charts --------------------------

def test_standin_charts_render(cluster):
    for chart in ("secret-operator", "commons-operator"):
        out = subprocess.run([cluster.helm, "template", "rel", str(STANDINS / chart), "-n", "ops",
                              "--include-crds", "--set", "probe=1"],
                             capture_output=True, text=True, check=True).stdout
        docs = [d for d in yaml.safe_load_all(out) if d]
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
        assert ("ConfigMap", "standin-rel-values") in kinds
        (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
        assert json.loads(cm["data"]["values.json"]) == {"probe": 1}
        chart_yaml = yaml.safe_load((STANDINS / chart / "Chart.yaml").read_text())
        assert "STAND-IN" in chart_yaml["description"]
        if chart == "secret-operator":
            assert ("CustomResourceDefinition", "secretclasses.secrets.stackable.tech") in kinds
            assert ("CustomResourceDefinition", "truststores.secrets.stackable.tech") in kinds
            assert ("SecretClass", "tls") in kinds
            crds = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
            # what 26.3 serves: SecretClass v1alpha2 (stored) and v1alpha1; TrustStore v1alpha1 only
            assert [(v["name"], v["served"], v["storage"])
                    for v in crds["secretclasses.secrets.stackable.tech"]["spec"]["versions"]] == [
                ("v1alpha2", True, True), ("v1alpha1", True, False)]
            (ts_version,) = crds["truststores.secrets.stackable.tech"]["spec"]["versions"]
            ts_spec = ts_version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            assert ts_version["name"] == "v1alpha1"
            assert ts_spec["required"] == ["secretClassName"]
            assert set(ts_spec["properties"]) == {"secretClassName", "targetKind", "format"}
            (secret_class,) = [d for d in docs if d["kind"] == "SecretClass"]
            assert secret_class["apiVersion"] == "secrets.stackable.tech/v1alpha2"


ADMIN_CA_PLAYBOOK = """
- name: Find the CA for the Keycloak admin API calls as the keycloak role does
  hosts: notebook_platform
  gather_facts: false
  tasks:
    # Its vars only: its defaults would override the inventory's datalab_kubeconfig (include_vars wins).
    - name: Load the shared settings of the common role (datalab_k8s_auth)
      ansible.builtin.include_vars:
        file: "{{ repo }}/roles/common/vars/main.yml"
    - name: Find and write the CA
      ansible.builtin.include_role:
        name: datalab.notebooks.keycloak
        tasks_from: admin_ca
      vars:
        _keycloak_ca_dest: "{{ dest }}"
    - name: The file the admin API calls are given
      ansible.builtin.assert:
        that: _keycloak_api_ca == dest
"""


def test_secret_operator_role_installs_the_charts_and_publishes_the_ca_through_a_truststore(cluster, apis, tmp_path):
    """The role installs both charts, waits for SecretClass tls (read as v1alpha2) and asks for the CA with
    TrustStore datalab-ca; the stand-in controller writes ConfigMap datalab-ca as the 26.3 operator does."""
    uid = uuid.uuid4().hex[:6]
    ns, ops = "dl-so-%s" % uid, "dl-ops-%s" % uid
    crd_names = ("secretclasses.secrets.stackable.tech", "truststores.secrets.stackable.tech")
    had_crds = {name: bool(apis["ext"].list_custom_resource_definition(field_selector="metadata.name=" + name).items)
                for name in crd_names}
    inventory = write_inventory(tmp_path / "hosts.yml", {"so-test": {"datalab_namespace": ns}}, {
        "datalab_kubeconfig": cluster.kubeconfig, "datalab_helm_binary": cluster.helm,
        "datalab_tls_provider": "secret_operator", "secret_operator_namespace": ops,
        "secret_operator_chart_ref": str(STANDINS / "secret-operator"), "secret_operator_chart_version": "",
        "secret_operator_commons_chart_ref": str(STANDINS / "commons-operator"),
        "secret_operator_commons_chart_version": "",
        "secret_operator_values": {"kubeletDir": "/var/lib/kubelet"}, "secret_operator_timeout": 60,
        "secret_operator_images": {"csi_provisioner": "registry.example.com/mirror/csi-provisioner:v5.3.0",
                                   "commons_operator": "registry.example.com/mirror/commons-operator:26.3.0"},
    })
    try:
        with truststore_controller(apis["custom"].api_client):
            rc, out = playbook(inventory, playbook_path="playbooks/secret_operator.yml")
            assert rc == 0, out[-4000:]
            values = apis["core"].read_namespaced_config_map("standin-secret-operator-values", ops).data
            # the release values: the mirrored images under the charts' own keys, and the inventory's values
            assert json.loads(values["values.json"]) == {"kubeletDir": "/var/lib/kubelet", "csiNodeDriver": {
                "externalProvisioner": {"image": {"repository": "registry.example.com/mirror/csi-provisioner",
                                                  "tag": "v5.3.0"}}}}
            commons = apis["core"].read_namespaced_config_map("standin-commons-operator-values", ops).data
            assert json.loads(commons["values.json"]) == {"image": {
                "repository": "registry.example.com/mirror/commons-operator", "tag": "26.3.0"}}
            for version in ("v1alpha2", "v1alpha1"):  # stored and still served, as by 26.3
                tls = apis["custom"].get_cluster_custom_object("secrets.stackable.tech", version, "secretclasses", "tls")
                assert "autoTls" in tls["spec"]["backend"]
            labels = apis["core"].read_namespace(ops).metadata.labels
            assert all(k in labels for k in LABELS)
            store = apis["custom"].get_namespaced_custom_object(
                "secrets.stackable.tech", "v1alpha1", ns, "truststores", "datalab-ca")
            assert store["spec"] == {"secretClassName": "tls", "format": "tls-pem", "targetKind": "ConfigMap"}
            assert all(k in store["metadata"]["labels"] for k in LABELS)
            published = apis["core"].read_namespaced_config_map("datalab-ca", ns)
            ca_ref = tls["spec"]["backend"]["autoTls"]["ca"]["secret"]
            ca = secret_data(apis["core"], ca_ref["namespace"], ca_ref["name"])["ca.crt"].decode()
            assert published.data == {"ca.crt": ca} and "BEGIN CERTIFICATE" in ca
            (owner,) = published.metadata.owner_references
            assert (owner.kind, owner.name, owner.uid, owner.controller) == (
                "TrustStore", "datalab-ca", store["metadata"]["uid"], True)
            # Keycloak's admin API calls trust the CA of SecretClass tls (roles/keycloak/tasks/admin_ca.yml).
            (tmp_path / "admin_ca.yml").write_text(ADMIN_CA_PLAYBOOK)
            dest = tmp_path / "admin" / "ca.crt"
            rc, out = playbook(inventory, "-e", "repo=%s dest=%s" % (REPO, dest), playbook_path=str(tmp_path / "admin_ca.yml"))
            assert rc == 0, out[-4000:]
            assert dest.read_text().strip() == ca.strip()
            rc, out = playbook(inventory, playbook_path="playbooks/secret_operator.yml")
            assert rc == 0 and recap(out)["so-test"]["changed"] == 0, changed_tasks(out)
    finally:
        for release in ("secret-operator", "commons-operator"):
            subprocess.run([cluster.helm, "uninstall", release, "-n", ops, "--kubeconfig", cluster.kubeconfig],
                           capture_output=True, check=False)
        for name in crd_names:
            if had_crds[name]:
                continue
            try:
                apis["ext"].delete_custom_resource_definition(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        delete_namespace(apis["core"], ops)
        delete_namespace(apis["core"], ns)


# --- every manifest the roles render is valid for the pinned Kubernetes ----------------

RENDER_PLAYBOOK = """
- name: Render the manifests of the core roles
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Load the roles' defaults and internal vars
      ansible.builtin.include_vars:
        file: "{{ repo }}/roles/{{ item }}"
      loop: "{{ role_var_files }}"

    - name: Render each manifest
      ansible.builtin.copy:
        content: "{{ lookup('ansible.builtin.template', repo ~ '/roles/' ~ item.template, template_vars=item.vars) }}"
        dest: "{{ out }}/{{ item.name }}.yaml"
        mode: "0644"
      loop: "{{ manifests }}"
"""


def test_rendered_manifests_pass_strict_validation(cluster, tmp_path):
    minor = ".".join(cluster.version.lstrip("v").split(".")[:2]) + ".0"
    out = tmp_path / "rendered"
    out.mkdir()
    tls_data = {"keystore.p12": "AAAA", "password": "cGFzcw==", "tls.crt": "AAAA", "ca.crt": "AAAA"}
    manifests = [
        ("namespace", "common/templates/namespace.yaml.j2", {}),
        ("generated-secret", "common/templates/secret.yaml.j2", {}),
        ("ca-secret", "common/templates/ca-secret.yaml.j2", {}),
        ("ca-configmap", "common/templates/ca-configmap.yaml.j2", {}),
        ("keycloak-serviceaccount", "keycloak/templates/serviceaccount.yaml.j2", {}),
        ("keycloak-pvc", "keycloak/templates/pvc.yaml.j2", {"keycloak_storage_class": "standard"}),
        ("keycloak-service", "keycloak/templates/service.yaml.j2", {}),
        ("keycloak-ingress", "keycloak/templates/ingress.yaml.j2", {
            "keycloak_ingress_host": "keycloak.example.com", "keycloak_ingress_class_name": "nginx",
            "keycloak_ingress_tls_secret": "kc-tls",
            "keycloak_ingress_annotations": {"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}}),
        ("keycloak-deployment-self-signed", "keycloak/templates/deployment.yaml.j2",
         {"datalab_tls_provider": "self_signed", "keycloak_extra_args": ["--proxy-headers=xforwarded"]}),
        ("keycloak-deployment-secret-operator", "keycloak/templates/deployment.yaml.j2",
         {"datalab_tls_provider": "secret_operator"}),
        ("keycloak-tls-secret", "keycloak/templates/tls-secret.yaml.j2", {}),
        ("keycloak-address", "keycloak/templates/address-configmap.yaml.j2", {}),
        ("keycloak-realm-secret", "keycloak/templates/realm-secret.yaml.j2", {}),
        ("minio-pvc", "minio/templates/pvc.yaml.j2", {}),
        ("minio-service", "minio/templates/service.yaml.j2", {}),
        ("minio-deployment", "minio/templates/deployment.yaml.j2", {}),
        ("minio-data-configmap", "minio/templates/data-configmap.yaml.j2", {}),
        ("minio-job-none", "minio/templates/job.yaml.j2", {"_minio_source": "none"}),
        ("minio-job-file", "minio/templates/job.yaml.j2", {"_minio_source": "file"}),
        ("minio-job-url", "minio/templates/job.yaml.j2", {
            "_minio_source": "url", "minio_demo_data_url": "https://data.example.com/gas/20160930_203718.csv"}),
        ("operators-namespace", "secret_operator/templates/namespace.yaml.j2", {}),
    ]
    extra = {
        "repo": str(REPO), "out": str(out),
        "role_var_files": ["%s/%s/main.yml" % (r, d) for r in ("common", "keycloak", "minio", "secret_operator")
                           for d in ("defaults", "vars")],
        "manifests": [{"name": n, "template": t, "vars": v} for n, t, v in manifests],
        "datalab_namespace": "render-ns", "common_secret_name": "some-secret", "common_secret_component": "keycloak",
        "_common_secret_encoded": {"password": "cGFzcw==", "client-id": "anVweXRlcmh1Yg=="},
        "_common_ca_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "_common_ca_key_pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        "datalab_ca_cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "_keycloak_tls_data": tls_data, "_keycloak_tls_checksum": "0" * 64,
        "_keycloak_tls_password": {"password": "not-a-secret"},
        "_keycloak_nodeport": {"address": "127.0.1.2:31093", "node_ip": "127.0.1.2"},
        "_keycloak_realm": {"realm": "demo", "enabled": True},
        "_minio_job_name": "minio-bucket-0123456789", "_minio_object": "20160930_203718.csv",
        "_minio_data_b64": "dGltZXNlY3MK",
    }
    (tmp_path / "render.yml").write_text(RENDER_PLAYBOOK)
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=%s" % sys.executable,
                           "-e", "@%s" % (tmp_path / "extra.json"), str(tmp_path / "render.yml")],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    files = sorted(out.glob("*.yaml"))
    assert len(files) == len(manifests)
    for f in files:
        (doc,) = [d for d in yaml.safe_load_all(f.read_text()) if d]
        labels = doc["metadata"].get("labels", {})
        assert all(k in labels for k in LABELS), (f.name, labels)
    proc = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", minor, *map(str, files)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
