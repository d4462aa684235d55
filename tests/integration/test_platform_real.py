"""The platform for real: `site.yml` installs Keycloak, MinIO and the real Zero-to-JupyterHub 4.4.0 chart
on the test bed's real node, with the images built on this machine, and people log in through the
install's own Keycloak pod.

One install with an inventory of its own (a namespace, NodePorts the API server reports free, the
real node's selector and toleration through `datalab_node_selector` / `datalab_tolerations`). The
realm goes to the install's Keycloak through its NodePort on the node address (10.88.0.1, the test
bed's bridge), with the CA the role issued; the hub reaches the same address from its pod. Nothing
here is a stand-in: every pod of the install runs, and its readiness probes pass.

Skips (with the reason) where the real node is off or the chart is not on this machine
(DATALAB_UPSTREAM_CHARTS, default ../shared/upstream-charts).
"""
from __future__ import annotations

import html
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from tests.ansible_run import changed_tasks, recap, run_playbook
from tests.integration.test_testbed import _until
from tests.node_ports import free_node_ports
from tools.testbed import images as images_api

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
HOST = "lab-real"
REALM = "demo-real"
ADMIN, MEMBER = "isla.williams", "mark.ketting"
# What the install runs: Keycloak, MinIO and its bucket Job, and the chart's hub, proxy and
# (in every user pod) network tools.  The notebook image is only needed to spawn.
IMAGES = ("keycloak", "minio", "mc", "k8s-hub", "chp", "k8s-network-tools")


def upstream_charts() -> Path:
    return Path(os.environ.get("DATALAB_UPSTREAM_CHARTS") or REPO.parent / "shared" / "upstream-charts")


@pytest.fixture(scope="module")
def install(cluster, real, core, tmp_path_factory):
    chart = upstream_charts() / "jupyterhub-4.4.0.tgz"
    if not chart.exists():
        pytest.skip(f"{chart} is not on this machine (DATALAB_UPSTREAM_CHARTS)")
    for name in IMAGES:
        built = images_api.ensure(name)
        images_api.import_into(real["containerd_socket"], [built])
    ns = f"dl-real-{uuid.uuid4().hex[:6]}"
    keycloak_port, hub_port = free_node_ports(core, 2)
    work = tmp_path_factory.mktemp("platform-real")
    hostvars = {
        "datalab_namespace": ns,
        "datalab_keycloak_realm": REALM,
        "datalab_hub_node_port": hub_port,
        "keycloak_node_port": keycloak_port,
        "datalab_kubeconfig": cluster.kubeconfig,
        "datalab_helm_binary": cluster.helm,
        "datalab_tls_provider": "self_signed",
        "datalab_node_selector": real["node_selector"],
        "datalab_tolerations": [real["toleration"]],
        "jupyterhub_chart_ref": str(chart),
        "jupyterhub_chart_repo_url": "",
        "jupyterhub_chart_version": "4.4.0",
        "jupyterhub_admin_users": [ADMIN],
        # The executor image (and with it the S3A jars) is issue 14's: no init container copies them yet.
        "jupyterhub_spark_jars_source": "none",
        "keycloak_demo_users": True,
        "keycloak_demo_passwords": "username",
        "keycloak_rollout_timeout": 300,
        "minio_demo_data_url": "",
        "minio_rollout_timeout": 180,
        "minio_job_timeout": 180,
        "spark_image_build": False,
    }
    inventory = work / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"notebook_platform": {"hosts": {HOST: hostvars}, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}))
    t0 = time.monotonic()
    rc, out = run_playbook(inventory, "site.yml", timeout=1500)
    took = time.monotonic() - t0
    info = {"ns": ns, "inventory": inventory, "rc": rc, "out": out, "seconds": took, "hub_port": hub_port,
            "keycloak_port": keycloak_port, "address": real["address"], "real": real}
    try:
        yield info
    finally:
        core.delete_namespace(ns, grace_period_seconds=0)
        _until(lambda: _gone(core, ns), 180, f"namespace {ns} to go")


def _gone(core, ns):
    try:
        core.read_namespace(ns)
    except Exception:  # noqa: BLE001 - 404: gone
        return True
    return False


def _converged(install):
    assert install["rc"] == 0, install["out"][-6000:]
    return install


def _ca_file(core, install, tmp_path) -> str:
    ca = core.read_namespaced_config_map("datalab-ca", install["ns"]).data["ca.crt"]
    path = tmp_path / "ca.crt"
    path.write_text(ca)
    return str(path)


def test_site_converges_with_every_pod_running_and_ready_on_the_real_node(install, core):
    _converged(install)
    pods = core.list_namespaced_pod(install["ns"]).items
    names = sorted(p.metadata.name.rsplit("-", 2)[0] if p.metadata.owner_references else p.metadata.name
                   for p in pods)
    assert {"keycloak", "minio", "hub", "proxy"} <= set(names), names
    for pod in pods:
        assert pod.spec.node_name == install["real"]["name"], (pod.metadata.name, pod.spec.node_name)
        if pod.status.phase == "Succeeded":  # the bucket Job
            continue
        assert pod.status.phase == "Running", (pod.metadata.name, pod.status.phase)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        assert conditions.get("Ready") == "True", (pod.metadata.name, conditions)
        # every container really started (the readiness probes of Keycloak, MinIO, hub and proxy passed)
        assert all(s.ready and s.state.running for s in pod.status.container_statuses), pod.metadata.name


def test_a_rerun_changes_nothing(install):
    _converged(install)
    rc, out = run_playbook(install["inventory"], "site.yml", timeout=1500)
    assert rc == 0, out[-4000:]
    assert recap(out)[HOST]["changed"] == 0, changed_tasks(out)


def _login(install, ca: str, username: str, password: str) -> tuple[requests.Session, requests.Response]:
    """The OAuth code flow a browser follows: hub -> the install's Keycloak (HTTPS, the role's CA) ->
    the hub's callback.  Returns the session and the last response."""
    hub = f"http://{install['address']}:{install['hub_port']}"
    s = requests.Session()
    s.trust_env = False  # no proxy and no REQUESTS_CA_BUNDLE from the environment: this CA, this machine
    s.verify = ca
    page = s.get(f"{hub}/hub/oauth_login?next=%2Fhub%2Fhome", timeout=30)
    keycloak = f"https://{install['address']}:{install['keycloak_port']}/realms/{REALM}/"
    assert page.url.startswith(keycloak), page.url
    action = html.unescape(re.search(r'<form[^>]+id="kc-form-login"[^>]+action="([^"]+)"', page.text).group(1))
    return s, s.post(action, data={"username": username, "password": password, "credentialId": ""}, timeout=60)


def test_demo_users_log_in_through_the_installs_keycloak(install, core, tmp_path):
    _converged(install)
    ca = _ca_file(core, install, tmp_path)
    hub = f"http://{install['address']}:{install['hub_port']}"
    session, home = _login(install, ca, ADMIN, ADMIN)
    assert home.status_code == 200 and home.url == f"{hub}/hub/home", (home.status_code, home.url)
    assert session.get(f"{hub}/hub/admin", timeout=30).status_code == 200
    session, home = _login(install, ca, MEMBER, MEMBER)
    assert home.url == f"{hub}/hub/home", home.url
    assert session.get(f"{hub}/hub/admin", timeout=30, allow_redirects=False).status_code == 403


def test_a_wrong_password_stays_on_keycloak(install, core, tmp_path):
    _converged(install)
    ca = _ca_file(core, install, tmp_path)
    dummy, page = _login(install, ca, MEMBER, "not-the-password")
    assert page.url.startswith(f"https://{install['address']}:{install['keycloak_port']}/realms/{REALM}/")
    assert "Invalid username or password" in page.text


def test_the_hub_runs_the_values_the_role_rendered(install, cluster):
    """No stand-in in between: the configuration mounted in the hub pod holds every value the role
    gave Helm (the chart's own defaults fill the rest)."""
    _converged(install)
    ns = install["ns"]
    given = json.loads(subprocess.run([cluster.helm, "--kubeconfig", cluster.kubeconfig, "get", "values",
                                       "jupyterhub", "-n", ns, "-o", "json"],
                                      capture_output=True, text=True, check=True).stdout)
    mounted = yaml.safe_load(subprocess.run(
        ["kubectl", "--kubeconfig", cluster.kubeconfig, "-n", ns, "exec", "deploy/hub", "--",
         "cat", "/usr/local/etc/jupyterhub/secret/values.yaml"],
        capture_output=True, text=True, check=True).stdout)

    def contains(big, small, path="values"):
        if isinstance(small, dict):
            assert isinstance(big, dict), path
            for key, value in small.items():
                if value is None:  # null removes a chart default: Helm drops the key
                    assert big.get(key) is None, f"{path}.{key}: mounted {big[key]!r}, given null"
                    continue
                assert key in big, f"{path}.{key} is not in the hub's mounted values"
                contains(big[key], value, f"{path}.{key}")
        else:
            assert big == small, f"{path}: mounted {big!r}, given {small!r}"

    assert given["hub"]["config"]["JupyterHub"]["authenticator_class"] == "generic-oauth"
    contains(mounted, given)


def _token(session: requests.Session, hub: str, username: str) -> str:
    """An API token for the logged-in user, made the way the hub's token page does (cookie + XSRF)."""
    xsrf = session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf")
    made = session.post(f"{hub}/hub/api/users/{username}/tokens", json={"note": "platform test", "expires_in": 3600},
                        headers={"X-XSRFToken": xsrf, "Referer": f"{hub}/hub/token"}, timeout=30)
    assert made.status_code in (200, 201), (made.status_code, made.text[:500])
    return made.json()["token"]


def test_a_profile_spawns_a_real_notebook_server_that_answers_through_the_proxy(install, core, real, tmp_path):
    """The spawn form's choices reach a notebook pod that runs on the real node with that CPU, memory
    and image; its Jupyter server answers through the hub's proxy with the user's token; the per-user
    Spark driver Service exists with its ports; stopping the server removes both."""
    _converged(install)
    built = images_api.ensure("pyspark-notebook")
    images_api.import_into(real["containerd_socket"], [built])
    ca = _ca_file(core, install, tmp_path)
    hub = f"http://{install['address']}:{install['hub_port']}"
    session, home = _login(install, ca, MEMBER, MEMBER)
    assert home.url == f"{hub}/hub/home", home.url
    form = session.get(f"{hub}/hub/spawn", timeout=30).text
    slug = re.search(r'name="profile"[^>]*value="([^"]+)"', form).group(1)
    api = requests.Session()
    api.trust_env = False
    api.headers["Authorization"] = f"token {_token(session, hub, MEMBER)}"
    t0 = time.monotonic()
    started = api.post(f"{hub}/hub/api/users/{MEMBER}/server", timeout=60,
                       json={"profile": slug, "cpu": "1", "memory": "2 GB", "image": "spark-3.5.2"})
    assert started.status_code in (201, 202), (started.status_code, started.text[:500])

    def ready():
        server = api.get(f"{hub}/hub/api/users/{MEMBER}", timeout=30).json()["servers"].get("", {})
        return server if server.get("ready") else None

    server = _until(ready, 600, f"{MEMBER}'s server to be ready")
    install["spawn_seconds"] = time.monotonic() - t0
    assert server["user_options"] == {"profile": slug, "cpu": "1", "memory": "2 GB", "image": "spark-3.5.2"}
    (pod,) = core.list_namespaced_pod(install["ns"], label_selector="component=singleuser-server").items
    assert pod.spec.node_name == real["name"]
    (container,) = [c for c in pod.spec.containers if c.name == "notebook"]
    assert container.image == built.refs[0]
    # "2 GB" is the second memory choice (the first, 1 GB, is the default): KubeSpawner's G is 2**30 bytes
    assert container.resources.limits == {"cpu": "1", "memory": str(2 * 2**30)}, container.resources.limits
    assert container.resources.requests == {"cpu": "1", "memory": str(2 * 2**30)}, container.resources.requests
    status = api.get(f"{hub}/user/{MEMBER}/api/status", timeout=30)
    assert status.status_code == 200 and "started" in status.json(), status.text[:300]
    service = core.read_namespaced_service(pod.metadata.name, install["ns"])
    assert sorted((p.name, p.port) for p in service.spec.ports) == [
        ("spark-block-manager", 7777), ("spark-driver", 2222), ("spark-ui", 4040)]
    assert service.spec.cluster_ip == "None"

    stopped = api.delete(f"{hub}/hub/api/users/{MEMBER}/server", timeout=60)
    assert stopped.status_code in (202, 204), stopped.text[:300]
    _until(lambda: not core.list_namespaced_pod(install["ns"], field_selector=f"metadata.name={pod.metadata.name}").items,
           180, "the notebook pod to go")
    _until(lambda: not core.list_namespaced_service(
        install["ns"], field_selector=f"metadata.name={pod.metadata.name}").items, 60, "the driver Service to go")
