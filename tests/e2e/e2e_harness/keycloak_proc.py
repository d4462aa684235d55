"""Keycloak where the cluster says it is: `<node address>:<node port>` of ConfigMap
keycloak-address, over HTTPS with the keystore the `self_signed` provider issued
(Secret keycloak-tls), admin from Secret keycloak-admin.

Started with the test bed's one host launcher (`tools.testbed.keycloak.launch`: the cached,
built distribution, the same JVM choice and start options), with the role's keystore and admin
instead of the test bed's own.  The process is recorded with tools/testbed/procs.py (PID + start
time) and stopped by PID, never by name.  It is reused by a later session when the keystore is
the same.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import socket
import ssl
import urllib.request
from pathlib import Path

from tools.testbed import keycloak as tb_keycloak
from tools.testbed.paths import state_dir
from tools.testbed.procs import Procs, TestbedError

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


def up(p: Platform, timeout: float = 240) -> dict:
    state = _state(p)
    procs = Procs(state)
    marker = state / "fingerprint"
    if procs.alive(NAME):
        if marker.exists() and marker.read_text() == _fingerprint(p) and _ready(p.keycloak_url, p.ca_pem):
            return {"url": p.keycloak_url, "started": False, "log": str(procs.log(NAME))}
        procs.stop(NAME)
    if state.exists():
        shutil.rmtree(state)
    tls = state / "tls"
    tls.mkdir(mode=0o700, parents=True)
    (tls / "keystore.p12").write_bytes(p.keystore)
    (tls / "keystore.p12").chmod(0o600)
    spec = tb_keycloak.Launch(
        state=state, host=p.keycloak_host, port=p.keycloak_port, management_port=_free_port(p.keycloak_host),
        keystore=tls / "keystore.p12", keystore_password=p.keystore_password,
        admin_user=p.admin_username, admin_password=p.admin_password, ca_pem=p.ca_pem)
    try:
        tb_keycloak.launch(spec, timeout=timeout)
    except TestbedError as exc:
        raise HarnessError(f"the e2e Keycloak (verified against the platform CA) did not start: {exc}") from None
    marker.write_text(_fingerprint(p))
    (state / "connection.json").write_text(json.dumps({"url": p.keycloak_url}))
    return {"url": p.keycloak_url, "started": True, "log": str(procs.log(NAME))}


def down(p: Platform) -> None:
    """Stop the process and remove its state (the keystore copy, the database)."""
    Procs(_state(p)).stop(NAME)
    shutil.rmtree(_state(p), ignore_errors=True)
