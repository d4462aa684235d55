"""Fixtures of the end-to-end harness: Chromium against the platform `inventories/local` runs on the
test bed's real node (hub, Keycloak, MinIO, user servers are real pods).

Run through `make e2e` (= `python -m tools.e2e_setup run`), which installs and caches the
heavy dependencies in venvs under ~/.cache/datalab-notebooks/e2e/ and runs pytest with the
e2e venv.  Every module here imports only the standard library and pytest at import time,
so the main test run (`-m "not e2e"`) collects them without the heavy packages.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from tools import e2e_setup  # noqa: E402

ARTIFACTS = REPO / "artifacts" / "e2e"


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents and "e2e" not in item.keywords:
            raise pytest.UsageError(f"{item.nodeid}: every test under tests/e2e must be marked e2e")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def e2e_tools() -> dict:
    """Everything tools/e2e_setup.py installs (cached); the test process must be its runner venv."""
    try:
        info = e2e_setup.ensure()
    except e2e_setup.SetupError as exc:
        pytest.fail(f"e2e set-up failed: {exc}", pytrace=False)
    try:
        import boto3  # noqa: F401
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail(f"this interpreter ({sys.executable}) lacks the e2e packages: run the e2e tests with "
                    "`make e2e` (python -m tools.e2e_setup run), which uses the e2e venv", pytrace=False)
    return info


# --- the platform ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def converged(cluster, e2e_tools, artifacts):
    """`ansible-playbook site.yml -i inventories/local` (both installs, every pod on the real node),
    run when a namespace lacks what the harness reads; skips where the local inventory cannot run."""
    from e2e_harness import platform as pf

    from tools.testbed import platform_images

    why = platform_images.local_inventory_missing()
    if why:
        pytest.skip(f"the local inventory cannot run here: {why}")
    try:
        api = pf.api_client(cluster.kubeconfig)
        namespaces = [v.get("datalab_namespace") for v in pf.inventory_hosts().values()]
        missing = {ns: pf.missing_objects(api, ns) for ns in namespaces}
        if any(missing.values()):
            lacking = "; ".join(f"{ns} lacks {', '.join(m)}" for ns, m in missing.items() if m)
            print(f"\n[e2e] {lacking}: converging site.yml", file=sys.stderr)
            pf.converge(artifacts / "converge.log")
            still = {ns: pf.missing_objects(api, ns) for ns in namespaces}
            if any(still.values()):
                raise pf.HarnessError(f"after converge still missing: {still}")
    except pf.HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    return cluster.kubeconfig


def _read_platform(kubeconfig: str, authenticator: str):
    from e2e_harness import platform as pf

    try:
        host, namespace = pf.select_host(authenticator)
        return pf.read(kubeconfig, host, namespace)
    except pf.HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def platform(converged):
    """The install that logs in through its Keycloak (lab-a, or DATALAB_E2E_HOST), read back."""
    return _read_platform(converged, "generic-oauth")


@pytest.fixture(scope="session")
def native_platform(converged):
    """The install with the Native Authenticator (lab-b), read back."""
    return _read_platform(converged, "native")


@pytest.fixture(scope="session")
def platform_ca_file(platform, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.crt"
    path.write_text(platform.ca_pem)
    return path


@pytest.fixture(scope="session")
def realm_name(platform) -> str:
    from e2e_harness.platform import inventory_hosts

    return inventory_hosts()[platform.host].get("datalab_keycloak_realm") or "demo"


# --- the browser -------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser(e2e_tools, artifacts):
    from e2e_harness.browser import Browser

    b = Browser(artifacts)
    yield b
    b.close()


@pytest.fixture(scope="session")
def trusting_home(platform, tmp_path_factory) -> Path:
    """A HOME whose NSS database trusts the platform CA (as a person who installed it would)."""
    from e2e_harness.browser import make_home

    return make_home(tmp_path_factory.mktemp("home-with-ca"), platform.ca_pem)


@pytest.fixture()
def page(browser, trusting_home):
    ctx = browser.context(trusting_home)
    pg = ctx.new_page()
    yield pg
    ctx.close()
