"""The Native Authenticator variant: the role's values rendered with
`jupyterhub_authenticator: native` (tests/e2e/render_values.yml), run as a hub.

Sign up, the admin authorizes, the user logs in.  With `open_signup` (the role's choice,
as in the reference) a sign-up is authorized at once, so the admin first revokes it and
the login is refused, then authorizes it again and the login succeeds.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from e2e_harness import flows

pytestmark = pytest.mark.e2e

USER = "ada.lovelace"
PASSWORD = "native-e2e-Passw0rd"


@pytest.fixture(scope="module")
def native_values(platform, artifacts):
    from e2e_harness import platform as pf

    out = Path(tempfile.mkdtemp(prefix="e2e-native-")) / "values.json"
    argv = [pf.main_venv_bin("ansible-playbook"), "tests/e2e/render_values.yml", "-i", pf.INVENTORY,
            "--limit", platform.host, "-e", f"e2e_values_out={out}", "-e", "jupyterhub_authenticator=native"]
    log = artifacts / "render-native-values.log"
    with open(log, "w") as fh:
        rc = subprocess.run(argv, cwd=pf.REPO, env=pf.ansible_env(), stdout=fh, stderr=subprocess.STDOUT,
                            check=False).returncode
    assert rc == 0, f"rendering the native values failed, log {log}:\n{log.read_text()[-2000:]}"
    values = json.loads(out.read_text())
    out.unlink()
    return values


@pytest.fixture(scope="module")
def native_hub(hubs, native_values):
    return hubs.get("native", native_values)


def test_values_select_the_native_authenticator(native_values):
    cfg = native_values["hub"]["config"]
    assert cfg["JupyterHub"]["authenticator_class"] == "nativeauthenticator.NativeAuthenticator"
    assert "GenericOAuthenticator" not in cfg


def test_sign_up_admin_authorizes_log_in(native_hub, native_values, browser, trusting_home, artifacts):
    admin = native_values["hub"]["config"]["Authenticator"]["admin_users"][0]
    admin_password = "native-e2e-Adm1n-password"
    hub = native_hub.url

    ctx = browser.context(trusting_home)
    page = ctx.new_page()
    try:
        assert "successful" in flows.native_signup(page, hub, admin, admin_password).lower()
        text = flows.native_signup(page, hub, USER, PASSWORD)
        assert "successful" in text.lower(), text[:400]
        page.screenshot(path=str(artifacts / "native-signup.png"))

        flows.native_login(page, hub, admin, admin_password)
        assert "/hub/login" not in page.url, f"admin {admin} could not log in: {flows.page_text(page)[:300]}"
        page.goto(f"{hub}/hub/authorize")
        row = page.locator("tr", has_text=USER)
        assert row.count() == 1, f"{USER} is not listed for authorization: {flows.page_text(page)[:500]}"
        if row.get_by_role("button", name="Unauthorize").count():
            row.get_by_role("button", name="Unauthorize").click()
            page.wait_for_load_state("load")
        page.goto(f"{hub}/hub/logout")
    finally:
        ctx.close()

    ctx = browser.context(trusting_home)
    page = ctx.new_page()
    try:
        flows.native_login(page, hub, USER, PASSWORD)
        assert "/hub/login" in page.url, "an unauthorized user got in"

        flows.native_login(page, hub, admin, admin_password)
        page.goto(f"{hub}/hub/authorize")
        row = page.locator("tr", has_text=USER)
        row.get_by_role("button", name="Authorize").click()
        page.wait_for_load_state("load")
        page.goto(f"{hub}/hub/authorize")
        assert page.locator("tr", has_text=USER).get_by_role("button", name="Unauthorize").count() == 1
        page.goto(f"{hub}/hub/logout")

        flows.native_login(page, hub, USER, PASSWORD)
        assert "/hub/login" not in page.url, f"{USER} could not log in after authorization: {flows.page_text(page)[:300]}"
        page.goto(f"{hub}/hub/home")
        assert USER in flows.page_text(page)
        assert flows.admin_link(page).count() == 0
    finally:
        ctx.close()
