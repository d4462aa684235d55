"""Keycloak where the cluster says it is: `<node address>:<node port>` of ConfigMap
keycloak-address, over HTTPS with the keystore the `self_signed` provider issued
(Secret keycloak-tls), admin from Secret keycloak-admin, exactly the flags the role's
Deployment uses for TLS (`--https-key-store-file`, `--https-key-store-password`).

The test bed's own Keycloak (tools/testbed/keycloak.py) cannot serve here: it issues its
own certificate and admin.  This one shares its cached distribution, its JVM choice and its
start options, with the role's keystore and admin instead.  The process is recorded with
tools/testbed/procs.py (PID + start time) and stopped by PID, never by name.  It is reused by a later session when the keystore is the same.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import socket
import ssl
import time
import urllib.request
from pathlib import Path

from tools.testbed import keycloak as tb_keycloak
from tools.testbed.paths import state_dir
from tools.testbed.procs import Procs, check_port_free, tail

from .platform import HarnessError, Platform

NAME = "keycloak"


def _state(p: Platform) -> Path:
    return state_dir() / "e2e" / f"keycloak-{p.namespace}"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ready(url: str, ca_pem: str) -> bool:
    ctx = ssl.create_default_context(cadata=ca_pem)
    try:
        with urllib.request.urlopen(f"{url}/realms/master", context=ctx, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def _fingerprint(p: Platform) -> str:
    h = hashlib.sha256(p.keystore)
    h.update(p.keycloak_address.encode())
    h.update(p.admin_password.encode())
    return h.hexdigest()


def up(p: Platform, dist: Path, timeout: float = 240) -> dict:
    state = _state(p)
    procs = Procs(state)
    marker = state / "fingerprint"
    if procs.alive(NAME):
        if marker.exists() and marker.read_text() == _fingerprint(p) and _ready(p.keycloak_url, p.ca_pem):
            return {"url": p.keycloak_url, "started": False, "log": str(procs.log(NAME))}
        procs.stop(NAME)
    check_port_free(p.keycloak_host, p.keycloak_port, "the e2e Keycloak")
    if state.exists():
        shutil.rmtree(state)
    home = state / "home"
    (home / "bin").mkdir(parents=True)
    # kc.sh finds its home as <script dir>/..: a private home with its own data dir, the
    # (pre-built) distribution shared read-only through symlinks.
    shutil.copy2(dist / "bin" / "kc.sh", home / "bin" / "kc.sh")
    for sub in ("lib", "conf", "providers", "themes"):
        (home / sub).symlink_to(dist / sub)
    tls = state / "tls"
    tls.mkdir(mode=0o700)
    (tls / "keystore.p12").write_bytes(p.keystore)
    (tls / "keystore.p12").chmod(0o600)
    mgmt = _free_port(p.keycloak_host)
    argv = [str(home / "bin" / "kc.sh"), "start", "--optimized", "--http-enabled=false", "--hostname-strict=false",
            f"--https-key-store-file={tls / 'keystore.p12'}", f"--http-host={p.keycloak_host}",
            f"--https-port={p.keycloak_port}", f"--http-management-port={mgmt}", "--cache=local",
            "--log-console-color=false"]
    env = {  # secrets through the environment, not the command line (visible in ps)
        **tb_keycloak.java_env(dist),  # the same JVM choice as the test bed's Keycloak
        "KC_HTTPS_KEY_STORE_PASSWORD": p.keystore_password,
        "KC_BOOTSTRAP_ADMIN_USERNAME": p.admin_username,
        "KC_BOOTSTRAP_ADMIN_PASSWORD": p.admin_password,
        "JAVA_OPTS_APPEND": "-Djava.net.preferIPv4Stack=true",
    }
    procs.start(NAME, argv, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not procs.alive(NAME):
            raise HarnessError(f"Keycloak exited during start; last lines of {procs.log(NAME)}:\n"
                               f"{tail(procs.log(NAME), 30)}")
        if _ready(p.keycloak_url, p.ca_pem):
            marker.write_text(_fingerprint(p))
            (state / "connection.json").write_text(json.dumps({"url": p.keycloak_url}))
            return {"url": p.keycloak_url, "started": True, "log": str(procs.log(NAME))}
        time.sleep(1)
    procs.stop(NAME)
    raise HarnessError(f"Keycloak did not answer on {p.keycloak_url}/realms/master (verified against the platform "
                       f"CA) within {timeout:.0f}s; last lines of {procs.log(NAME)}:\n{tail(procs.log(NAME), 30)}")


def down(p: Platform) -> None:
    """Stop the process and remove its state (the keystore copy, the database)."""
    Procs(_state(p)).stop(NAME)
    shutil.rmtree(_state(p), ignore_errors=True)
