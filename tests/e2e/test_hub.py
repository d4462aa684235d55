"""A browser logs in through Keycloak to the JupyterHub the `jupyterhub` role configured,
and spawns a profile; KubeSpawner's objects are checked in the API server.

The hub is configured ONLY from the values the role gave the chart (read back from the
stand-in chart's ConfigMap standin-jupyterhub-values), applied in the chart's order by
e2e_harness/hub_config.py.  What differs from a hub pod is listed in LOCAL_OVERRIDES.
"""
from __future__ import annotations

import copy
import re
import time

import pytest

from e2e_harness import flows

pytestmark = pytest.mark.e2e

# The only settings that do not come from the role's values, and why.
LOCAL_OVERRIDES = {
    "bind_url": "the proxy listens on <keycloakNodeIp>:<proxy-public nodePort> (a node's loopback address)"
                " instead of the proxy pod",
    "hub_bind_url": "the hub API on 127.0.0.1:<free port> instead of the hub Service",
    "proxy_api_url": "the proxy API on 127.0.0.1:<free port> instead of the proxy-api Service",
    "proxy_command": "configurable-http-proxy from npm, started by the hub (the chart runs it as its own pod)",
    "pod_connect_ip": "127.0.0.1, where a trivial HTTP server stands in for the single-user server"
                      " (pod IPs are never contacted)",
}
# Also not from the values, by nature of running outside a pod: KubeSpawner's API access
# comes from the test bed's kubeconfig (KUBECONFIG) instead of the hub's ServiceAccount, and
# files of hub.extraVolumes are written to a scratch dir, their container paths translated.

ADMIN, MEMBER = "isla.williams", "mark.ketting"
PROFILE = {"cpu": "2", "memory": "4 GB", "image": "spark-3.5.2"}
GIB = 1024 ** 3


def _quantity_bytes(q: str) -> int:
    units = {"Ki": 1024, "Mi": 1024 ** 2, "Gi": GIB, "Ti": 1024 ** 4, "k": 1000, "M": 10 ** 6, "G": 10 ** 9,
             "T": 10 ** 12}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    assert m, f"not a quantity: {q!r}"
    return int(float(m.group(1)) * units.get(m.group(2), 1))


@pytest.fixture(scope="module")
def oauth_hub(hubs, platform, e2e_keycloak):
    return hubs.get("oauth", platform.values)


def _login(page, hub, platform, user, password=None, screenshot=None):
    flows.keycloak_login(page, hub.url, platform.keycloak_url, user, password or platform.password(user),
                         screenshot=screenshot)
    assert flows.landed_on_hub(page, hub.url), (
        f"login as {user} did not come back to the hub; at {page.url}: {flows.page_text(page)[:400]}\n"
        f"hub log tail:\n{hub.log_text()[-2000:]}")


def test_only_listed_local_overrides(oauth_hub):
    assert set(oauth_hub.local) == set(LOCAL_OVERRIDES)


def test_keycloak_serves_the_role_certificate(page, platform, e2e_keycloak):
    """Chromium, trusting only the platform CA (NSS), opens Keycloak at the published address."""
    response = page.goto(f"{platform.keycloak_url}/realms/master")
    assert response.status == 200
    assert '"realm":"master"' in page.content().replace(" ", "")


def test_untrusted_ca_is_refused(browser, platform, e2e_keycloak, tmp_path):
    from e2e_harness.browser import make_home

    ctx = browser.context(make_home(tmp_path, None))
    try:
        with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
            ctx.new_page().goto(f"{platform.keycloak_url}/realms/master")
    finally:
        ctx.close()


def test_admin_logs_in_and_sees_admin_tab(page, oauth_hub, platform, artifacts):
    _login(page, oauth_hub, platform, ADMIN, screenshot=artifacts / "keycloak-login.png")
    page.goto(f"{oauth_hub.url}/hub/home")
    assert flows.admin_link(page).count() >= 1, f"no Admin tab for {ADMIN}: {flows.page_text(page)[:400]}"
    page.screenshot(path=str(artifacts / "hub-home.png"), clip=flows.SHOT)


def test_member_logs_in_without_admin_tab(page, oauth_hub, platform):
    _login(page, oauth_hub, platform, MEMBER)
    page.goto(f"{oauth_hub.url}/hub/home")
    assert MEMBER in flows.page_text(page)
    assert flows.admin_link(page).count() == 0, f"{MEMBER} sees an Admin tab"


def test_wrong_password_stays_on_keycloak(page, oauth_hub, platform, artifacts):
    flows.keycloak_login(page, oauth_hub.url, platform.keycloak_url, MEMBER, "not-the-password")
    assert page.url.startswith(platform.keycloak_url), f"left Keycloak after a wrong password: {page.url}"
    error = page.locator(flows.KEYCLOAK_ERROR).first
    error.wait_for(timeout=10_000)
    assert "Invalid username or password" in error.inner_text()
    page.screenshot(path=str(artifacts / "keycloak-wrong-password.png"))


# --- spawn -----------------------------------------------------------------------------------------
def _user_pod(platform, user):
    pods = platform.core.list_namespaced_pod(platform.namespace, label_selector="component=singleuser-server").items
    mine = [p for p in pods if (p.metadata.annotations or {}).get("hub.jupyter.org/username") == user]
    return mine[0] if mine else None


def _wait(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture()
def clean_user_pods(platform):
    from e2e_harness.platform import delete_user_pods

    delete_user_pods(platform)
    yield
    delete_user_pods(platform)


@pytest.mark.parametrize("hub_env", ["hub50", "hub-current"])
def test_spawn_profile_creates_pod_and_driver_service(hub_env, hubs, platform, e2e_keycloak, page, artifacts,
                                                      clean_user_pods):
    """Profile CPU 2 / 4 GB / spark-3.5.2 -> the user pod and its headless Spark driver Service.

    hub50 is what the Z2JH 4.4.0 hub image ships (KubeSpawner 7.0.0), hub-current the current
    releases (JupyterHub 6, KubeSpawner 7.1.0): the driver-Service snippet must work on both.
    """
    hub = hubs.get(f"oauth-{hub_env}", platform.values, venv=hub_env)
    _login(page, hub, platform, ADMIN)
    page.goto(f"{hub.url}/hub/spawn")
    page.locator("select[name$='--cpu']").wait_for()
    flows.choose_profile(page, PROFILE)
    if hub_env == "hub50":
        page.screenshot(path=str(artifacts / "spawn-form.png"), clip=flows.SHOT)
    outcome = flows.start_server(page, hub.url, ADMIN)
    assert outcome == "running", f"spawn did not reach the server: {outcome}\nhub log:\n{hub.log_text()[-3000:]}"

    pod = _user_pod(platform, ADMIN)
    assert pod is not None, "no user pod in the API server"
    spec = pod.spec
    nb = next(c for c in spec.containers if c.name == "notebook")
    assert nb.image == "quay.io/jupyter/pyspark-notebook:spark-3.5.2"
    res = nb.resources
    assert res.requests["cpu"] == "2" and res.limits["cpu"] == "2", res
    assert _quantity_bytes(res.requests["memory"]) == 4 * GIB == _quantity_bytes(res.limits["memory"]), res
    assert spec.service_account_name == "spark"
    env = {e.name: e for e in nb.env}
    assert "NAMESPACE" in env, "user pod has no NAMESPACE variable"
    assert env["NAMESPACE"].value_from.field_ref.field_path == "metadata.namespace"
    volumes = {v.name: v for v in spec.volumes}
    mounts = {m.mount_path: m.name for m in nb.volume_mounts}
    s3 = [v for v in volumes.values() if v.secret and v.secret.secret_name == "minio-s3-credentials"]
    assert s3 and mounts.get("/minio-s3-credentials") == s3[0].name, "S3 credentials not mounted"
    ca = [v for v in volumes.values() if v.config_map and v.config_map.name == "datalab-ca"]
    assert ca and mounts.get("/etc/datalab/ca") == ca[0].name, "platform CA not mounted"
    notebooks = [v for v in volumes.values() if v.config_map and v.config_map.name == "jupyterhub-notebooks"]
    assert notebooks and notebooks[0].name in mounts.values(), "notebook ConfigMap not mounted"

    svc = _wait("the Spark driver Service",
                lambda: next((s for s in platform.core.list_namespaced_service(platform.namespace).items
                              if s.metadata.name == pod.metadata.name), None), 30)
    assert svc.spec.cluster_ip == "None", "driver Service is not headless"
    assert sorted(p.port for p in svc.spec.ports) == [2222, 4040, 7777]
    owners = svc.metadata.owner_references or []
    assert [(o.kind, o.name, o.uid) for o in owners] == [("Pod", pod.metadata.name, pod.metadata.uid)]

    platform.core.delete_namespaced_pod(pod.metadata.name, platform.namespace, grace_period_seconds=0)
    _wait("the garbage collector to remove the driver Service with its pod",
          lambda: not any(s.metadata.name == pod.metadata.name
                          for s in platform.core.list_namespaced_service(platform.namespace).items), 90)


# --- one role-provided value flipped: each must fail, readably ----------------------------------------
def _flipped(values, path, new):
    v = copy.deepcopy(values)
    node = v
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return v


def test_wrong_callback_url_is_refused_by_keycloak(hubs, platform, e2e_keycloak, page):
    wrong = f"http://{platform.keycloak_node_ip}:{platform.hub_node_port + 1}/hub/oauth_callback"
    hub = hubs.get("flip-callback", _flipped(platform.values, ["hub", "extraEnv", "OAUTH_CALLBACK_URL"], wrong))
    page.goto(f"{hub.url}/hub/login")
    page.get_by_text(re.compile(r"Sign in with", re.I)).first.click()
    page.wait_for_load_state("load")
    assert page.url.startswith(platform.keycloak_url)
    assert "Invalid parameter: redirect_uri" in flows.page_text(page)


def test_wrong_client_secret_fails_the_login(hubs, platform, e2e_keycloak, page):
    hub = hubs.get("flip-secret", _flipped(platform.values, ["hub", "extraEnv", "OAUTH_CLIENT_SECRET"],
                                           "not-the-client-secret"))
    flows.keycloak_login(page, hub.url, platform.keycloak_url, MEMBER, platform.password(MEMBER))
    _wait("the hub's error page", lambda: page.url.startswith(hub.url + "/hub/oauth_callback"), 30)
    text = flows.page_text(page)
    assert re.search(r"\b(400|401|403|500)\b", text), text[:400]
    assert re.search(r"unauthorized_client|invalid_client|401|Unauthorized", hub.log_text()), hub.log_text()[-2000:]
    page.goto(f"{hub.url}/hub/home")
    assert "/hub/login" in page.url, "a user got in although the hub's client secret is wrong"


def test_wrong_ca_fails_the_token_request(hubs, platform, e2e_keycloak, page, tmp_path):
    from cryptography.hazmat.primitives import serialization

    from tools.testbed import pki

    other = tmp_path / "other-ca.crt"
    other.write_bytes(pki.make_ca("not-the-platform-ca").cert.public_bytes(serialization.Encoding.PEM))
    values = _flipped(platform.values, ["hub", "config", "GenericOAuthenticator", "http_request_kwargs"],
                      {"ca_certs": str(other)})
    hub = hubs.get("flip-ca", values)
    flows.keycloak_login(page, hub.url, platform.keycloak_url, MEMBER, platform.password(MEMBER))
    _wait("the hub's error page", lambda: page.url.startswith(hub.url + "/hub/oauth_callback"), 30)
    assert re.search(r"\b500\b", flows.page_text(page))
    assert re.search(r"certificate verify failed|SSL certificate (problem|OpenSSL verify)", hub.log_text(), re.I), \
        hub.log_text()[-2000:]


def test_wrong_profile_override_fails_the_spawn(hubs, platform, e2e_keycloak, page, clean_user_pods):
    """The reference's defect: CPU given as a string. The spawn fails and says why."""
    values = copy.deepcopy(platform.values)
    override = values["singleuser"]["profileList"][0]["profile_options"]["cpu"]["choices"]["2"]["kubespawner_override"]
    override["cpu_guarantee"] = override["cpu_limit"] = "2"
    hub = hubs.get("flip-profile", values)
    _login(page, hub, platform, ADMIN)
    page.goto(f"{hub.url}/hub/spawn")
    flows.choose_profile(page, PROFILE)
    outcome = flows.start_server(page, hub.url, ADMIN, timeout=60)
    assert outcome.startswith("failed"), outcome
    assert "Spawn failed" in outcome, outcome
    assert re.search(r"The 'cpu_(guarantee|limit)' trait of a KubeSpawner instance expected a float", hub.log_text()), \
        hub.log_text()[-2000:]
    assert _user_pod(platform, ADMIN) is None


def test_wrong_redirect_uri_in_realm_is_refused_then_reconciled(oauth_hub, platform, e2e_keycloak, page, artifacts,
                                                                platform_ca_file, realm_name):
    """The realm's redirect URI flipped in Keycloak: login refused; the role's realm import puts it back."""
    import requests

    from e2e_harness.platform import reimport_realm

    base = platform.keycloak_url

    def admin_auth():  # admin tokens live 60 s: one per step
        token = requests.post(f"{base}/realms/master/protocol/openid-connect/token", verify=str(platform_ca_file),
                              data={"grant_type": "password", "client_id": "admin-cli",
                                    "username": platform.admin_username, "password": platform.admin_password},
                              timeout=30).json()["access_token"]
        return {"Authorization": f"Bearer {token}"}

    auth = admin_auth()
    clients = requests.get(f"{base}/admin/realms/{realm_name}/clients", params={"clientId": platform.client_id},
                           headers=auth, verify=str(platform_ca_file), timeout=30).json()
    client = clients[0]
    callback = oauth_hub.env["OAUTH_CALLBACK_URL"]
    assert client["redirectUris"] == [callback], "converge should have limited the redirect URIs to the callback"
    flipped = dict(client, redirectUris=["http://127.0.0.1:9/elsewhere"])
    r = requests.put(f"{base}/admin/realms/{realm_name}/clients/{client['id']}", json=flipped, headers=auth,
                     verify=str(platform_ca_file), timeout=30)
    assert r.status_code == 204, r.text
    page.goto(f"{oauth_hub.url}/hub/login")
    page.get_by_text(re.compile(r"Sign in with", re.I)).first.click()
    page.wait_for_load_state("load")
    assert "Invalid parameter: redirect_uri" in flows.page_text(page)

    reimport_realm(platform, artifacts, base, platform_ca_file)
    again = requests.get(f"{base}/admin/realms/{realm_name}/clients", params={"clientId": platform.client_id},
                         headers=admin_auth(), verify=str(platform_ca_file), timeout=30).json()
    assert [c["redirectUris"] for c in again] == [[callback]]
    assert again[0]["id"] == client["id"], "the realm import replaced the client instead of updating it"


# A driver-Service hook in the style of the reference installation: it relies on
# KubeSpawner's get_service_manifest(owner_reference), which KubeSpawner 7.1 changed to
# get_service_manifest(owner_reference, port). Written here to show that the hub-current
# spawn test has teeth: such a snippet passes on 7.0.0 and breaks the spawn on 7.1.0.
REFERENCE_STYLE_HOOK = '''
async def e2e_reference_style_hook(spawner, pod):
    from kubernetes_asyncio.client.models import V1OwnerReference
    owner = V1OwnerReference(api_version="v1", kind="Pod", name=pod["metadata"]["name"],
                             uid=pod["metadata"]["uid"], block_owner_deletion=False)
    service = spawner.get_service_manifest(owner)
    await spawner.api.create_namespaced_service(spawner.namespace, service)

c.KubeSpawner.after_pod_created_hook = e2e_reference_style_hook
'''


def test_reference_style_driver_hook_breaks_on_kubespawner_7_1(hubs, platform, e2e_keycloak, page, clean_user_pods):
    values = copy.deepcopy(platform.values)
    values["hub"]["extraConfig"]["02-spark-driver-service"] = REFERENCE_STYLE_HOOK
    hub = hubs.get("reference-hook-hub-current", values, venv="hub-current")
    _login(page, hub, platform, ADMIN)
    page.goto(f"{hub.url}/hub/spawn")
    flows.choose_profile(page, PROFILE)
    outcome = flows.start_server(page, hub.url, ADMIN, timeout=90)
    assert outcome.startswith("failed"), outcome
    assert re.search(r"get_service_manifest\(\) missing 1 required positional argument: 'port'", hub.log_text()), \
        hub.log_text()[-2000:]
