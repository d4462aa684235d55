"""Chromium against the hub `site.yml -i inventories/local` installed on the test bed's real node.

The browser opens the hub's NodePort URL, is sent to the install's own Keycloak pod (HTTPS, the CA
the role issued trusted through the NSS database of the browser's HOME) and comes back logged in;
a profile from the spawn form starts a real notebook server pod.  Nothing here is a stand-in: the
hub, its proxy, Keycloak and the user server are the chart's and the role's pods.
"""
from __future__ import annotations

import re
import time

import pytest

from e2e_harness import flows

pytestmark = pytest.mark.e2e

ADMIN, MEMBER = "isla.williams", "mark.ketting"
# Fits beside both installs on the test bed's two cores.
PROFILE = {"cpu": "1", "memory": "2 GiB", "image": "spark-3.5.2"}
NOTEBOOK_IMAGE = "quay.io/jupyter/pyspark-notebook:spark-3.5.2"
GIB = 1024 ** 3


def _quantity_bytes(q: str) -> int:
    units = {"Ki": 1024, "Mi": 1024 ** 2, "Gi": GIB, "Ti": 1024 ** 4, "k": 1000, "M": 10 ** 6, "G": 10 ** 9,
             "T": 10 ** 12}
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q))
    assert m, f"not a quantity: {q!r}"
    return int(float(m.group(1)) * units.get(m.group(2), 1))


def _wait(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _login(page, platform, user, password=None, screenshot=None):
    flows.keycloak_login(page, platform.hub_url, platform.keycloak_url, user, password or platform.password(user),
                         screenshot=screenshot)
    assert flows.landed_on_hub(page, platform.hub_url), (
        f"login as {user} did not come back to the hub; at {page.url}: {flows.page_text(page)[:400]}")


def test_every_pod_of_both_installs_runs_and_is_ready_on_the_real_node(platform, native_platform):
    """Both hosts of inventories/local: Keycloak, MinIO, hub and proxy Running and Ready (their readiness
    probes passed) on the test bed's real node; the bucket Job's pod Succeeded there."""
    for install in (platform, native_platform):
        pods = [p for p in install.core.list_namespaced_pod(install.namespace).items
                if (p.metadata.labels or {}).get("component") != "singleuser-server"]
        apps = sorted({(p.metadata.labels or {}).get("component") or (p.metadata.labels or {}).get(
            "app.kubernetes.io/name") for p in pods if p.status.phase == "Running"})
        assert {"keycloak", "minio", "hub", "proxy"} <= set(apps), (install.namespace, apps)
        for pod in pods:
            node = install.core.read_node(pod.spec.node_name)
            where = f"{install.namespace}/{pod.metadata.name} on {pod.spec.node_name}"
            assert node.metadata.labels.get("testbed.datalab.io/node-kind") == "real", where
            if pod.status.phase == "Succeeded":
                assert (pod.metadata.labels or {}).get("job-name"), f"{where}: Succeeded but not a Job's pod"
                continue
            assert pod.status.phase == "Running", f"{where}: {pod.status.phase}"
            assert all(c.ready for c in pod.status.container_statuses or []), f"{where}: not ready"


def test_the_hub_mounts_exactly_the_values_the_role_gave_helm(platform):
    """The hidden-value check: every value the role gave Helm for this install (the release's user-supplied
    values) is in the configuration the hub pod mounts (the chart's Secret hub, values.yaml); the
    chart's own defaults fill the rest.  No stand-in in between."""
    from tests.realplatform import assert_contains, helm_values
    from tools.testbed import cluster

    given = helm_values(cluster.info(), platform.namespace)
    assert given["hub"]["config"]["JupyterHub"]["authenticator_class"] == "generic-oauth"
    assert given["hub"]["extraEnv"]["OAUTH_CALLBACK_URL"] == f"{platform.hub_url}/hub/oauth_callback"
    assert_contains(platform.values, given)


def test_keycloak_serves_the_role_certificate(page, platform):
    """Chromium, trusting only the platform CA (NSS), opens the install's Keycloak at its published address."""
    response = page.goto(f"{platform.keycloak_url}/realms/master")
    assert response.status == 200
    assert '"realm":"master"' in page.content().replace(" ", "")


def test_untrusted_ca_is_refused(browser, platform, tmp_path):
    from e2e_harness.browser import make_home

    ctx = browser.context(make_home(tmp_path, None))
    try:
        with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
            ctx.new_page().goto(f"{platform.keycloak_url}/realms/master")
    finally:
        ctx.close()


def test_admin_logs_in_and_sees_admin_tab(page, platform, artifacts):
    _login(page, platform, ADMIN, screenshot=artifacts / "keycloak-login.png")
    page.goto(f"{platform.hub_url}/hub/home")
    assert flows.admin_link(page).count() >= 1, f"no Admin tab for {ADMIN}: {flows.page_text(page)[:400]}"
    page.screenshot(path=str(artifacts / "hub-home.png"), clip=flows.SHOT)


def test_member_logs_in_without_admin_tab(page, platform):
    _login(page, platform, MEMBER)
    page.goto(f"{platform.hub_url}/hub/home")
    assert MEMBER in flows.page_text(page)
    assert flows.admin_link(page).count() == 0, f"{MEMBER} sees an Admin tab"


def test_wrong_password_stays_on_keycloak(page, platform, artifacts):
    flows.keycloak_login(page, platform.hub_url, platform.keycloak_url, MEMBER, "not-the-password")
    assert page.url.startswith(platform.keycloak_url), f"left Keycloak after a wrong password: {page.url}"
    error = page.locator(flows.KEYCLOAK_ERROR).first
    error.wait_for(timeout=10_000)
    assert "Invalid username or password" in error.inner_text()
    page.screenshot(path=str(artifacts / "keycloak-wrong-password.png"))


def test_a_callback_other_than_the_hubs_is_refused_by_keycloak(page, platform, realm_name):
    """Keycloak accepts only the hub's callback: the authorization request a hub on another port would send
    stops at Keycloak."""
    wrong = f"http://{platform.keycloak_node_ip}:{platform.hub_node_port + 1}/hub/oauth_callback"
    page.goto(f"{platform.keycloak_url}/realms/{realm_name}/protocol/openid-connect/auth?client_id="
              f"{platform.client_id}&response_type=code&scope=openid&redirect_uri={wrong}")
    assert page.url.startswith(platform.keycloak_url)
    assert "Invalid parameter: redirect_uri" in flows.page_text(page)


# --- spawn -----------------------------------------------------------------------------------------
def _user_pod(platform, user):
    pods = platform.core.list_namespaced_pod(platform.namespace, label_selector="component=singleuser-server").items
    mine = [p for p in pods if (p.metadata.annotations or {}).get("hub.jupyter.org/username") == user]
    return mine[0] if mine else None


def _driver_service(platform, name):
    return next((s for s in platform.core.list_namespaced_service(platform.namespace).items
                 if s.metadata.name == name), None)


@pytest.fixture()
def clean_user_pods(platform):
    from e2e_harness.platform import delete_user_pods

    delete_user_pods(platform)
    yield
    delete_user_pods(platform)


def test_spawn_form_starts_a_real_notebook_server(page, platform, artifacts, clean_user_pods):
    """Profile 1 CPU / 2 GiB / spark-3.5.2 from the form -> a notebook server pod Running and Ready on the
    real node with exactly that; JupyterLab answers through the hub's proxy; the per-user Spark driver
    Service exists with its ports; stopping the server from the hub's home page removes both."""
    _login(page, platform, ADMIN)
    page.goto(f"{platform.hub_url}/hub/spawn")
    page.locator("select[name$='--cpu']").wait_for()
    flows.choose_profile(page, PROFILE)
    page.screenshot(path=str(artifacts / "spawn-form.png"), clip=flows.SHOT)
    outcome = flows.start_real_server(page, platform.hub_url, ADMIN, timeout=300)
    assert outcome == "running", f"spawn did not reach the server: {outcome}"
    page.locator(".jp-LauncherCard").first.wait_for(timeout=120_000)  # JupyterLab drew its launcher
    page.screenshot(path=str(artifacts / "jupyterlab.png"), clip=flows.SHOT)
    status = page.request.get(f"{platform.hub_url}/user/{ADMIN}/api/status")
    assert status.status == 200 and "started" in status.json(), status.text()[:300]

    pod = _user_pod(platform, ADMIN)
    assert pod is not None, "no user pod in the API server"
    assert pod.status.phase == "Running" and all(c.ready for c in pod.status.container_statuses), pod.status
    node = platform.core.read_node(pod.spec.node_name)
    assert node.metadata.labels.get("testbed.datalab.io/node-kind") == "real", pod.spec.node_name
    nb = next(c for c in pod.spec.containers if c.name == "notebook")
    assert nb.image == NOTEBOOK_IMAGE
    res = nb.resources
    assert res.requests["cpu"] == "1" and res.limits["cpu"] == "1", res
    assert _quantity_bytes(res.requests["memory"]) == 2 * GIB == _quantity_bytes(res.limits["memory"]), res
    assert pod.spec.service_account_name == "spark"
    env = {e.name: e for e in nb.env}
    assert env["NAMESPACE"].value_from.field_ref.field_path == "metadata.namespace"
    mounts = {m.mount_path: m.name for m in nb.volume_mounts}
    volumes = {v.name: v for v in pod.spec.volumes}
    assert volumes[mounts["/minio-s3-credentials"]].secret.secret_name == "minio-s3-credentials"
    assert volumes[mounts["/etc/datalab/ca"]].config_map.name == "datalab-ca"

    svc = _wait("the Spark driver Service", lambda: _driver_service(platform, pod.metadata.name), 30)
    assert svc.spec.cluster_ip == "None", "driver Service is not headless"
    assert sorted(p.port for p in svc.spec.ports) == [2222, 4040, 7777]

    page.goto(f"{platform.hub_url}/hub/home")
    page.locator("#stop").click()
    _wait("the notebook server pod to go", lambda: _user_pod(platform, ADMIN) is None, 120)
    _wait("the driver Service to go with its pod", lambda: _driver_service(platform, pod.metadata.name) is None, 90)


def test_wrong_redirect_uri_in_realm_is_refused_then_reconciled(page, platform, artifacts, platform_ca_file,
                                                                realm_name):
    """The realm's redirect URI changed in Keycloak by hand: the login is refused; the role's realm import
    (the keycloak playbook) puts it back and the login works again."""
    import requests

    from e2e_harness.platform import reimport_realm

    base = platform.keycloak_url
    http = requests.Session()
    http.trust_env = False  # this CA, this machine: no proxy, no CA bundle from the environment
    http.verify = str(platform_ca_file)

    def admin_auth():  # admin tokens live 60 s: one per step
        token = http.post(f"{base}/realms/master/protocol/openid-connect/token", timeout=30,
                          data={"grant_type": "password", "client_id": "admin-cli",
                                "username": platform.admin_username, "password": platform.admin_password})
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    callback = f"{platform.hub_url}/hub/oauth_callback"
    client = http.get(f"{base}/admin/realms/{realm_name}/clients", params={"clientId": platform.client_id},
                      headers=admin_auth(), timeout=30).json()[0]
    assert client["redirectUris"] == [callback], "converge should have limited the redirect URIs to the callback"
    r = http.put(f"{base}/admin/realms/{realm_name}/clients/{client['id']}", headers=admin_auth(), timeout=30,
                 json=dict(client, redirectUris=["http://127.0.0.1:9/elsewhere"]))
    assert r.status_code == 204, r.text
    page.goto(f"{platform.hub_url}/hub/login")
    page.get_by_text(re.compile(r"Sign in with", re.I)).first.click()
    page.wait_for_load_state("load")
    assert "Invalid parameter: redirect_uri" in flows.page_text(page)

    reimport_realm(platform, artifacts)
    again = http.get(f"{base}/admin/realms/{realm_name}/clients", params={"clientId": platform.client_id},
                     headers=admin_auth(), timeout=30).json()
    assert [c["redirectUris"] for c in again] == [[callback]]
    assert again[0]["id"] == client["id"], "the realm import replaced the client instead of updating it"
    _login(page, platform, MEMBER)
