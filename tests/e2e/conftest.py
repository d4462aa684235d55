"""Fixtures of the end-to-end harness (TESTBED.md section 2): real programs on loopback.

Run through `make e2e` (= `python -m tools.e2e_setup run`), which installs and caches the
heavy dependencies in venvs under ~/.cache/datalab-notebooks/e2e/ and runs pytest with the
e2e venv.  Every module here imports only the standard library and pytest at import time,
so the main test run (`-m "not e2e"`) collects them without the heavy packages.
"""
from __future__ import annotations

import http.server
import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from tools import e2e_setup  # noqa: E402

ARTIFACTS = REPO / "artifacts" / "e2e"
SINGLEUSER_PORT = 8888  # KubeSpawner's default port, reached at pod_connect_ip 127.0.0.1


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
        import playwright  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError:
        pytest.fail(f"this interpreter ({sys.executable}) lacks the e2e packages: run the e2e tests with "
                    "`make e2e` (python -m tools.e2e_setup run), which uses the e2e venv", pytrace=False)
    return info


# --- the platform ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def platform(cluster, keycloak, e2e_tools, artifacts):
    """The converged `local` install (first host, or DATALAB_E2E_HOST), read back from the cluster.

    Converges with `ansible-playbook site.yml -i inventories/local` when the namespace lacks
    what the harness reads (the test-bed Keycloak of `keycloak` is where converge imports the realm).
    """
    from e2e_harness import platform as pf

    try:
        host, namespace = pf.select_host()
        api = pf.api_client(cluster.kubeconfig)
        missing = pf.missing_objects(api, namespace)
        if missing:
            print(f"\n[e2e] namespace {namespace} lacks {', '.join(missing)}: converging site.yml", file=sys.stderr)
            pf.converge(artifacts / "converge.log")
            still = pf.missing_objects(api, namespace)
            if still:
                raise pf.HarnessError(f"after converge, namespace {namespace} still lacks {', '.join(still)}")
        return pf.read(cluster.kubeconfig, host, namespace)
    except pf.HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def platform_ca_file(platform, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.crt"
    path.write_text(platform.ca_pem)
    return path


@pytest.fixture(scope="session")
def e2e_keycloak(platform, e2e_tools, artifacts, platform_ca_file):
    """Keycloak on the node address:port of ConfigMap keycloak-address, the role's keystore, realm reconciled."""
    from e2e_harness import keycloak_proc
    from e2e_harness import platform as pf
    from e2e_harness.platform import HarnessError

    try:
        info = keycloak_proc.up(platform)
        pf.reimport_realm(platform, artifacts, platform.keycloak_url, platform_ca_file)
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield info
    if Path(info["log"]).exists():
        shutil.copy2(info["log"], artifacts / "keycloak.log")
    if not os.environ.get("DATALAB_KEEP_E2E"):  # the e2e Keycloak is this harness's own process
        keycloak_proc.down(platform)


@pytest.fixture(scope="session")
def realm_name(platform) -> str:
    from e2e_harness.platform import inventory_hosts

    return inventory_hosts()[platform.host].get("datalab_keycloak_realm") or "demo"


# --- the single-user server stand-in -------------------------------------------------------------
class _StandIn(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = (b"<!doctype html><title>single-user stand-in</title>"
                b"<h1>single-user server stand-in</h1><p>path: " + self.path.encode() + b"</p>")
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def singleuser_standin():
    """A trivial HTTP server on 127.0.0.1:8888: what the hub reaches instead of the user pod."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", SINGLEUSER_PORT), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{SINGLEUSER_PORT}"
    server.shutdown()
    server.server_close()


# --- hubs ---------------------------------------------------------------------------------------------
class HubManager:
    """Starts hubs one at a time on the hub's node address and port (a second one would collide)."""

    def __init__(self, platform, tools):
        self.platform = platform
        self.tools = tools
        self.current = None
        self.key = None

    def get(self, name: str, values: dict, venv: str = "hub50", env_patch: dict | None = None,
            bind_host: str | None = None):
        from e2e_harness import hub_proc

        key = json.dumps([name, values, venv, env_patch, bind_host], sort_keys=True)
        if self.current is not None and self.key == key and self.current.alive():
            return self.current
        self.stop()
        self.current = hub_proc.start(
            self.platform, name=name, values=values, venv=self.tools["venvs"][venv], chp=self.tools["chp"],
            bind_host=bind_host or self.platform.keycloak_node_ip, bind_port=self.platform.hub_node_port,
            env_patch=env_patch)
        self.key = key
        return self.current

    def stop(self):
        if self.current is not None:
            self.current.stop()
            if self.current.log_path.exists():  # kept with the test artifacts
                shutil.copy2(self.current.log_path, ARTIFACTS / f"hub-{self.current.name}.log")
            shutil.rmtree(self.current.state, ignore_errors=True)  # its database and cookie secret
            self.current = None
            self.key = None


@pytest.fixture(scope="session")
def hubs(platform, e2e_tools, singleuser_standin):
    manager = HubManager(platform, e2e_tools)
    yield manager
    manager.stop()


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
