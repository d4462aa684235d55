"""One install of the platform on the test bed's real node, and what a person does with it.

Shared by tests/integration/test_platform_real.py and benchmarks/platform_real.py: the inventory
(own namespace, NodePorts the API server reports free, the real node's selector and toleration,
the real Z2JH chart), the OAuth login a browser follows (hub -> the install's Keycloak -> hub), an
API token made as the hub's token page makes it, and a spawn through the hub's API.
"""
from __future__ import annotations

import html
import re
import time
from pathlib import Path

import requests
import yaml

from tests.node_ports import free_node_ports
from tools.testbed import images as images_api
from tools.testbed import platform_images

HOST = "lab-real"
REALM = "demo-real"
ADMIN, MEMBER = "isla.williams", "mark.ketting"
# What the install runs (tools/testbed/platform_images.py); the notebook image is only needed to spawn.
IMAGES = platform_images.PLATFORM
upstream_chart = platform_images.upstream_chart
NOTEBOOK_IMAGE = platform_images.NOTEBOOK
SPAWN_OPTIONS = {"cpu": "1", "memory": "2 GiB", "image": "spark-3.5.2"}
LOCAL_GROUP_VARS = Path(__file__).resolve().parents[1] / "inventories" / "local" / "group_vars" / "notebook_platform"


def local_resources() -> dict:
    """Keycloak's and MinIO's requests as the local inventory sizes them: an install of these tests runs
    beside a demo's two on the 2-core real node and must leave room for a 1-CPU notebook server (with the
    roles' defaults, 500m + 250m, it does not)."""
    return {name: yaml.safe_load((LOCAL_GROUP_VARS / f"{role}.yml").read_text())[name]
            for role, name in (("keycloak", "keycloak_resources"), ("minio", "minio_resources"))}


def import_images(real: dict, names=IMAGES) -> None:
    for name in names:
        images_api.import_into(real["containerd_socket"], [images_api.ensure(name)])


def write_inventory(path: Path, cluster, real: dict, core, ns: str) -> dict:
    """The inventory of one install in namespace `ns`; returns its facts (ports, address, ...)."""
    keycloak_port, hub_port = free_node_ports(core, 2)
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
        "jupyterhub_chart_ref": str(upstream_chart()),
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
        **local_resources(),
    }
    path.write_text(yaml.safe_dump({"notebook_platform": {"hosts": {HOST: hostvars}, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}))
    return {"ns": ns, "inventory": path, "hub_port": hub_port, "keycloak_port": keycloak_port,
            "address": real["address"], "hub": f"http://{real['address']}:{hub_port}",
            "keycloak": f"https://{real['address']}:{keycloak_port}/realms/{REALM}/"}


def ca_file(core, ns: str, directory: Path) -> str:
    """The CA the role issued (ConfigMap datalab-ca), as a file for `requests`."""
    path = directory / f"{ns}-ca.crt"
    path.write_text(core.read_namespaced_config_map("datalab-ca", ns).data["ca.crt"])
    return str(path)


def session(ca: str | None = None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxy and no REQUESTS_CA_BUNDLE from the environment: this CA, this machine
    if ca:
        s.verify = ca
    return s


def login(install: dict, ca: str, username: str, password: str) -> tuple[requests.Session, requests.Response]:
    """The OAuth code flow a browser follows: hub -> the install's Keycloak (HTTPS, the role's CA) ->
    the hub's callback.  Returns the session and the last response."""
    s = session(ca)
    page = s.get(f"{install['hub']}/hub/oauth_login?next=%2Fhub%2Fhome", timeout=30)
    if not page.url.startswith(install["keycloak"]):
        raise AssertionError(f"the hub sent the browser to {page.url}, not to {install['keycloak']}")
    action = html.unescape(re.search(r'<form[^>]+id="kc-form-login"[^>]+action="([^"]+)"', page.text).group(1))
    return s, s.post(action, data={"username": username, "password": password, "credentialId": ""}, timeout=60)


def token(s: requests.Session, hub: str, username: str) -> str:
    """An API token for the logged-in user, made the way the hub's token page does (cookie + XSRF)."""
    xsrf = s.cookies.get("_xsrf", path="/hub/") or s.cookies.get("_xsrf")
    made = s.post(f"{hub}/hub/api/users/{username}/tokens", json={"note": "datalab test", "expires_in": 3600},
                  headers={"X-XSRFToken": xsrf, "Referer": f"{hub}/hub/token"}, timeout=30)
    if made.status_code not in (200, 201):
        raise AssertionError(f"making a token: {made.status_code} {made.text[:300]}")
    return made.json()["token"]


def spawn(install: dict, ca: str, username: str, timeout: float = 600) -> tuple[requests.Session, dict, float]:
    """Log in, choose the profile's options and start the server through the hub's API; wait until the
    hub says it is ready.  Returns the API session (user token), the server model and the seconds from
    the start request to ready."""
    s, home = login(install, ca, username, username)
    if home.url != f"{install['hub']}/hub/home":
        raise AssertionError(f"{username} did not log in: {home.url}")
    form = s.get(f"{install['hub']}/hub/spawn", timeout=30).text
    slug = re.search(r'name="profile"[^>]*value="([^"]+)"', form).group(1)
    api = session()
    api.headers["Authorization"] = f"token {token(s, install['hub'], username)}"
    t0 = time.monotonic()
    started = api.post(f"{install['hub']}/hub/api/users/{username}/server", timeout=60,
                       json={"profile": slug, **SPAWN_OPTIONS})
    if started.status_code not in (201, 202):
        raise AssertionError(f"starting the server: {started.status_code} {started.text[:300]}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = api.get(f"{install['hub']}/hub/api/users/{username}", timeout=30).json()["servers"].get("", {})
        if server.get("ready"):
            return api, dict(server, profile=slug), time.monotonic() - t0
        time.sleep(0.25)
    raise AssertionError(f"{username}'s server was not ready after {timeout:.0f}s")


def helm_values(cluster, ns: str, release: str = "jupyterhub") -> dict:
    """The values the role gave Helm for `release` in `ns` (`helm get values`)."""
    import json
    import subprocess

    proc = subprocess.run([cluster.helm, "--kubeconfig", cluster.kubeconfig, "get", "values", release, "-n", ns,
                           "-o", "json"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"helm get values {release} -n {ns}: {proc.stderr[-1000:]}"
    return json.loads(proc.stdout)


def assert_contains(big, small, path: str = "values") -> None:
    """Every value of `small` (values given to Helm) is in `big` (what the hub mounts), where the
    chart's own defaults fill the rest; null removes a chart default, so the key must be absent."""
    if isinstance(small, dict):
        assert isinstance(big, dict), path
        for key, value in small.items():
            if value is None:
                assert big.get(key) is None, f"{path}.{key}: mounted {big[key]!r}, given null"
                continue
            assert key in big, f"{path}.{key} is not in the hub's mounted values"
            assert_contains(big[key], value, f"{path}.{key}")
    else:
        assert big == small, f"{path}: mounted {big!r}, given {small!r}"
