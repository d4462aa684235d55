"""The Native Authenticator variant: lab-b of the local inventory (`jupyterhub_authenticator: native`),
its real hub on the test bed's real node, driven by Chromium.

Sign up, the admin authorizes, the user logs in.  With `open_signup` (the role's choice, as in the
reference) a sign-up is authorized at once, so the admin first revokes it and the login is refused,
then authorizes it again and the login succeeds.  The hub's database outlives a run (its volume), so
the admin's sign-up may exist already: the test signs up a new user each run.
"""
from __future__ import annotations

import uuid

import pytest

from e2e_harness import flows

pytestmark = pytest.mark.e2e

# Test-only passwords of the sign-ups this test makes (lab-b is a demo install on the test bed).
ADMIN_PASSWORD = "native-e2e-Adm1n-password"
PASSWORD = "native-e2e-Passw0rd"


@pytest.fixture(scope="module")
def native(native_platform):
    cfg = native_platform.values["hub"]["config"]
    return native_platform, cfg["Authenticator"]["admin_users"][0]


def test_the_hub_runs_the_native_authenticator(native):
    platform, dummy = native
    cfg = platform.values["hub"]["config"]
    assert cfg["JupyterHub"]["authenticator_class"] == "nativeauthenticator.NativeAuthenticator"
    assert "GenericOAuthenticator" not in cfg


def _admin_session(browser, home, hub, admin):
    """A browser logged in as the admin; signs the admin up first when the hub does not know them."""
    ctx = browser.context(home)
    page = ctx.new_page()
    flows.native_login(page, hub, admin, ADMIN_PASSWORD)
    if "/hub/login" in page.url:
        text = flows.native_signup(page, hub, admin, ADMIN_PASSWORD)
        assert "successful" in text.lower(), f"the admin could not sign up: {text[:300]}"
        flows.native_login(page, hub, admin, ADMIN_PASSWORD)
    assert "/hub/login" not in page.url, f"admin {admin} could not log in: {flows.page_text(page)[:300]}"
    return ctx, page


def test_admin_sees_admin_tab_and_a_wrong_password_stays_on_the_login(native, browser, trusting_home, artifacts):
    platform, admin = native
    ctx, page = _admin_session(browser, trusting_home, platform.hub_url, admin)
    try:
        page.goto(f"{platform.hub_url}/hub/home")
        assert flows.admin_link(page).count() >= 1, f"no Admin tab for {admin}: {flows.page_text(page)[:300]}"
        page.goto(f"{platform.hub_url}/hub/logout")
        flows.native_login(page, platform.hub_url, admin, "not-the-password")
        assert "/hub/login" in page.url, f"a wrong password got in: {page.url}"
        assert "/hub/home" not in page.url
        page.screenshot(path=str(artifacts / "native-wrong-password.png"))
    finally:
        ctx.close()


def test_sign_up_admin_authorizes_log_in(native, browser, trusting_home, artifacts):
    platform, admin = native
    hub = platform.hub_url
    user = f"ada-{uuid.uuid4().hex[:6]}"

    ctx = browser.context(trusting_home)
    page = ctx.new_page()
    try:
        text = flows.native_signup(page, hub, user, PASSWORD)
        assert "successful" in text.lower(), text[:400]
        page.screenshot(path=str(artifacts / "native-signup.png"))
    finally:
        ctx.close()

    ctx, page = _admin_session(browser, trusting_home, hub, admin)
    try:
        page.goto(f"{hub}/hub/authorize")
        row = page.locator("tr", has_text=user)
        assert row.count() == 1, f"{user} is not listed for authorization: {flows.page_text(page)[:500]}"
        if row.get_by_role("button", name="Unauthorize").count():
            row.get_by_role("button", name="Unauthorize").click()
            page.wait_for_load_state("load")
        page.goto(f"{hub}/hub/logout")
    finally:
        ctx.close()

    ctx = browser.context(trusting_home)
    page = ctx.new_page()
    try:
        flows.native_login(page, hub, user, PASSWORD)
        assert "/hub/login" in page.url, "an unauthorized user got in"
    finally:
        ctx.close()

    ctx, page = _admin_session(browser, trusting_home, hub, admin)
    try:
        page.goto(f"{hub}/hub/authorize")
        page.locator("tr", has_text=user).get_by_role("button", name="Authorize").click()
        page.wait_for_load_state("load")
        page.goto(f"{hub}/hub/authorize")
        assert page.locator("tr", has_text=user).get_by_role("button", name="Unauthorize").count() == 1
        page.goto(f"{hub}/hub/logout")
    finally:
        ctx.close()

    ctx = browser.context(trusting_home)
    page = ctx.new_page()
    try:
        flows.native_login(page, hub, user, PASSWORD)
        assert "/hub/login" not in page.url, f"{user} could not log in after authorization: {flows.page_text(page)[:300]}"
        page.goto(f"{hub}/hub/home")
        assert user in flows.page_text(page)
        assert flows.admin_link(page).count() == 0, f"{user} (not an admin) sees an Admin tab"
    finally:
        ctx.close()
