"""What a person does in the browser: log in through Keycloak, fill the spawn form, sign up."""
from __future__ import annotations

import re
import time

KEYCLOAK_ERROR = "#input-error, .kc-feedback-text, #kc-error-message, .alert-error, .pf-m-danger, [id^=input-error]"


SHOT = {"x": 0, "y": 0, "width": 1280, "height": 520}  # screenshots for the README: the top of the page


def keycloak_login(page, hub_url: str, keycloak_url: str, username: str, password: str, screenshot=None) -> None:
    """From the hub's login page to Keycloak's form, submitted. Leaves the page wherever it lands."""
    page.goto(f"{hub_url}/hub/login")
    page.get_by_text(re.compile(r"Sign in with", re.I)).first.click()
    page.wait_for_url(re.compile("^" + re.escape(keycloak_url) + "/realms/"), timeout=30_000)
    page.fill("#username", username)
    if screenshot:
        page.screenshot(path=str(screenshot))
    page.fill("#password", password)
    page.click("#kc-login")
    page.wait_for_load_state("load")


def landed_on_hub(page, hub_url: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.url.startswith(hub_url + "/hub/") and "/oauth_callback" not in page.url:
            return True
        time.sleep(0.2)
    return False


def page_text(page) -> str:
    try:
        return page.inner_text("body")
    except Exception:  # noqa: BLE001 - a page that is navigating away
        return ""


def admin_link(page):
    return page.locator("a[href$='/hub/admin'], a[href$='/hub/admin#/']")


def choose_profile(page, choices: dict[str, str]) -> None:
    """Select each profile option by its choice key, e.g. {"cpu": "2", "memory": "4 GiB"}."""
    for option, value in choices.items():
        select = page.locator(f"select[name$='--{option}']")
        assert select.count() == 1, f"the spawn form has no (single) select for option {option!r}"
        select.select_option(value=value)


def start_real_server(page, hub_url: str, user: str, timeout: float = 300) -> str:
    """Submit the spawn form; wait until the browser is at the user's JupyterLab, or the spawn fails.
    Returns "running", or what went wrong."""
    page.locator("form input[type=submit], form button[type=submit]").first.click()
    deadline = time.monotonic() + timeout
    user_prefix = f"{hub_url}/user/{user}/"
    while time.monotonic() < deadline:
        if page.url.startswith(user_prefix) and "JupyterLab" in (page.title() or ""):
            return "running"
        text = page_text(page)
        if "/spawn-pending/" in page.url and re.search(r"Spawn failed|failed to start", text, re.I):
            return "failed: " + text
        time.sleep(0.5)
    return f"timeout at {page.url}: {page_text(page)[:500]}"


def native_signup(page, hub_url: str, username: str, password: str) -> str:
    page.goto(f"{hub_url}/hub/signup")
    page.fill("#username_input", username)
    if page.locator("#email_input").count():
        page.fill("#email_input", f"{username}@example.org")
    page.fill("#password_input", password)
    if page.locator("#password_confirmation_input").count():
        page.fill("#password_confirmation_input", password)
    page.locator("form input[type=submit], form button[type=submit]").first.click()
    page.wait_for_load_state("load")
    return page_text(page)


def native_login(page, hub_url: str, username: str, password: str) -> None:
    page.goto(f"{hub_url}/hub/login")
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.locator("#login_submit, form input[type=submit], form button[type=submit]").first.click()
    page.wait_for_load_state("load")
