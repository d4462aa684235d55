"""The test-bed cluster: real etcd, kube-apiserver, controller-manager and scheduler,
with KWOK simulating nodes and the pod lifecycle.  Everything binds to 127.0.0.1.

`ensure_up()` is idempotent: a running, healthy cluster is reused as it is; a
half-dead one (a component exited) is torn down and started fresh.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import build, node, paths, pki, versions
from .procs import Procs, TestbedError, check_port_free, tail, teardown_shield, wait_for

HOST = "127.0.0.1"
# DATALAB_TESTBED_PORT_OFFSET shifts every port, so a second test bed (another
# DATALAB_STATE) can run beside the first, e.g. for the start-up benchmark.
_OFF = int(os.environ.get("DATALAB_TESTBED_PORT_OFFSET", "0"))
PORTS = {
    "etcd": (23791 + _OFF, 23801 + _OFF),  # client, peer
    "kube-apiserver": 16443 + _OFF,
    "kube-controller-manager": 10357 + _OFF,
    "kube-scheduler": 10359 + _OFF,
}
# Start order; stopped in reverse.
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.0.0.0/24"
NODE_COUNT = int(os.environ.get("DATALAB_TESTBED_NODES", "3"))
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
KWOK_VOLUME_ROOT = "/tmp/kwok-local-path-provisioner"


def node_addresses(i: int) -> dict[str, str]:
    """Node i (1-based): InternalIP 127.0.0.(i+1), ExternalIP 127.0.1.(i+1)."""
    return {"name": f"testbed-node-{i}", "InternalIP": f"127.0.0.{i + 1}", "ExternalIP": f"127.0.1.{i + 1}"}


@dataclass
class ClusterInfo:
    kubeconfig: str
    server: str
    version: str
    state_dir: str
    helm: str
    nodes: list[dict] = field(default_factory=list)
    # The real node (tools/testbed/node.py: name, address, nodeport_address, containerd_socket, ...);
    # None when the test bed runs without one (DATALAB_TESTBED_REAL_NODE=0, or a port-offset test bed).
    real_node: dict | None = None

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def helm_plugins_dir(state: Path) -> Path:
    """HELM_PLUGINS of the test bed's Helm (`<state>/helm-plugins`): holds the helm-diff plugin."""
    return state / "helm-plugins"


_DIFF_PLUGIN_YAML = """\
# Written by tools/testbed/cluster.py: the helm-diff plugin, built from source ({module}@{version}).
name: diff
version: "{plain}"
usage: Preview helm upgrade changes as a diff
description: Preview helm upgrade changes as a diff
ignoreFlags: false
platformCommand:
  - command: $HELM_PLUGIN_DIR/bin/diff
"""


HELM_BINARIES = ("helm", "helm-diff")


def _helm_layout(state: Path, bins: dict[str, Path]) -> tuple[dict[Path, tuple[str, int]], dict[Path, Path]]:
    """What `<state>/bin/helm` and `<state>/helm-plugins/` should hold: files (text, mode) and symlinks."""
    plugins = helm_plugins_dir(state)
    wrapper = ("#!/bin/sh\n"
               "# Written by tools/testbed/cluster.py: the test bed's Helm with its plugins (helm-diff).\n"
               f"HELM_PLUGINS={shlex.quote(str(plugins))}\n"
               "export HELM_PLUGINS\n"
               f'exec {shlex.quote(str(bins["helm"]))} "$@"\n')
    plugin_yaml = _DIFF_PLUGIN_YAML.format(module="github.com/databus23/helm-diff/v3", version=versions.HELM_DIFF,
                                           plain=versions.HELM_DIFF.lstrip("v"))
    files = {state / "bin" / "helm": (wrapper, 0o755), plugins / "diff" / "plugin.yaml": (plugin_yaml, 0o644)}
    links = {plugins / "diff" / "bin" / "diff": bins["helm-diff"]}
    return files, links


def _file_is(path: Path, text: str, mode: int) -> bool:
    return (path.is_file() and not path.is_symlink() and (path.stat().st_mode & 0o777) == mode
            and path.read_text() == text)


def _helm_current(state: Path, bins: dict[str, Path]) -> bool:
    """True when the wrapper and plugin layout are already written for these (existing) binaries."""
    files, links = _helm_layout(state, bins)
    return (all(os.access(b, os.X_OK) for b in bins.values())
            and all(_file_is(p, text, mode) for p, (text, mode) in files.items())
            and all(p.is_symlink() and os.readlink(p) == str(t) for p, t in links.items()))


def _write_helm(state: Path, bins: dict[str, Path]) -> None:
    """`<state>/bin/helm`: a wrapper that runs the cached Helm with HELM_PLUGINS set to
    `<state>/helm-plugins`, which holds the helm-diff plugin (plugin.yaml + bin/diff, a symlink
    into the cache).  Every caller of `ClusterInfo.helm` (tests, the `local` inventory's
    `datalab_helm_binary`, kubernetes.core.helm) gets the plugin without any environment of its
    own.  Idempotent: unchanged files are left alone; each write replaces atomically (an old
    state directory's `bin/helm` symlink becomes the wrapper)."""
    files, links = _helm_layout(state, bins)
    for link, target in links.items():
        link.parent.mkdir(parents=True, exist_ok=True)
        if not (link.is_symlink() and os.readlink(link) == str(target)):
            tmp = link.with_name(f".{link.name}.new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            os.replace(tmp, link)
    for path, (text, mode) in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not _file_is(path, text, mode):
            tmp = path.with_name(f".{path.name}.new")
            tmp.write_text(text)
            tmp.chmod(mode)
            os.replace(tmp, path)


def _ensure_helm(state: Path) -> None:
    """Bring the Helm wrapper and plugins of a running test bed up to date (a test bed started
    before the plugin existed gets it).  Free when current: no binary is run then."""
    if not _helm_current(state, {n: build.BINARIES[n].path for n in HELM_BINARIES}):
        _write_helm(state, build.ensure_binaries(HELM_BINARIES))


def _state() -> Path:
    return paths.cluster_dir()


def _procs() -> Procs:
    return Procs(_state())


class Api:
    """Just enough of a Kubernetes REST client (admin client certificate) for set-up and health checks."""

    def __init__(self, state: Path):
        pkid = state / "pki"
        self.base = f"https://{HOST}:{PORTS['kube-apiserver']}"
        self.ctx = ssl.create_default_context(cafile=str(pkid / "ca.crt"))
        self.ctx.load_cert_chain(str(pkid / "admin.crt"), str(pkid / "admin.key"))

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def get(self, path: str):
        return self.request("GET", path)

    def create(self, path: str, body: dict) -> None:
        code, resp = self.request("POST", path, body)
        if code not in (200, 201, 409):
            raise TestbedError(f"creating {body.get('kind')} {body['metadata'].get('name')} failed: {code} {resp}")


# --- PKI and config files -------------------------------------------------------------

def _write_pki(state: Path) -> None:
    d = state / "pki"
    ca = pki.make_ca("datalab-testbed-ca")
    ca.write(d, "ca")
    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]
    pki.issue(ca, "kube-apiserver", dns=dns, ips=[HOST, "10.96.0.1"]).write(d, "apiserver")
    pki.issue(ca, "testbed-admin", org="system:masters", server=False, client=True).write(d, "admin")
    # The API server's client certificate towards kubelets (logs, exec, port-forward): kubelet
    # authorises it by webhook like any other user.
    pki.issue(ca, "kube-apiserver-kubelet-client", org="system:masters", server=False,
              client=True).write(d, "apiserver-kubelet-client")
    pki.write_rsa_key(d / "sa.key")


def _kubeconfig(state: Path) -> dict:
    d = state / "pki"
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "datalab-testbed",
        "clusters": [{"name": "datalab-testbed", "cluster": {
            "server": f"https://{HOST}:{PORTS['kube-apiserver']}", "certificate-authority": str(d / "ca.crt")}}],
        "users": [{"name": "testbed-admin", "user": {
            "client-certificate": str(d / "admin.crt"), "client-key": str(d / "admin.key")}}],
        "contexts": [{"name": "datalab-testbed", "context": {"cluster": "datalab-testbed", "user": "testbed-admin"}}],
    }


def _kwok_config(state: Path) -> Path:
    """KWOK's stage definitions, taken at set-up time from its module in the Go module cache."""
    stages = build.kwok_stage_dir()
    wanted = ["node/fast", "node/heartbeat-with-lease", "pod/fast", "volume/fast"]
    docs = []
    for sub in wanted:
        for f in sorted((stages / sub).glob("*.yaml")):
            for doc in yaml.safe_load_all(f.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "Stage":
                    docs.append(doc)
    if not docs:
        raise TestbedError(f"no KWOK stages found under {stages}")
    # The volume stage provisions hostPath PVs under /tmp/kwok-local-path-provisioner; the real
    # node's kubelet creates them for real, so they go under the state directory (gone with it).
    text = yaml.safe_dump_all(docs).replace(KWOK_VOLUME_ROOT, str(state / "volumes"))
    path = state / "kwok.yaml"
    path.write_text(text)
    return path


def _storage_class(stages: Path) -> dict:
    """The StorageClass that KWOK's volume stages provision for (from the same module)."""
    sc = yaml.safe_load((stages / "volume" / "fast" / "storage-class.yaml").read_text())
    sc.setdefault("metadata", {}).setdefault("annotations", {})["storageclass.kubernetes.io/is-default-class"] = "true"
    return sc


# --- start / stop ------------------------------------------------------------------------

def _argv(bins: dict[str, Path], state: Path) -> dict[str, list[str]]:
    d = state / "pki"
    kc = str(state / "kubeconfig")
    etcd_client, etcd_peer = PORTS["etcd"]
    return {
        "etcd": [
            str(bins["etcd"]), "--name=testbed", f"--data-dir={state / 'etcd'}",
            f"--listen-client-urls=http://{HOST}:{etcd_client}", f"--advertise-client-urls=http://{HOST}:{etcd_client}",
            f"--listen-peer-urls=http://{HOST}:{etcd_peer}", f"--initial-advertise-peer-urls=http://{HOST}:{etcd_peer}",
            f"--initial-cluster=testbed=http://{HOST}:{etcd_peer}", "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(bins["kube-apiserver"]), f"--etcd-servers=http://{HOST}:{etcd_client}",
            f"--bind-address={HOST}", f"--advertise-address={HOST}", f"--secure-port={PORTS['kube-apiserver']}",
            f"--tls-cert-file={d / 'apiserver.crt'}", f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d / 'sa.pub'}", f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=Node,RBAC",
            "--allow-privileged=true", "--endpoint-reconciler-type=none", "--profiling=false",
            "--enable-admission-plugins=NodeRestriction",
            # dial kubelets by address, never by node name (no name of the test bed reaches a resolver)
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={d / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={d / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={d / 'ca.crt'}",
        ],
        "kube-controller-manager": [
            str(bins["kube-controller-manager"]), f"--kubeconfig={kc}", "--leader-elect=false",
            f"--bind-address={HOST}", f"--secure-port={PORTS['kube-controller-manager']}",
            f"--service-account-private-key-file={d / 'sa.key'}", f"--root-ca-file={d / 'ca.crt'}",
            f"--cluster-signing-cert-file={d / 'ca.crt'}", f"--cluster-signing-key-file={d / 'ca.key'}",
            "--use-service-account-credentials=true", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allocate-node-cidrs=false", "--profiling=false", "--controllers=*,-nodeipam,-cloud-node-lifecycle",
        ],
        "kube-scheduler": [
            str(bins["kube-scheduler"]), f"--kubeconfig={kc}", "--leader-elect=false",
            f"--bind-address={HOST}", f"--secure-port={PORTS['kube-scheduler']}", "--profiling=false",
        ],
        "kwok": [
            str(bins["kwok"]), f"--kubeconfig={kc}", f"--config={state / 'kwok.yaml'}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION[0]}={KWOK_ANNOTATION[1]}",
            f"--cidr={POD_CIDR}", "--node-lease-duration-seconds=40",
        ],
    }


def _ports() -> list[tuple[str, int]]:
    out = []
    for comp, port in PORTS.items():
        for p in (port if isinstance(port, tuple) else (port,)):
            out.append((comp, p))
    return out


def _healthy(state: Path) -> bool:
    try:
        code, body = Api(state).get("/readyz")
        return code == 200
    except (OSError, ssl.SSLError, TestbedError):
        return False


def running() -> bool:
    """The control plane runs and answers (the real node is checked apart: `node_running`)."""
    state = _state()
    procs = _procs()
    status = procs.status()
    return bool(status) and all(status.get(c) for c in COMPONENTS) and _healthy(state)


def node_running() -> bool:
    """The real node's processes run and kubelet is healthy (False when the node is disabled)."""
    return node.enabled() and node.healthy(_state())


def node_kind(node_name: str) -> str:
    """"real" or "simulated": the kind of node a pod landed on (`pod.spec.nodeName`), from the
    node's label testbed.datalab.io/node-kind."""
    code, body = Api(_state()).get(f"/api/v1/nodes/{node_name}")
    if code != 200:
        raise TestbedError(f"no node {node_name!r} in the test bed ({code})")
    return body["metadata"].get("labels", {}).get(node.KIND_LABEL, "simulated")


def info() -> ClusterInfo:
    state = _state()
    return ClusterInfo(
        kubeconfig=str(state / "kubeconfig"), server=f"https://{HOST}:{PORTS['kube-apiserver']}",
        version=versions.KUBERNETES, state_dir=str(state), helm=str(state / "bin" / "helm"),
        nodes=[node_addresses(i) for i in range(1, NODE_COUNT + 1)],
        real_node=node.info(state) if node.enabled() else None)


def _node(i: int) -> dict:
    a = node_addresses(i)
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": a["name"], "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1],
                                                        "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"kubernetes.io/hostname": a["name"], "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "type": "kwok", node.KIND_LABEL: "simulated",
                                "topology.kubernetes.io/zone": f"zone-{i}"}},
        "spec": {},
        "status": {
            "addresses": [{"type": "InternalIP", "address": a["InternalIP"]},
                          {"type": "ExternalIP", "address": a["ExternalIP"]},
                          {"type": "Hostname", "address": a["name"]}],
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
        },
    }


def _bootstrap(state: Path) -> None:
    api = Api(state)
    for i in range(1, NODE_COUNT + 1):
        api.create("/api/v1/nodes", _node(i))
    api.create("/apis/storage.k8s.io/v1/storageclasses", _storage_class(build.kwok_stage_dir()))

    def nodes_ready():
        code, body = api.get("/api/v1/nodes")
        ready = [n for n in body.get("items", []) if any(
            c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))]
        return len(ready) >= NODE_COUNT

    def default_sa():
        return api.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200

    wait_for("the fake nodes to become Ready", nodes_ready, 60, on_fail=_check_alive)
    wait_for("the default ServiceAccount", default_sa, 60, on_fail=_check_alive)


def _check_alive() -> None:
    procs = _procs()
    for c in COMPONENTS:
        if c in procs.recorded():
            procs.ensure_alive(c)


class _Background:
    """A function run in a thread; `result()` re-raises its exception in the caller."""

    def __init__(self, fn, *args):
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True)
        self.thread.start()

    def _run(self, fn, *args) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc

    def wait(self) -> None:
        self.thread.join()

    def result(self) -> None:
        self.thread.join()
        if self.error:
            raise self.error


def _binaries() -> tuple[str, ...]:
    return tuple(build.BINARIES) if node.enabled() else build.CONTROL_PLANE_BINARIES


_LOCK = {"depth": 0, "file": None}


@contextlib.contextmanager
def _locked():
    """One cluster-up/-down at a time per state directory, across processes (several test sessions
    share one test bed; two of them restarting its node at once would each tear down the other's).
    Re-entrant within a process."""
    if _LOCK["depth"] == 0:
        path = paths.state_dir() / "cluster.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        _LOCK["file"] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held until the outermost exit
        fcntl.flock(_LOCK["file"], fcntl.LOCK_EX)
    _LOCK["depth"] += 1
    try:
        yield
    finally:
        _LOCK["depth"] -= 1
        if _LOCK["depth"] == 0:
            fcntl.flock(_LOCK["file"], fcntl.LOCK_UN)
            _LOCK["file"].close()
            _LOCK["file"] = None


def ensure_up() -> tuple[ClusterInfo, bool]:
    """Start the cluster unless a healthy one runs. Returns (info, started_by_this_call).
    A running control plane whose real node is missing or half-dead gets a fresh node."""
    with _locked():
        return _ensure_up()


def _ensure_up() -> tuple[ClusterInfo, bool]:
    if running() and node.enabled() and not (_state() / "pki" / "apiserver-kubelet-client.crt").exists():
        build.log("the running test bed predates the real node (its API server has no kubelet client "
                  "certificate); restarting it")
        down()
    if running():
        state = _state()
        _ensure_helm(state)
        if node.enabled() and not node.healthy(state):
            build.log("the real node is missing or half-dead; starting it afresh")
            node.down(state)
            bins = build.ensure_binaries(_binaries())
            t0 = time.monotonic()
            node.up(state, bins, Api(state))
            build.log(f"real node up in {time.monotonic() - t0:.1f}s")
        return info(), False
    state = _state()
    if _procs().recorded() or node.node_dir(state).exists():
        build.log("found a test bed with dead components; removing it and starting fresh")
        down()
    bins = build.ensure_binaries(_binaries())
    for comp, port in _ports():
        check_port_free(HOST, port, comp)
    if node.enabled():
        node.check_host(state)
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    _write_helm(state, bins)
    _write_pki(state)
    (state / "kubeconfig").write_text(yaml.safe_dump(_kubeconfig(state)))
    (state / "kubeconfig").chmod(0o600)
    _kwok_config(state)
    argv = _argv(bins, state)
    procs = _procs()
    t0 = time.monotonic()
    # The node's host set-up, containerd and images need no API server: done beside the control plane.
    prep = _Background(node.prepare, state, bins) if node.enabled() else None
    try:
        build.log("starting etcd")
        procs.start("etcd", argv["etcd"])
        wait_for("etcd", lambda: urllib.request.urlopen(
            f"http://{HOST}:{PORTS['etcd'][0]}/health", timeout=2).status == 200, 30,
            on_fail=lambda: procs.ensure_alive("etcd"))
        build.log("starting kube-apiserver")
        procs.start("kube-apiserver", argv["kube-apiserver"])
        wait_for("kube-apiserver /readyz", lambda: _healthy(state), 90,
                 on_fail=lambda: procs.ensure_alive("kube-apiserver"))
        for comp in ("kube-controller-manager", "kube-scheduler", "kwok"):
            build.log(f"starting {comp}")
            procs.start(comp, argv[comp])
        time.sleep(0.5)
        _check_alive()
        _bootstrap(state)
        if prep:
            prep.result()
            node.start(state, bins, Api(state))
    except BaseException:
        with teardown_shield():
            if prep:
                prep.wait()
            node.down(state)
            procs.stop_all(list(reversed(COMPONENTS)))
        raise
    build.log(f"cluster up in {time.monotonic() - t0:.1f}s; KUBECONFIG={state / 'kubeconfig'}")
    return info(), True


def down() -> None:
    with teardown_shield(), _locked():
        _down()


def _down() -> None:
    state = _state()
    node.down(state)
    _procs().stop_all(list(reversed(COMPONENTS)))
    if state.exists():
        shutil.rmtree(state)


def _describe(procs: Procs, names: list[str], prefix: str = "") -> dict[str, str]:
    rec = procs.recorded()
    out = {}
    for c in names:
        if c not in rec:
            out[prefix + c] = "not started"
        elif procs.alive(c):
            out[prefix + c] = f"running (pid {rec[c][0]})"
        else:
            out[prefix + c] = f"DIED (pid {rec[c][0]}); last log lines:\n{tail(procs.log(c), 8)}"
    return out


def status() -> dict[str, str]:
    """Each component: running / not started / DIED with its last log lines; the real node's as `node/<name>`."""
    out = _describe(_procs(), COMPONENTS)
    if node.enabled():
        out.update(_describe(node.procs(_state()), node.COMPONENTS, "node/"))
    return out
