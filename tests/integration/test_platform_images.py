"""The platform's images (tools/testbed/images/recipes.py), built here and run as real pods.

Each test builds its image (or finds it cached), imports it into the real node's containerd under
the reference the role or the chart uses, and runs it the way the role's manifest or the chart
runs it (command, args, user, environment), on the real node, in a namespace of its own. It then
asks the running program for a real answer. Skips only when there is no real node.

Cold builds take minutes (docs/images.md: the notebook image the longest); cached ones seconds.
"""
from __future__ import annotations

import base64
import json
import secrets
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.integration.realpods import describe, finished, new_namespace, pod_manifest, ready
from tests.integration.test_testbed import _until
from tests.realplatform import upstream_chart
from tools.testbed import pki
from tools.testbed import images as images_api

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

HUB_JUPYTERHUB = "5.5.0"  # the chart's hub image pins jupyterhub==5.5.0; the notebook image matches it


@pytest.fixture()
def ns(core, request):
    name = new_namespace(core, "platimg-" + request.node.name.removeprefix("test_").replace("_", "-")[:20])
    yield name
    core.delete_namespace(name, grace_period_seconds=0)


def _image(real, name: str) -> str:
    built = images_api.ensure(name)
    images_api.import_into(real["containerd_socket"], [built])
    assert images_api.missing(real["containerd_socket"], built.refs) == []
    return built.refs[0]


def _image_config(name: str) -> dict:
    archive = images_api.ensure(name).archive
    with tarfile.open(archive) as t:
        manifest = json.load(t.extractfile("manifest.json"))
        return json.load(t.extractfile(manifest[0]["Config"]))["config"]


def _secret(core, ns, name, data: dict[str, bytes | str]):
    enc = {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode() for k, v in data.items()}
    core.create_namespaced_secret(ns, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                                       "type": "Opaque", "data": enc})


def _node_port(core, ns, name, selector, port):
    svc = core.create_namespaced_service(ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "NodePort", "selector": selector, "ports": [{"port": port, "targetPort": port}]}})
    return svc.spec.ports[0].node_port


def _get(url, context=None, headers=None, timeout=5.0):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _try_get(url, **kw):
    try:
        return _get(url, **kw)
    except OSError:
        return None


def _wait_ready(core, ns, name, timeout):
    try:
        return _until(lambda: ready(core, ns, name), timeout, f"pod {name} to be Ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {describe(core, ns, name)}\n{_log_tail(core, ns, name)}") from None


def _log_tail(core, ns, name, lines=30):
    try:
        return "\n".join(core.read_namespaced_pod_log(name, ns).splitlines()[-lines:])
    except Exception:  # noqa: BLE001 - only for a message
        return ""


def _restricted(**extra):
    """The containers' securityContext of the roles and the chart."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, **extra}


def _run_once(core, ns, real, name, image, timeout, *, command=None, args=None, env=None, pod_security=None,
              **container):
    c = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", **container}
    if command is not None:
        c["command"] = command
    if args is not None:
        c["args"] = args
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
    core.create_namespaced_pod(ns, pod_manifest(real, name, [c], restartPolicy="Never",
                                                securityContext=pod_security or {}))
    pod, log = finished(core, ns, name, timeout)
    assert pod.status.phase == "Succeeded", f"{describe(core, ns, name)}\n{log}"
    return log


# --- Keycloak -----------------------------------------------------------------------------------
def test_keycloak_serves_https_started_like_the_role(core, ns, real, tmp_path):
    image = _image(real, "keycloak")
    ca = pki.make_ca("platform-images test CA")
    leaf = pki.issue(ca, "keycloak", dns=["keycloak", f"keycloak.{ns}.svc"], ips=[real["nodeport_address"]],
                     rsa_key=True)
    password = secrets.token_hex(12)
    p12 = pki.write_pkcs12(leaf, ca, tmp_path / "keystore.p12", password)
    _secret(core, ns, "keycloak-tls", {"keystore.p12": p12.read_bytes(), "password": password})
    _secret(core, ns, "keycloak-admin", {"username": "admin", "password": secrets.token_hex(12)})
    env = [{"name": n, "valueFrom": {"secretKeyRef": {"name": s, "key": k}}}
           for n, s, k in (("KC_BOOTSTRAP_ADMIN_USERNAME", "keycloak-admin", "username"),
                           ("KC_BOOTSTRAP_ADMIN_PASSWORD", "keycloak-admin", "password"),
                           ("KEYCLOAK_KEYSTORE_PASSWORD", "keycloak-tls", "password"))]
    probe = {"httpGet": {"path": "/realms/master", "port": 8443, "scheme": "HTTPS"}, "periodSeconds": 5}
    container = {
        "name": "keycloak", "image": image, "imagePullPolicy": "IfNotPresent",
        # the role's args (roles/keycloak/templates/deployment.yaml.j2)
        "args": ["start", "--hostname-strict=false", "--http-enabled=false", "--https-port=8443",
                 "--https-key-store-file=/opt/keycloak/tls/keystore.p12",
                 "--https-key-store-password=$(KEYCLOAK_KEYSTORE_PASSWORD)"],
        "env": env, "ports": [{"name": "https", "containerPort": 8443}],
        "readinessProbe": probe, "securityContext": _restricted(),
        "volumeMounts": [{"name": "data", "mountPath": "/opt/keycloak/data"},
                         {"name": "tls", "mountPath": "/opt/keycloak/tls", "readOnly": True}]}
    core.create_namespaced_pod(ns, pod_manifest(
        real, "keycloak", [container],
        securityContext={"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "runAsNonRoot": True,
                         "seccompProfile": {"type": "RuntimeDefault"}},
        volumes=[{"name": "data", "emptyDir": {}},
                 {"name": "tls", "secret": {"secretName": "keycloak-tls",
                                            "items": [{"key": "keystore.p12", "path": "keystore.p12"}]}}]))
    port = _node_port(core, ns, "keycloak", {"app": "keycloak"}, 8443)
    t0 = time.monotonic()
    _wait_ready(core, ns, "keycloak", 420)
    started = time.monotonic() - t0
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cadata=ca.cert.public_bytes(serialization.Encoding.PEM).decode())
    url = f"https://{real['nodeport_address']}:{port}/realms/master"
    status, body = _until(lambda: _try_get(url, context=ctx), 30, "Keycloak through its NodePort")
    assert status == 200, body
    realm = json.loads(body)
    assert realm["realm"] == "master" and realm["public_key"], realm
    log = core.read_namespaced_pod_log("keycloak", ns)
    assert "Keycloak 26.5.5" in log and "started in" in log, log[-2000:]
    # built in the image: `start` finds the build options unchanged and does not rebuild
    assert "Updating the configuration" not in log, log[:2000]
    print(f"keycloak Ready {started:.0f}s after the pod was created")


# --- MinIO and mc -------------------------------------------------------------------------------
def test_minio_serves_and_mc_makes_a_bucket(api, core, ns, real):
    minio, mc = _image(real, "minio"), _image(real, "mc")
    access, secret = "datalab" + secrets.token_hex(3), secrets.token_hex(16)
    _secret(core, ns, "minio-credentials", {"accessKey": access, "secretKey": secret})
    creds = [{"name": n, "valueFrom": {"secretKeyRef": {"name": "minio-credentials", "key": k}}}
             for n, k in (("MINIO_ROOT_USER", "accessKey"), ("MINIO_ROOT_PASSWORD", "secretKey"))]
    user = {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"}}
    server = {
        "name": "minio", "image": minio, "imagePullPolicy": "IfNotPresent",
        # the role's args and environment (roles/minio/templates/deployment.yaml.j2)
        "args": ["server", "/data", "--address=:9000", "--console-address=:9001", "--certs-dir=/tmp/certs"],
        "env": [*creds, {"name": "HOME", "value": "/tmp"}],
        "ports": [{"containerPort": 9000}, {"containerPort": 9001}],
        "readinessProbe": {"httpGet": {"path": "/minio/health/ready", "port": 9000}, "periodSeconds": 2},
        "securityContext": _restricted(readOnlyRootFilesystem=True),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}]}
    core.create_namespaced_pod(ns, pod_manifest(real, "minio", [server], securityContext=user,
                                                volumes=[{"name": "data", "emptyDir": {}},
                                                         {"name": "tmp", "emptyDir": {}}]))
    port = _node_port(core, ns, "minio", {"app": "minio"}, 9000)
    _wait_ready(core, ns, "minio", 120)
    live = f"http://{real['nodeport_address']}:{port}/minio/health/live"
    status, dummy = _until(lambda: _try_get(live), 30, "MinIO's liveness through its NodePort")
    assert status == 200
    # the bucket Job's container (roles/minio/templates/job.yaml.j2): /bin/sh, mc on PATH, MC_HOST_s3
    bucket = "platform-" + secrets.token_hex(3)
    script = ('tries=0; until mc ls s3 >/dev/null 2>&1; do tries=$((tries + 1)); '
              '[ "$tries" -lt 60 ] || { echo "MinIO did not answer"; exit 1; }; sleep 2; done; '
              'mc mb --ignore-existing "s3/$BUCKET"; mc anonymous set none "s3/$BUCKET"; '
              'echo hello > /tmp/hello.txt; mc cp /tmp/hello.txt "s3/$BUCKET/hello.txt"; '
              'mc ls "s3/$BUCKET"; mc --version')
    env = [{"name": n, "valueFrom": {"secretKeyRef": {"name": "minio-credentials", "key": k}}}
           for n, k in (("MINIO_ACCESS_KEY", "accessKey"), ("MINIO_SECRET_KEY", "secretKey"))]
    env += [{"name": "MC_HOST_s3", "value": "http://$(MINIO_ACCESS_KEY):$(MINIO_SECRET_KEY)@minio:9000"},
            {"name": "MC_CONFIG_DIR", "value": "/tmp/.mc"}, {"name": "BUCKET", "value": bucket}]
    job = {"name": "mc", "image": mc, "imagePullPolicy": "IfNotPresent", "command": ["/bin/sh", "-ec", script],
           "env": env, "securityContext": _restricted()}
    core.create_namespaced_pod(ns, pod_manifest(real, "mc", [job], restartPolicy="Never",
                                                securityContext={k: v for k, v in user.items() if k != "fsGroup"}))
    pod, log = finished(core, ns, "mc", 180)
    assert pod.status.phase == "Succeeded", f"{describe(core, ns, 'mc')}\n{log}"
    assert f"Bucket created successfully `s3/{bucket}`" in log, log
    assert "hello.txt" in log and "commit-id=" in log, log
    # and MinIO itself has the object: an unsigned request is refused (private bucket), not missing
    status, body = _get(f"http://{real['nodeport_address']}:{port}/{bucket}/hello.txt")
    assert status == 403 and "AccessDenied" in body, (status, body)


# --- JupyterHub: hub and proxy --------------------------------------------------------------------
HUB_USER = {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}}


def test_hub_image_has_the_charts_jupyterhub_and_packages(core, ns, real):
    image = _image(real, "k8s-hub")
    cfg = _image_config("k8s-hub")
    assert cfg["Entrypoint"] == ["tini", "--"] and cfg["User"] == "1000", cfg
    # the chart's hub container passes `jupyterhub --config ...` as args; here `--version` instead
    log = _run_once(core, ns, real, "version", image, 120, args=["jupyterhub", "--version"], pod_security=HUB_USER,
                    securityContext=_restricted())
    assert log.strip() == HUB_JUPYTERHUB, log
    code = ("import kubespawner, oauthenticator, kubernetes_asyncio, nativeauthenticator, jupyterhub, psycopg2, "
            "ldapauthenticator, sqlalchemy, pycurl; import importlib.metadata as m; "
            "print(m.version('jupyterhub-kubespawner'), m.version('oauthenticator'))")
    log = _run_once(core, ns, real, "imports", image, 120, args=["python", "-c", code], pod_security=HUB_USER,
                    securityContext=_restricted())
    assert log.split() == ["7.0.0", "17.4.0"], log


def test_chp_answers_its_api_as_the_chart_runs_it(core, ns, real):
    image = _image(real, "chp")
    token = secrets.token_hex(16)
    container = {
        "name": "chp", "image": image, "imagePullPolicy": "IfNotPresent",
        # the chart's proxy container (templates/proxy/deployment.yaml, https off)
        "command": ["configurable-http-proxy", "--ip=", "--api-ip=", "--api-port=8001",
                    "--default-target=http://hub:8081", "--error-target=http://hub:8081/hub/error", "--port=8000"],
        "env": [{"name": "CONFIGPROXY_AUTH_TOKEN", "value": token}],
        "ports": [{"containerPort": 8000}, {"containerPort": 8001}],
        "readinessProbe": {"httpGet": {"path": "/_chp_healthz", "port": 8000}, "periodSeconds": 2},
        "securityContext": _restricted(runAsNonRoot=True, runAsUser=65534, runAsGroup=65534)}
    core.create_namespaced_pod(ns, pod_manifest(real, "proxy", [container]))
    port = _node_port(core, ns, "proxy-api", {"app": "proxy"}, 8001)
    _wait_ready(core, ns, "proxy", 120)
    url = f"http://{real['nodeport_address']}:{port}/api/routes"
    status, body = _until(lambda: _try_get(url, headers={"Authorization": f"token {token}"}), 30, "the proxy API")
    assert status == 200 and json.loads(body)["/"]["target"] == "http://hub:8081", body
    assert _get(url)[0] == 403  # no token
    log = core.read_namespaced_pod_log("proxy", ns)
    assert "Proxying http://" in log and "Proxy API at http://" in log, log
    log = _run_once(core, ns, real, "version", image, 60,
                    command=["sh", "-c", "configurable-http-proxy --version; node --version"],
                    securityContext=_restricted(runAsNonRoot=True, runAsUser=65534, runAsGroup=65534))
    assert log.split()[0] == "5.2.0" and log.split()[1].startswith("v"), log
    print(f"configurable-http-proxy {log.split()[0]} on node {log.split()[1]}")


def test_network_tools_block_the_metadata_address_as_the_chart_does(core, ns, real):
    image = _image(real, "k8s-network-tools")
    root = {"privileged": True, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}}
    # the chart's init container for singleuser.cloudMetadata.blockWithIptables (files/hub/jupyterhub_config.py)
    block = {"name": "block-cloud-metadata", "image": image, "imagePullPolicy": "IfNotPresent",
             "command": ["iptables", "--append", "OUTPUT", "--protocol", "tcp", "--destination", "169.254.169.254",
                         "--destination-port", "80", "--jump", "DROP"], "securityContext": root}
    show = {"name": "rules", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["iptables", "-S", "OUTPUT"],
            "securityContext": root}
    core.create_namespaced_pod(ns, pod_manifest(real, "rules", [show], initContainers=[block], restartPolicy="Never"))
    pod, log = finished(core, ns, "rules", 60)
    assert pod.status.phase == "Succeeded", f"{describe(core, ns, 'rules')}\n{log}"
    assert "-A OUTPUT -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DROP" in log, log


# --- the notebook server ------------------------------------------------------------------------------
def test_notebook_image_runs_singleuser_pyspark_and_java(core, ns, real):
    image = _image(real, "pyspark-notebook")
    cfg = _image_config("pyspark-notebook")
    # the role sets singleuser.cmd: null, so KubeSpawner runs the image's command
    assert cfg["Cmd"] == ["jupyterhub-singleuser"] and cfg["User"] == "1000", cfg
    script = ("jupyterhub-singleuser --version; python -c 'import pyspark; print(pyspark.__version__)'; "
              "java -version 2>&1 | head -1; id -u; echo $HOME; "
              "python -c \"from pyspark.sql import SparkSession; "
              "s = SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false').getOrCreate(); "
              "print('count', s.range(1000).selectExpr('sum(id)').first()[0]); s.stop()\" 2>/dev/null; "
              "python -c 'import pyarrow.fs, pandas; print(\"pyarrow\", pyarrow.__version__)'")
    t0 = time.monotonic()
    log = _run_once(core, ns, real, "notebook", image, 300, command=["sh", "-c", script],
                    pod_security={"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100},
                    securityContext=_restricted())
    lines = log.splitlines()
    assert lines[0] == HUB_JUPYTERHUB, log
    assert lines[1] == "3.5.2", log
    assert lines[2].startswith('openjdk version "17'), log
    assert lines[3:5] == ["1000", "/home/jovyan"], log
    assert "count 499500" in lines, log
    assert lines[-1].startswith("pyarrow "), log
    print(f"notebook checks in {time.monotonic() - t0:.0f}s")


def test_notebook_image_command_serves_jupyter_as_kubespawner_starts_it(core, ns, real):
    """`singleuser.cmd: null`: no command or args, only KubeSpawner's JUPYTERHUB_* environment; the
    image's CMD must serve the user's Jupyter server on the service URL's port and prefix."""
    image = _image(real, "pyspark-notebook")
    # The server asks its hub's API at start and gives up after five tries without an answer: the
    # test bed's probe serves HTTP as `hub:8081` here (the real hub is the chart's, not this test's).
    hub = {"name": "hub", "image": real["images"]["probe"], "imagePullPolicy": "Never",
           "args": ["serve", ":8081", "hub"], "readinessProbe": {"httpGet": {"path": "/", "port": 8081}}}
    core.create_namespaced_pod(ns, pod_manifest(real, "hub", [hub]))
    core.create_namespaced_service(ns, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hub"},
                                        "spec": {"selector": {"app": "hub"}, "ports": [{"port": 8081}]}})
    _wait_ready(core, ns, "hub", 60)
    prefix = "/user/alice/"
    env = {"JUPYTERHUB_API_TOKEN": secrets.token_hex(16), "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
           "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice", "JUPYTERHUB_USER": "alice",
           "JUPYTERHUB_SERVICE_PREFIX": prefix, "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:8888{prefix}",
           "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback", "JUPYTERHUB_HOST": ""}
    container = {"name": "notebook", "image": image, "imagePullPolicy": "IfNotPresent",
                 "env": [{"name": k, "value": v} for k, v in env.items()], "ports": [{"containerPort": 8888}],
                 "readinessProbe": {"httpGet": {"path": f"{prefix}api", "port": 8888}, "periodSeconds": 2},
                 "securityContext": _restricted()}
    core.create_namespaced_pod(ns, pod_manifest(real, "jupyter-alice", [container],
                                                securityContext={"runAsUser": 1000, "runAsGroup": 100,
                                                                 "fsGroup": 100}))
    port = _node_port(core, ns, "jupyter-alice", {"app": "jupyter-alice"}, 8888)
    _wait_ready(core, ns, "jupyter-alice", 180)
    status, body = _until(lambda: _try_get(f"http://{real['nodeport_address']}:{port}{prefix}api"), 30,
                          "the Jupyter server")
    assert status == 200 and "version" in json.loads(body), body
    # without the user's token the server refuses its API (the hub's OAuth guards it)
    status, dummy = _get(f"http://{real['nodeport_address']}:{port}{prefix}api/contents")
    assert status == 403, status
    log = core.read_namespaced_pod_log("jupyter-alice", ns)
    assert "jupyterhub-singleuser" in log.lower() or "JupyterHub" in log, log[-2000:]


# --- the real chart with these images ----------------------------------------------------------------
def _api(url, token, method="GET", body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
        return resp.status, json.loads(text) if text else None


def test_chart_runs_these_images_and_spawns_a_notebook_on_the_real_node(cluster, core, ns, real):
    """Zero to JupyterHub 4.4.0 itself (helm install, the chart's own config and z2jh.py) with the hub,
    proxy, network-tools and notebook images, all on the real node: the hub answers through the
    proxy's NodePort, a spawned notebook server answers through the proxy with the user's token,
    and stopping it removes its pod. A small values file, not the role's (that is the role's test)."""
    chart = upstream_chart()
    if not chart.is_file():
        pytest.skip(f"{chart} is not on this machine (DATALAB_UPSTREAM_CHARTS)")
    for name in ("k8s-hub", "chp", "k8s-network-tools", "pyspark-notebook"):
        _image(real, name)
    on_node = {"nodeSelector": real["node_selector"], "tolerations": [real["toleration"]]}
    service_token = secrets.token_hex(16)
    values = {
        "hub": {**on_node, "db": {"type": "sqlite-memory"}, "networkPolicy": {"enabled": False},
                "config": {"JupyterHub": {"authenticator_class": "dummy"}},
                "services": {"platform-test": {"admin": True, "api_token": service_token}}},
        "proxy": {"secretToken": secrets.token_hex(32), "service": {"type": "NodePort"},
                  "chp": {**on_node, "networkPolicy": {"enabled": False}}},
        "prePuller": {"hook": {"enabled": False}, "continuous": {"enabled": False}},
        "scheduling": {"userScheduler": {"enabled": False}, "userPlaceholder": {"enabled": False}},
        "singleuser": {"image": {"name": "quay.io/jupyter/pyspark-notebook", "tag": "spark-3.5.2"},
                       "cmd": None, "uid": 1000, "fsGid": 100, "storage": {"type": "none"},
                       "networkPolicy": {"enabled": False}, "nodeSelector": real["node_selector"],
                       "extraTolerations": [real["toleration"]], "startTimeout": 180},
    }
    helm = [cluster.helm, "--kubeconfig", cluster.kubeconfig, "-n", ns]
    proc = subprocess.run([*helm, "install", "jh", str(chart), "-f", "-", "--wait", "--timeout", "5m"],
                          input=json.dumps(values), capture_output=True, text=True, timeout=400, check=False)
    try:
        pods = "\n".join(describe(core, ns, p.metadata.name) for p in core.list_namespaced_pod(ns).items)
        assert proc.returncode == 0, proc.stderr + "\n" + pods
        port = core.read_namespaced_service("proxy-public", ns).spec.ports[0].node_port
        base = f"http://{real['nodeport_address']}:{port}"
        # The proxy answers 503 until its route to the hub works (the hub registers it after it starts).
        status, info = _until(lambda: (r := _try_get(f"{base}/hub/api")) and r[0] != 503 and r, 90,
                              "the hub through the proxy")
        assert status == 200 and json.loads(info)["version"] == HUB_JUPYTERHUB, info
        _api(f"{base}/hub/api/users/alice", service_token, "POST")
        t0 = time.monotonic()
        assert _api(f"{base}/hub/api/users/alice/server", service_token, "POST")[0] in (201, 202)
        _until(lambda: _api(f"{base}/hub/api/users/alice", service_token)[1]["servers"].get("", {}).get("ready"),
               240, "alice's server to be ready")
        spawn = time.monotonic() - t0
        pod = core.read_namespaced_pod("jupyter-alice", ns)
        assert pod.spec.node_name == real["name"]
        assert [c.image for c in pod.spec.init_containers] == ["quay.io/jupyterhub/k8s-network-tools:4.4.0"]
        assert pod.spec.containers[0].image == "quay.io/jupyter/pyspark-notebook:spark-3.5.2"
        assert not pod.spec.containers[0].args and not pod.spec.containers[0].command  # the image's CMD
        token = _api(f"{base}/hub/api/users/alice/tokens", service_token, "POST", {"expires_in": 600})[1]["token"]
        status, body = _get(f"{base}/user/alice/api/status", headers={"Authorization": f"token {token}"})
        assert status == 200 and "started" in json.loads(body), body
        status, body = _get(f"{base}/user/alice/api/kernelspecs", headers={"Authorization": f"token {token}"})
        assert status == 200 and "python3" in json.loads(body)["kernelspecs"], body
        assert _get(f"{base}/user/alice/api/contents")[0] == 403  # no token
        _api(f"{base}/hub/api/users/alice/server", service_token, "DELETE")
        _until(lambda: not core.list_namespaced_pod(ns, label_selector="component=singleuser-server").items, 60,
               "alice's pod to go")
        print(f"chart: spawn to ready {spawn:.1f}s")
    finally:
        subprocess.run([*helm, "uninstall", "jh", "--wait", "--timeout", "2m"], capture_output=True, timeout=180,
                       check=False)
