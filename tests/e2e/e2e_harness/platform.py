"""What a converged `site.yml -i inventories/local` left in the cluster, read back for the e2e tests.

Names come from docs/CONTRACT.md.  Every pod of the install runs on the test bed's real node; the
browser reaches the hub and Keycloak only through their NodePorts on that node's address (the test
bed's own bridge), never a pod or Service IP.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
INVENTORY = "inventories/local"


class HarnessError(RuntimeError):
    """A failure of the set-up, with a message meant for a person."""


def main_venv_bin(name: str) -> str:
    """A tool of the main venv (ansible-playbook, ...): the e2e venv does not carry Ansible."""
    for candidate in (REPO / ".venv" / "bin" / name, Path(shutil.which(name) or "")):
        if candidate.name and candidate.exists():
            return str(candidate)
    raise HarnessError(f"{name} not found: run `make setup` first (it installs Ansible into .venv)")


def ansible_env() -> dict:
    return {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}


def inventory_hosts() -> dict[str, dict]:
    """host -> its variables, for the hosts of group notebook_platform in inventories/local."""
    proc = subprocess.run([main_venv_bin("ansible-inventory"), "-i", INVENTORY, "--list"], cwd=REPO,
                          env=ansible_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HarnessError(f"ansible-inventory -i {INVENTORY} failed:\n{proc.stderr[-2000:]}")
    data = json.loads(proc.stdout)
    hosts = set()
    stack = ["notebook_platform"]
    while stack:
        group = data.get(stack.pop(), {})
        hosts.update(group.get("hosts", []))
        stack.extend(group.get("children", []))
    hostvars = data.get("_meta", {}).get("hostvars", {})
    return {h: hostvars.get(h, {}) for h in sorted(hosts)}


def select_host(authenticator: str = "generic-oauth") -> tuple[str, str]:
    """(inventory host, namespace) of the first host with `authenticator`, or DATALAB_E2E_HOST (OAuth)."""
    hosts = inventory_hosts()
    if not hosts:
        raise HarnessError(f"{INVENTORY} has no host in group notebook_platform")
    chosen = [h for h, v in hosts.items() if v.get("jupyterhub_authenticator", "generic-oauth") == authenticator]
    if not chosen:
        raise HarnessError(f"{INVENTORY} has no host with jupyterhub_authenticator {authenticator}")
    host = (authenticator == "generic-oauth" and os.environ.get("DATALAB_E2E_HOST")) or chosen[0]
    if host not in hosts:
        raise HarnessError(f"DATALAB_E2E_HOST={host} is not a host of {INVENTORY} (hosts: {', '.join(hosts)})")
    ns = hosts[host].get("datalab_namespace")
    if not ns or "{{" in str(ns):
        raise HarnessError(f"host {host} of {INVENTORY} has no literal datalab_namespace ({ns!r})")
    return host, ns


def _b64(data: dict | None, key: str) -> str:
    if not data or key not in data:
        return ""
    return base64.b64decode(data[key]).decode()


@dataclass
class Platform:
    """One converged install (one inventory host = one namespace)."""

    host: str
    namespace: str
    kubeconfig: str
    api_client: object = field(repr=False)
    values: dict = field(repr=False)  # what the hub pod mounts: Secret hub, key values.yaml
    keycloak_address: str = ""  # "<node ip>:<node port>" from ConfigMap keycloak-address
    keycloak_node_ip: str = ""
    hub_node_port: int = 0  # Service proxy-public
    ca_pem: str = field(default="", repr=False)
    admin_username: str = ""
    admin_password: str = field(default="", repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    s3_access_key: str = field(default="", repr=False)
    s3_secret_key: str = field(default="", repr=False)
    demo_passwords: dict = field(default_factory=dict, repr=False)

    @property
    def core(self):
        from kubernetes import client
        return client.CoreV1Api(self.api_client)

    @property
    def keycloak_host(self) -> str:
        return self.keycloak_address.rsplit(":", 1)[0]

    @property
    def keycloak_port(self) -> int:
        return int(self.keycloak_address.rsplit(":", 1)[1])

    @property
    def keycloak_url(self) -> str:
        return f"https://{self.keycloak_address}"

    @property
    def hub_url(self) -> str:
        return f"http://{self.keycloak_node_ip}:{self.hub_node_port}"

    def password(self, user: str) -> str:
        """A demo user's password: from Secret keycloak-demo-users, else the username (demo inventories)."""
        return self.demo_passwords.get(user) or user

    def configmap(self, name: str) -> dict:
        cm = self.core.read_namespaced_config_map(name, self.namespace)
        return dict(cm.data or {})

    def secret(self, name: str) -> dict:
        sec = self.core.read_namespaced_secret(name, self.namespace)
        return {k: base64.b64decode(v) for k, v in (sec.data or {}).items()}


REQUIRED = [  # (kind, name): what the e2e harness reads; missing = not converged
    ("ConfigMap", "keycloak-address"),
    ("ConfigMap", "datalab-ca"),
    ("Secret", "hub"),  # the chart's: the hub's configuration
    ("Secret", "keycloak-tls"),
    ("Secret", "keycloak-admin"),
    ("Secret", "jupyterhub-oauth-client"),
    ("Secret", "minio-s3-credentials"),
    ("Service", "proxy-public"),
]


def real_node_addresses() -> tuple[str, ...]:
    """The addresses the test bed's real node serves NodePorts on: its own on the bridge, and loopback."""
    from tools.testbed import cluster

    real = cluster.info().real_node if cluster.running() else None
    if not real:
        raise HarnessError("the test bed runs no real node: the local inventory's pods need one (docs/testbed.md)")
    return real["address"], real["nodeport_address"]


def api_client(kubeconfig: str):
    from kubernetes import config
    return config.new_client_from_config(config_file=kubeconfig)


def missing_objects(api, namespace: str) -> list[str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    core = client.CoreV1Api(api)
    readers = {"ConfigMap": core.read_namespaced_config_map, "Secret": core.read_namespaced_secret,
               "Service": core.read_namespaced_service}
    out = []
    for kind, name in REQUIRED:
        try:
            readers[kind](name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            out.append(f"{kind} {name}")
    return out


def converge(log_path: Path, extra: list[str] | None = None) -> None:
    """`ansible-playbook site.yml -i inventories/local`, log in the artifacts."""
    images = [main_venv_bin("python"), "-m", "tools.testbed", "platform-images"]
    argv = [main_venv_bin("ansible-playbook"), "site.yml", "-i", INVENTORY, *(extra or [])]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        for cmd in (images, argv):
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            rc = subprocess.run(cmd, cwd=REPO, env=ansible_env(), stdout=log, stderr=subprocess.STDOUT,
                                check=False).returncode
            if rc != 0:
                break
    if rc != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise HarnessError(f"converge failed (exit {rc}, {time.monotonic() - t0:.0f}s), log {log_path}:\n{tail}")


def read(kubeconfig: str, host: str, namespace: str) -> Platform:
    api = api_client(kubeconfig)
    p = Platform(host=host, namespace=namespace, kubeconfig=kubeconfig, api_client=api, values={})
    import yaml

    raw = p.secret("hub").get("values.yaml")
    if not raw:
        raise HarnessError("Secret hub (the chart's) has no key values.yaml")
    p.values = yaml.safe_load(raw)
    addr = p.configmap("keycloak-address")
    p.keycloak_address, p.keycloak_node_ip = addr.get("keycloakAddress", ""), addr.get("keycloakNodeIp", "")
    if not p.keycloak_address or not p.keycloak_node_ip:
        raise HarnessError(f"ConfigMap keycloak-address is incomplete: {addr}")
    allowed = real_node_addresses()
    if p.keycloak_node_ip not in allowed:
        raise HarnessError(f"keycloak-address names {p.keycloak_node_ip}, not the real node ({', '.join(allowed)}): "
                           "the e2e tests only ever contact the test bed's own bridge and loopback")
    svc = p.core.read_namespaced_service("proxy-public", namespace)
    ports = [pt.node_port for pt in svc.spec.ports or [] if pt.node_port]
    if not ports:
        raise HarnessError("Service proxy-public has no nodePort")
    p.hub_node_port = ports[0]
    p.ca_pem = p.configmap("datalab-ca").get("ca.crt", "")
    admin = p.secret("keycloak-admin")
    p.admin_username, p.admin_password = admin["username"].decode(), admin["password"].decode()
    oauth = p.secret("jupyterhub-oauth-client")
    p.client_id, p.client_secret = oauth["client-id"].decode(), oauth["client-secret"].decode()
    s3 = p.secret("minio-s3-credentials")
    p.s3_access_key, p.s3_secret_key = s3["accessKey"].decode(), s3["secretKey"].decode()
    try:
        p.demo_passwords = {k: v.decode() for k, v in p.secret("keycloak-demo-users").items()}
    except Exception:  # noqa: BLE001 - absent when the inventory uses username passwords
        p.demo_passwords = {}
    return p


def reimport_realm(platform, artifacts: Path) -> None:
    """Run the keycloak role's playbook for this host: the same tasks as converge reconcile the realm
    in the install's own Keycloak (through its NodePort, with the CA the role issued)."""
    log = artifacts / f"realm-import-{platform.host}.log"
    argv = [main_venv_bin("ansible-playbook"), "playbooks/keycloak.yml", "-i", INVENTORY, "--limit", platform.host]
    with open(log, "w") as fh:
        rc = subprocess.run(argv, cwd=REPO, env=ansible_env(), stdout=fh, stderr=subprocess.STDOUT,
                            check=False).returncode
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise HarnessError(f"realm import of {platform.host} failed (exit {rc}), log {log}:\n{tail}")


def delete_user_pods(platform, timeout: float = 60) -> None:
    """Remove the user servers KubeSpawner left (cleanup_servers is off, as in the chart)."""
    core = platform.core
    pods = core.list_namespaced_pod(platform.namespace, label_selector="component=singleuser-server").items
    for pod in pods:
        core.delete_namespaced_pod(pod.metadata.name, platform.namespace, grace_period_seconds=0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and core.list_namespaced_pod(
            platform.namespace, label_selector="component=singleuser-server").items:
        time.sleep(0.5)
