"""One real node in the test bed: containerd + runc, the CNI bridge, kubelet, kube-proxy and CoreDNS.

The control plane (cluster.py) stays as it is; `up()` joins `realnode-1` to it, `down()` takes the
node away and leaves the host as it was found (see `hoststate.py` for the comparison).

Addresses (all on this machine):
  * bridge `dl-rn0`, 10.88.0.0/16, gateway 10.88.0.1 = the node's InternalIP (kubelet refuses a
    loopback node IP); pods get 10.88.0.10 and up, no default route, no masquerade to the outside;
  * NodePorts answer on 127.0.0.10 (added to lo) and on 10.88.0.1;
  * cluster DNS: CoreDNS (hostNetwork pod, bound to 10.88.0.1:53, only cluster.local), Service
    kube-system/kube-dns 10.96.0.10;
  * pods reach the API server as https://kubernetes.default.svc (10.96.0.1:443): an EndpointSlice
    of Service default/kubernetes points at 10.88.0.1:6443, where socat relays to the API server
    on 127.0.0.1 (which stays loopback-only).

On unless DATALAB_TESTBED_REAL_NODE=0; a port-offset test bed has one only with
DATALAB_TESTBED_REAL_NODE=1 and while no other node runs on the machine (`check_host`).

The node is tainted `testbed.datalab.io/real-node=true:NoSchedule` and labelled
`testbed.datalab.io/node-kind=real`: workloads meant to run for real carry `REAL_NODE_TOLERATION`
and `REAL_NODE_SELECTOR`; everything else lands on the KWOK nodes as before.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from . import build, hostpkgs, hoststate, images, netguard, paths, pki, versions
from .procs import Procs, TestbedError, start_time, wait_for

NAME = "realnode-1"
BRIDGE = "dl-rn0"
POD_SUBNET = "10.88.0.0/16"
NODE_IP = "10.88.0.1"
NODEPORT_ADDRESS = "127.0.0.10"
DNS_IP = "10.96.0.10"
RELAY_PORT = 6443
KUBELET_PORT = 10250
KUBELET_HEALTHZ = 10248
PROXY_HEALTHZ = 10256
PROXY_METRICS = 10249
CNI_NETWORK = "datalab-realnode"
TAINT_KEY = "testbed.datalab.io/real-node"
KIND_LABEL = "testbed.datalab.io/node-kind"
REAL_NODE_TOLERATION = {"key": TAINT_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
REAL_NODE_SELECTOR = {KIND_LABEL: "real"}
PAUSE_IMAGE = f"local.test/pause:{versions.PAUSE}"
COREDNS_IMAGE = f"local.test/coredns:{versions.COREDNS.lstrip('v')}"
PROBE_IMAGE = "local.test/probe:1"
# Started in this order, stopped in reverse.
COMPONENTS = ["containerd", "kubelet", "apiserver-relay", "kube-proxy", "volume-helper"]
HOST_PACKAGES = {"containerd": "containerd", "runc": "/usr/sbin/runc", "containernetworking-plugins": "/usr/lib/cni/bridge",
                 "iptables": "iptables", "conntrack": "conntrack", "socat": "socat", "iproute2": "ip"}
CNI_BIN = "/usr/lib/cni"
# containerd's CRI plugin keeps pod network namespaces and the CNI result cache here (not configurable in 1.6).
NETNS_DIR = Path("/var/run/netns")
CNI_CACHE = Path("/var/lib/cni")
# kubelet links every container log here (fixed path), pointing into its podLogsDir
CONTAINER_LOG_LINKS = Path("/var/log/containers")
# kubelet's device-plugin socket (fixed path, whatever --root-dir says); the shims' sockets (containerd 1.6)
DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")
SHIM_SOCKETS = Path("/run/containerd/s")
# Which state directory's node owns the host's bridge, chains and sysctls, with what they were
# before (under /run: gone after a reboot, like the bridge itself).
OWNER_FILE = Path("/run/datalab-testbed/real-node.json")
# Directories the node may create outside its state directory: removed again when empty and new.
_HOST_DIRS = (NETNS_DIR, CNI_CACHE / "results", CNI_CACHE, CONTAINER_LOG_LINKS, DEVICE_PLUGINS, DEVICE_PLUGINS.parent,
              SHIM_SOCKETS, SHIM_SOCKETS.parent)
_OFFSET = int(os.environ.get("DATALAB_TESTBED_PORT_OFFSET", "0"))


_DEFAULT = "1"


def enabled() -> bool:
    """The node runs unless DATALAB_TESTBED_REAL_NODE=0.  A second (port-offset) test bed has none
    unless DATALAB_TESTBED_REAL_NODE=1, and then only while no other real node runs on the machine
    (one bridge, one set of KUBE-* chains: two kube-proxies would fight over them)."""
    flag = os.environ.get("DATALAB_TESTBED_REAL_NODE", "")
    if _OFFSET:
        return flag == "1"
    return (flag or _DEFAULT) != "0"


def node_dir(state: Path) -> Path:
    return state / "node"


def procs(state: Path) -> Procs:
    return Procs(node_dir(state))


def socket_path(state: Path) -> Path:
    return node_dir(state) / "containerd" / "containerd.sock"


def info(state: Path) -> dict:
    """What a test needs to know about the node (ClusterInfo.real_node)."""
    return {"name": NAME, "address": NODE_IP, "nodeport_address": NODEPORT_ADDRESS,
            "containerd_socket": str(socket_path(state)), "pod_subnet": POD_SUBNET, "dns": DNS_IP,
            "bridge": BRIDGE, "taint": f"{TAINT_KEY}=true:NoSchedule", "label": f"{KIND_LABEL}=real",
            "toleration": dict(REAL_NODE_TOLERATION), "node_selector": dict(REAL_NODE_SELECTOR),
            "images": {"pause": PAUSE_IMAGE, "coredns": COREDNS_IMAGE, "probe": PROBE_IMAGE}}


# --- host commands ------------------------------------------------------------------------

def _sh(argv: list[str], what: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    if check and proc.returncode != 0:
        raise TestbedError(f"{what} failed: `{' '.join(argv)}`: {(proc.stderr or proc.stdout).strip()}")
    return proc


def _ctr(state: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _sh(["ctr", "--address", str(socket_path(state)), "--namespace", "k8s.io", *args],
               f"ctr {args[0] if args else ''}", check=check, timeout=120)


def _link_exists(name: str) -> bool:
    return _sh(["ip", "link", "show", name], "ip link", check=False).returncode == 0


def _bridge_ports(bridge: str) -> list[str]:
    """The interfaces attached to `bridge`: the host ends of our pods' veth pairs."""
    out = _sh(["ip", "-o", "link", "show", "master", bridge], "ip link", check=False).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def _lo_has_address() -> bool:
    return f"inet {NODEPORT_ADDRESS}/32" in _sh(["ip", "-4", "addr", "show", "dev", "lo"], "ip addr").stdout


# --- host record: what we change and what it was before ---------------------------------------

def _record_path(state: Path) -> Path:
    return node_dir(state) / "host-record.json"


def _owner() -> dict:
    try:
        return json.loads(OWNER_FILE.read_text())
    except (OSError, ValueError):
        return {}


def _owner_alive(owner: dict) -> bool:
    """Whether any process of the test bed named in the owner record still runs: its control plane,
    its node, or the cluster-up that wrote the record."""
    st = Path(owner.get("state", "/nonexistent"))
    if any(any(Procs(d).status().values()) for d in (st, node_dir(st))):
        return True
    pid, started = owner.get("pid"), owner.get("pid_started")
    return bool(pid) and start_time(pid) == started


def check_host(state: Path) -> None:
    """Refuse when another test bed's real node runs on this machine (checked before anything starts).
    A node whose test bed no longer runs (killed: a session or CI job stopped without cluster-down)
    has its host changes undone here, from the record it left, so the next start converges."""
    if _link_exists(BRIDGE) and not _record_path(state).exists():
        _take_over_bridge()
    longest = str(socket_path(state)) + ".ttrpc"
    if len(longest) > 104:
        raise TestbedError(f"the state directory's path is too long for the real node: containerd's socket "
                           f"{longest} has {len(longest)} characters, a unix socket path at most 104; choose a "
                           "shorter DATALAB_STATE")


def _take_over_bridge() -> None:
    owner = _owner()
    if not owner:
        raise TestbedError(f"the bridge {BRIDGE} exists already and no test bed on this machine says it is its "
                           f"own ({OWNER_FILE} is missing): stop what made it, or start this test bed without a "
                           "real node: DATALAB_TESTBED_REAL_NODE=0")
    if _owner_alive(owner):
        raise TestbedError(f"the bridge {BRIDGE} exists already: the real node of the test bed in {owner['state']} "
                           "runs on this machine (only one can); stop it (`make cluster-down` with "
                           f"DATALAB_STATE={Path(owner['state']).parent}), or start this test bed without one: "
                           "DATALAB_TESTBED_REAL_NODE=0")
    build.log(f"the real node of a test bed that no longer runs ({owner['state']}) left its host changes; "
              "undoing them first")
    down(Path(owner["state"]), owner.get("record"))
    if _link_exists(BRIDGE):
        raise TestbedError(f"could not remove the bridge {BRIDGE} left by the dead test bed in {owner['state']}")


def _record_host(state: Path) -> dict:
    """Write, once per node life, the values we are about to change (restored by `down`)."""
    path = _record_path(state)
    if path.exists():
        return json.loads(path.read_text())
    check_host(state)
    kube_chains = [ln for ln in _sh(["iptables-save"], "iptables-save", check=False).stdout.splitlines()
                   if ln.startswith(":KUBE-")]
    if kube_chains:
        raise TestbedError("this host already has KUBE-* iptables chains (another kube-proxy or kubelet runs or ran "
                           f"here: {', '.join(c.split()[0][1:] for c in kube_chains[:5])}); the test bed's real node "
                           "would fight over them. Remove them, or start without the node: DATALAB_TESTBED_REAL_NODE=0")
    record = {
        "sysctls": {name: hoststate.read_sysctl(name) for name in hoststate.SYSCTLS},
        "lo_address_existed": _lo_has_address(),
        "dirs_existed": {str(p): p.exists() for p in _HOST_DIRS},
        "cgroups_existed": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods")),
        "since": time.time(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    # Also outside the state directory, which a killed run's clean-up may delete: the next test bed
    # on this machine finds the owner, sees that it is dead and undoes its changes (check_host).
    OWNER_FILE.parent.mkdir(parents=True, exist_ok=True)
    OWNER_FILE.write_text(json.dumps({"state": str(state), "pid": os.getpid(),
                                      "pid_started": start_time(os.getpid()), "record": record}, indent=1))
    return record


# --- network ------------------------------------------------------------------------------

def _net_up(state: Path) -> None:
    if not _link_exists(BRIDGE):
        _sh(["ip", "link", "add", BRIDGE, "type", "bridge"], "creating the node's bridge")
    if f"inet {NODE_IP}/16" not in _sh(["ip", "-4", "addr", "show", "dev", BRIDGE], "ip addr").stdout:
        _sh(["ip", "addr", "add", f"{NODE_IP}/16", "dev", BRIDGE], "addressing the node's bridge")
    _sh(["ip", "link", "set", BRIDGE, "up"], "bringing the node's bridge up")
    if not _lo_has_address():
        _sh(["ip", "addr", "add", f"{NODEPORT_ADDRESS}/32", "dev", "lo"], "adding the NodePort address to lo")
    from .cluster import POD_CIDR, SERVICE_CIDR  # noqa: PLC0415 - cluster imports this module
    netguard.up(BRIDGE, POD_SUBNET, SERVICE_CIDR, POD_CIDR)
    # Pods reach Services (DNATed to other pods) through the host: forwarding on, bridged traffic through iptables.
    hoststate.write_sysctl("net.ipv4.ip_forward", "1")
    hoststate.write_sysctl("net.bridge.bridge-nf-call-iptables", "1")


def _pod_cgroup_dirs(top: Path) -> list[Path]:
    """Every directory below a `kubepods` cgroup, deepest first. os.walk skips a directory that vanishes
    while it walks (containerd and the kubelet remove the cgroups of exiting pods meanwhile); Path.glob
    would raise FileNotFoundError and stop the teardown half-way."""
    found = [Path(dirpath) / name for dirpath, dirnames, dummy in os.walk(top) for name in dirnames]
    return sorted(found, key=lambda d: len(d.parts), reverse=True)


def _kill_pod_processes() -> None:
    """Every process still in a pod cgroup (kubepods/...) of ours: the containers, never anything else."""
    for top in Path("/sys/fs/cgroup").glob("*/kubepods"):
        for procs_file in [top / "cgroup.procs"] + [d / "cgroup.procs" for d in _pod_cgroup_dirs(top)]:
            _kill_procs_of(procs_file)


def _kill_procs_of(procs_file: Path) -> None:
    try:
        pids = [int(p) for p in procs_file.read_text().split()]
    except OSError:  # gone meanwhile
        return
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def _remove_pod_cgroups(record: dict) -> None:
    existed = set(record.get("cgroups_existed", []))
    for top in Path("/sys/fs/cgroup").glob("*/kubepods"):
        if str(top) in existed:
            continue
        dirs = _pod_cgroup_dirs(top) + [top]
        for d in dirs:
            for dummy in range(20):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)  # a process of the cgroup is still exiting


def _unmount_under(roots: list[Path]) -> None:
    """Unmount everything mounted at or below the given directories, deepest first."""
    for dummy in range(3):
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if any(point == str(r) or point.startswith(str(r) + "/") for r in roots):
                points.append(point)
        if not points:
            return
        for point in sorted(set(points), key=len, reverse=True):
            if _sh(["umount", point], "umount", check=False).returncode != 0:
                _sh(["umount", "-l", point], "umount", check=False)


def _sandbox_netns(state: Path) -> list[Path]:
    """The network namespaces containerd made for our pod sandboxes (/var/run/netns/cni-...)."""
    out = []
    if not socket_path(state).exists():
        return out
    ids = _ctr(state, "containers", "list", "--quiet", check=False).stdout.split()
    for cid in ids:
        proc = _ctr(state, "containers", "info", cid, check=False)
        try:
            spec = json.loads(proc.stdout).get("Spec") or {}
        except ValueError:
            continue
        for ns in (spec.get("linux") or {}).get("namespaces") or []:
            path = ns.get("path") or ""
            if ns.get("type") == "network" and path.startswith(str(NETNS_DIR) + "/cni-"):
                out.append(Path(path))
    return out


def _remove_containers(state: Path) -> tuple[list[Path], list[str]]:
    """Kill and delete every container of ours through containerd (their shims then exit); return
    the pod network namespaces to remove afterwards and the container ids."""
    netns = _sandbox_netns(state)
    if not socket_path(state).exists():
        return netns, []
    ids = _ctr(state, "containers", "list", "--quiet", check=False).stdout.split()
    for line in _ctr(state, "tasks", "list", check=False).stdout.splitlines()[1:]:
        tid = line.split()[0]
        _ctr(state, "tasks", "kill", "--all", "--signal", "SIGKILL", tid, check=False)
    _kill_pod_processes()
    for line in _ctr(state, "tasks", "list", check=False).stdout.splitlines()[1:]:
        _ctr(state, "tasks", "delete", "--force", line.split()[0], check=False)
    for cid in _ctr(state, "containers", "list", "--quiet", check=False).stdout.split():
        _ctr(state, "containers", "delete", cid, check=False)
    return netns, ids


def _shims(state: Path) -> dict[int, str]:
    """pid -> container id of every containerd shim serving our containerd (its `-address` is our
    socket, a path no other containerd uses)."""
    sock = str(socket_path(state))
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and argv[0].endswith("containerd-shim-runc-v2") and "-address" in argv and "-id" in argv \
                and argv[argv.index("-address") + 1] == sock:
            out[int(proc.name)] = argv[argv.index("-id") + 1]
    return out


def _stop_shims(shims: dict[int, str]) -> None:
    """Shims that outlived their containers (e.g. containerd's metadata was lost)."""
    for pid in shims:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in shims):
        time.sleep(0.1)


def _stale_shim_sockets(since: float) -> list[Path]:
    """Shim sockets made since `since` on which nothing listens any more."""
    out = []
    for sock in SHIM_SOCKETS.iterdir() if SHIM_SOCKETS.is_dir() else []:
        try:
            if not sock.is_socket() or sock.stat().st_mtime < since:
                continue
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(1)
                conn.connect(str(sock))
        except (ConnectionRefusedError, FileNotFoundError):
            out.append(sock)
        except OSError:
            continue
    return out


def _our_netns(state: Path) -> list[Path]:
    """Pod network namespaces holding an address our IPAM handed out (its files under
    <node>/cni/ipam/<network>/<ip>): found without containerd, never another runtime's."""
    ipam = node_dir(state) / "cni" / "ipam" / CNI_NETWORK
    ours = {f.name for f in ipam.iterdir() if f.name.count(".") == 3} if ipam.is_dir() else set()
    # A dead test bed whose state directory is gone: any namespace on the pod subnet is its (the
    # subnet lives only on our bridge, and one real node runs per machine).
    prefix = None if ipam.is_dir() else "inet " + POD_SUBNET.split(".0.0/", maxsplit=1)[0] + "."
    out = []
    for ns in sorted(NETNS_DIR.glob("cni-*")) if (ours or prefix) and NETNS_DIR.is_dir() else []:
        listed = _sh(["ip", "-n", ns.name, "-4", "-o", "addr", "show"], "ip -n", check=False).stdout
        if any(f"inet {ip}/" in listed for ip in ours) or (prefix and prefix in listed):
            out.append(ns)
    return out


def _remove_kube_chains() -> None:
    """Every KUBE-* chain kubelet and kube-proxy made (filter, nat, mangle; IPv4 and IPv6), with the
    jumps to them from the built-in chains."""
    for cmd in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            saved = _sh([f"{cmd}-save", "-t", table], f"{cmd}-save", check=False).stdout.splitlines()
            chains = [ln.split()[0][1:] for ln in saved if ln.startswith(":KUBE-")]
            if not chains:
                continue
            for ln in saved:
                if ln.startswith("-A ") and not ln.split()[1].startswith("KUBE-") and " -j KUBE-" in ln:
                    _sh([cmd, "-w", "5", "-t", table, "-D", *shlex.split(ln)[1:]], f"{cmd} -D", check=False)
            for chain in chains:
                _sh([cmd, "-w", "5", "-t", table, "-F", chain], f"{cmd} -F", check=False)
            for chain in chains:
                _sh([cmd, "-w", "5", "-t", table, "-X", chain], f"{cmd} -X", check=False)


def _cni_result_ids() -> set[str]:
    """Sandbox ids in the CNI result cache under our network's name."""
    results = CNI_CACHE / "results"
    return {f.name[len(CNI_NETWORK) + 1:-len("-eth0")] for f in results.glob(f"{CNI_NETWORK}-*-eth0")} \
        if results.is_dir() else set()


def _cleanup_host_files(state: Path, record: dict, ids: list[str]) -> None:
    """Our CNI result cache entries and shim sockets, kubelet's links to our container logs and its
    device-plugin socket, and the directories of these that did not exist before."""
    results = CNI_CACHE / "results"
    for cid in ids:
        for f in (results / f"{CNI_NETWORK}-{cid}-eth0", results / f"cni-loopback-{cid}-lo"):
            f.unlink(missing_ok=True)
        # containerd 1.6 names a shim's socket after sha256(<containerd address>/<namespace>/<id>)
        digest = hashlib.sha256(os.path.join(str(socket_path(state)), "k8s.io", cid).encode()).hexdigest()
        (SHIM_SOCKETS / digest).unlink(missing_ok=True)
    logs = str(node_dir(state) / "pod-logs")
    for link in CONTAINER_LOG_LINKS.iterdir() if CONTAINER_LOG_LINKS.is_dir() else []:
        if link.is_symlink() and os.readlink(link).startswith(logs):
            link.unlink()
    existed = record.get("dirs_existed", {})
    if not existed.get(str(DEVICE_PLUGINS.parent), True):
        (DEVICE_PLUGINS / "kubelet.sock").unlink(missing_ok=True)
    for d in _HOST_DIRS:
        if not existed.get(str(d), True) and d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def down(state: Path, record: dict | None = None) -> None:
    """Stop the node and undo every host change it made; safe to call when it never ran.  `record`
    (from the owner file) stands in for the state directory's own when that is gone."""
    ndir = node_dir(state)
    record_file = _record_path(state)
    if record_file.exists():
        record = json.loads(record_file.read_text())
    if not ndir.exists() and not _shims(state) and not record:
        return
    record = record or {}
    pr = procs(state)
    if not record:
        # This state's node never changed the host (it stopped before writing its record, e.g.
        # because another test bed's node runs here): the bridge, chains, pods, network namespaces
        # and sysctls on this machine are not its own.  Only its own processes and mounts go.
        pr.stop_all()
        _stop_shims(_shims(state))
        _unmount_under([ndir])
        shutil.rmtree(ndir, ignore_errors=True)
        return
    for comp in ("kube-proxy", "apiserver-relay", "kubelet", "volume-helper"):
        pr.stop(comp)
    if not pr.alive("containerd") and (ndir / "containerd" / "root").is_dir():
        # a dead containerd knows our pods' network namespaces: start it again to ask it
        pr.start("containerd", _argv(state, {})["containerd"], env=_NO_PULL_ENV)
        try:
            wait_for("containerd", lambda: _ctr(state, "version", check=False).returncode == 0, 15,
                     on_fail=lambda: pr.ensure_alive("containerd"))
        except TestbedError:
            pass
    shims = _shims(state)
    netns, ids = _remove_containers(state) if pr.alive("containerd") else ([], [])
    _kill_pod_processes()
    pr.stop("containerd")
    _stop_shims(_shims(state))
    pr.stop_all()
    ids = sorted(set(ids) | set(shims.values()) | _cni_result_ids())
    for ns in sorted(set(netns) | set(_our_netns(state))):
        _sh(["umount", str(ns)], "umount netns", check=False)
        ns.unlink(missing_ok=True)
    if NETNS_DIR.is_dir() and not record.get("dirs_existed", {}).get(str(NETNS_DIR), True) \
            and not any(NETNS_DIR.iterdir()):
        NETNS_DIR.rmdir()
    _unmount_under([ndir])
    _remove_pod_cgroups(record)
    _cleanup_host_files(state, record, ids)
    if not (ndir / "containerd" / "root").is_dir() and record.get("since"):
        # a dead test bed whose state (containerd's metadata) is gone: its killed shims' sockets
        for sock in _stale_shim_sockets(record["since"]):
            sock.unlink(missing_ok=True)
    _remove_kube_chains()
    netguard.down()
    if _link_exists(BRIDGE):  # ours: check_host refused to start beside another one
        # A pod's network namespace outlives its processes while the kernel still holds sockets of it
        # (a killed server's connections): its veth pair would stay on the host, detached, until
        # then.  Deleting the host end removes the pair at once.
        for port in _bridge_ports(BRIDGE):
            _sh(["ip", "link", "delete", port], "deleting a pod's veth", check=False)
        _sh(["ip", "link", "delete", BRIDGE], "deleting the node's bridge", check=False)
    if not record.get("lo_address_existed") and _lo_has_address():
        _sh(["ip", "addr", "del", f"{NODEPORT_ADDRESS}/32", "dev", "lo"], "removing the lo address", check=False)
    for name, value in (record.get("sysctls") or {}).items():
        if value is not None and hoststate.read_sysctl(name) != value:
            hoststate.write_sysctl(name, value)
    shutil.rmtree(ndir, ignore_errors=True)
    if _owner().get("state") == str(state):
        OWNER_FILE.unlink(missing_ok=True)
        if OWNER_FILE.parent.is_dir() and not any(OWNER_FILE.parent.iterdir()):
            OWNER_FILE.parent.rmdir()


# --- images -----------------------------------------------------------------------------------

def build_static_image(ref: str, files: dict[str, Path], entrypoint: list[str]) -> Path:
    """A single-layer image of static files (tools/testbed/images), cached by content."""
    return images.build_static(ref, files, entrypoint)


def import_images(state: Path, archives: list[Path]) -> None:
    """Import docker archives into the node's containerd (namespace k8s.io, the CRI's) under their refs."""
    images.import_into(str(socket_path(state)), archives)


def probe_binary() -> Path:
    """The test bed's static probe program (tools/testbed/probe/main.go), built with the Go
    toolchain and cached by the hash of its source."""
    src = Path(__file__).parent / "probe" / "main.go"
    digest = hashlib.sha256(src.read_bytes() + build.go().encode()).hexdigest()[:16]
    out = paths.cache_dir() / "bin" / f"probe-{digest}" / "probe"
    if os.access(out, os.X_OK):
        return out
    with tempfile.TemporaryDirectory(prefix="datalab-build-probe-") as tmp:
        d = Path(tmp)
        (d / "go.mod").write_text("module example.invalid/datalab-testbed/probe\n\ngo 1.24.0\n")
        shutil.copy(src, d / "main.go")
        proc = subprocess.run([build.go(), "build", "-trimpath", "-ldflags", "-s -w", "-o", str(d / "probe"), "."],
                              cwd=d, capture_output=True, text=True, env={**os.environ, "CGO_ENABLED": "0"},
                              check=False)
        if proc.returncode != 0:
            raise TestbedError(f"building the probe program failed:\n{proc.stderr[-2000:]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(d / "probe", out)
    return out


def node_images(bins: dict[str, Path]) -> list[Path]:
    return [
        build_static_image(PAUSE_IMAGE, {"/pause": bins["pause"]}, ["/pause"]),
        build_static_image(COREDNS_IMAGE, {"/coredns": bins["coredns"]}, ["/coredns"]),
        build_static_image(PROBE_IMAGE, {"/probe": probe_binary()}, ["/probe"]),
    ]


# --- configuration files ------------------------------------------------------------------------

def _kubeconfig(state: Path, user: str, crt: Path, key: Path) -> dict:
    from .cluster import HOST, PORTS  # noqa: PLC0415
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{"name": "testbed", "cluster": {"server": f"https://{HOST}:{PORTS['kube-apiserver']}",
                                                     "certificate-authority": str(state / "pki" / "ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}],
        "contexts": [{"name": "default", "context": {"cluster": "testbed", "user": user}}],
    }


def _write_pki(state: Path) -> None:
    ca = pki.load(state / "pki" / "ca.crt", state / "pki" / "ca.key")
    d = node_dir(state) / "pki"
    clients = {"kubelet-client": (f"system:node:{NAME}", "system:nodes"),
               "kube-proxy": ("system:kube-proxy", None), "coredns": ("testbed:coredns", None)}
    for name, (cn, org) in clients.items():
        crt, key = pki.issue(ca, cn, org=org, server=False, client=True).write(d, name)
        kc = node_dir(state) / f"{name.split('-client', maxsplit=1)[0]}.kubeconfig"
        kc.write_text(yaml.safe_dump(_kubeconfig(state, cn, crt, key)))
        kc.chmod(0o600)
    pki.issue(ca, f"system:node:{NAME}", org="system:nodes", dns=[NAME], ips=[NODE_IP]).write(d, "kubelet-serving")


def _containerd_config(state: Path) -> str:
    c = node_dir(state) / "containerd"
    cni = node_dir(state) / "cni"
    return f"""\
# Written by tools/testbed/node.py: the real node's own containerd (root, state and socket under the test bed).
version = 2
root = "{c / 'root'}"
state = "{c / 'state'}"
oom_score = 0
[grpc]
  address = "{socket_path(state)}"
[ttrpc]
  address = ""
[metrics]
  address = ""
[debug]
  level = "info"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  # root lacks CAP_SYS_RESOURCE on these machines: a negative oom_score_adj makes runc fail
  restrict_oom_score_adj = true
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "{c / 'runc'}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni / 'net.d'}"
    max_conf_num = 1
"""


def _cni_config(state: Path) -> dict:
    from .cluster import SERVICE_CIDR  # noqa: PLC0415
    return {"cniVersion": "1.0.0", "name": CNI_NETWORK, "plugins": [{
        "type": "bridge", "bridge": BRIDGE, "isGateway": True, "isDefaultGateway": False, "ipMasq": False,
        "hairpinMode": True,
        "ipam": {"type": "host-local", "dataDir": str(node_dir(state) / "cni" / "ipam"),
                 "ranges": [[{"subnet": POD_SUBNET, "rangeStart": "10.88.0.10", "gateway": NODE_IP}]],
                 # no default route: only the pod subnet (on-link) and the service range via the node
                 "routes": [{"dst": SERVICE_CIDR}]}}]}


def _kubelet_config(state: Path) -> dict:
    n = node_dir(state)
    sock = f"unix://{socket_path(state)}"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False,
        "containerRuntimeEndpoint": sock, "imageServiceEndpoint": sock,
        "address": NODE_IP, "port": KUBELET_PORT, "healthzBindAddress": "127.0.0.1", "healthzPort": KUBELET_HEALTHZ,
        "readOnlyPort": 0,
        "tlsCertFile": str(n / "pki" / "kubelet-serving.crt"), "tlsPrivateKeyFile": str(n / "pki" / "kubelet-serving.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True, "cacheTTL": "30s"},
                           "x509": {"clientCAFile": str(state / "pki" / "ca.crt")}},
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "30s", "cacheUnauthorizedTTL": "5s"}},
        "clusterDNS": [DNS_IP], "clusterDomain": "cluster.local", "resolvConf": str(n / "resolv.conf"),
        "staticPodPath": str(n / "manifests"), "podLogsDir": str(n / "pod-logs"),
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 99, "imageGCLowThresholdPercent": 98,
        "serializeImagePulls": False, "maxPods": 30, "registerNode": True,
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        # root lacks CAP_SYS_RESOURCE here: the default -999 cannot be written
        "oomScoreAdj": 0,
        "nodeStatusReportFrequency": "1m", "nodeStatusUpdateFrequency": "10s",
        "syncFrequency": "10s", "fileCheckFrequency": "10s",
        "shutdownGracePeriod": "0s",
    }


def _proxy_config(state: Path) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(node_dir(state) / "kube-proxy.kubeconfig")},
        "hostnameOverride": NAME, "mode": "iptables", "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{PROXY_HEALTHZ}", "metricsBindAddress": f"127.0.0.1:{PROXY_METRICS}",
        "clusterCIDR": POD_SUBNET, "detectLocalMode": "ClusterCIDR",
        # NodePorts only on the node's loopback address and its bridge address (never 0.0.0.0 or eth0)
        "nodePortAddresses": [f"{NODEPORT_ADDRESS}/32", f"{NODE_IP}/32"],
        "iptables": {"localhostNodePorts": True, "masqueradeAll": False, "masqueradeBit": 14,
                     "syncPeriod": "30s", "minSyncPeriod": "0s"},
        # leave the host's conntrack sysctls alone
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "oomScoreAdj": 0,
    }


def _write_configs(state: Path) -> None:
    n = node_dir(state)
    for d in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "manifests"):
        (n / d).mkdir(parents=True, exist_ok=True)
    (n / "containerd" / "config.toml").write_text(_containerd_config(state))
    (n / "cni" / "net.d" / "10-realnode.conflist").write_text(json.dumps(_cni_config(state), indent=1))
    # hostNetwork pods with the default DNS policy ask CoreDNS too: never the machine's resolver
    (n / "resolv.conf").write_text(f"nameserver {NODE_IP}\n")
    (n / "kubelet-config.yaml").write_text(yaml.safe_dump(_kubelet_config(state)))
    (n / "kube-proxy-config.yaml").write_text(yaml.safe_dump(_proxy_config(state)))


def _argv(state: Path, bins: dict[str, Path]) -> dict[str, list[str]]:
    from .cluster import HOST, PORTS  # noqa: PLC0415
    n = node_dir(state)
    return {
        "containerd": ["containerd", "--config", str(n / "containerd" / "config.toml")],
        "kubelet": [str(bins.get("kubelet")), f"--config={n / 'kubelet-config.yaml'}",
                    f"--kubeconfig={n / 'kubelet.kubeconfig'}", f"--root-dir={n / 'kubelet'}",
                    f"--hostname-override={NAME}", f"--node-ip={NODE_IP}", f"--node-labels={KIND_LABEL}=real",
                    "--v=1"],
        "apiserver-relay": ["socat", f"TCP-LISTEN:{RELAY_PORT},bind={NODE_IP},fork,reuseaddr",
                            f"TCP:{HOST}:{PORTS['kube-apiserver']}"],
        "kube-proxy": [str(bins.get("kube-proxy")), f"--config={n / 'kube-proxy-config.yaml'}", "--v=1"],
        # directories for the hostPath PVs, writable by any pod user (tools/testbed/volumes.py)
        "volume-helper": [sys.executable, "-m", "tools.testbed.volumes", str(state)],
    }


# Any pull goes to a closed local port and fails at once: nothing ever asks a registry.
_NO_PULL_ENV = {k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
_NO_PULL_ENV.update({"NO_PROXY": "", "no_proxy": ""})


# --- API objects ------------------------------------------------------------------------------

_COREFILE = f"""\
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {NODE_IP}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig /kubeconfig/coredns.kubeconfig default
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
# no "." zone and no forward: nothing is ever asked of a resolver outside this machine
"""


def api_objects(state: Path) -> list[tuple[str, dict]]:
    """(collection path, object) for everything the node needs in the API."""
    n = node_dir(state)
    labels = {"k8s-app": "kube-dns"}
    return [
        ("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes-realnode", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes",
                                    "endpointslice.kubernetes.io/managed-by": "testbed.datalab.io"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": RELAY_PORT, "protocol": "TCP"}]}),
        ("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "testbed:coredns"},
            "rules": [{"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                      {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]}),
        ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "testbed:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "testbed:coredns"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "testbed:coredns"}]}),
        ("/api/v1/namespaces/kube-system/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": _COREFILE}}),
        ("/api/v1/namespaces/kube-system/services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {"clusterIP": DNS_IP, "selector": labels,
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}),
        ("/apis/apps/v1/namespaces/kube-system/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "strategy": {"type": "Recreate"},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "hostNetwork": True, "dnsPolicy": "Default", "priorityClassName": "system-cluster-critical",
                         "nodeSelector": dict(REAL_NODE_SELECTOR), "tolerations": [dict(REAL_NODE_TOLERATION)],
                         "automountServiceAccountToken": False, "enableServiceLinks": False,
                         "containers": [{
                             "name": "coredns", "image": COREDNS_IMAGE, "imagePullPolicy": "Never",
                             "args": ["-conf", "/etc/coredns/Corefile"],
                             "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "10m", "memory": "30Mi"}},
                             "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True},
                                              {"name": "kubeconfig", "mountPath": "/kubeconfig", "readOnly": True},
                                              {"name": "pki", "mountPath": str(n / "pki"), "readOnly": True},
                                              {"name": "ca", "mountPath": str(state / "pki" / "ca.crt"),
                                               "readOnly": True}],
                             "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"},
                                       {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"}]}],
                         "volumes": [
                             {"name": "config", "configMap": {"name": "coredns"}},
                             {"name": "kubeconfig", "hostPath": {"path": str(n / "dns-kubeconfig"), "type": "Directory"}},
                             {"name": "pki", "hostPath": {"path": str(n / "pki"), "type": "Directory"}},
                             {"name": "ca", "hostPath": {"path": str(state / "pki" / "ca.crt"), "type": "File"}}]}}}}),
    ]


# --- start / health ---------------------------------------------------------------------------

def _healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def healthy(state: Path) -> bool:
    pr = procs(state)
    return (all(pr.alive(c) for c in COMPONENTS) and _link_exists(BRIDGE) and netguard.present()
            and _healthz(KUBELET_HEALTHZ))


def prepare(state: Path, bins: dict[str, Path]) -> None:
    """Everything that needs no API server: host packages, network, certificates, configs, containerd
    with the node's images.  Runs while the control plane starts."""
    if os.geteuid() != 0:
        raise TestbedError("the real node needs root (network, mounts, cgroups); run as root or start the test bed "
                           "without it: DATALAB_TESTBED_REAL_NODE=0")
    hostpkgs.ensure(HOST_PACKAGES, "the test bed's real node")
    n = node_dir(state)
    n.mkdir(parents=True, exist_ok=True)
    _record_host(state)
    _net_up(state)
    _write_pki(state)
    (n / "dns-kubeconfig").mkdir(exist_ok=True)
    shutil.copy(n / "coredns.kubeconfig", n / "dns-kubeconfig" / "coredns.kubeconfig")
    _write_configs(state)
    pr = procs(state)
    argv = _argv(state, bins)
    build.log("starting the real node's containerd")
    pr.start("containerd", argv["containerd"], env=_NO_PULL_ENV)
    wait_for("containerd", lambda: _ctr(state, "version", check=False).returncode == 0, 30,
             on_fail=lambda: pr.ensure_alive("containerd"))
    import_images(state, node_images(bins))


def start(state: Path, bins: dict[str, Path], api) -> None:
    """kubelet, the API relay and kube-proxy, then the node's API objects (the control plane runs)."""
    pr = procs(state)
    argv = _argv(state, bins)
    for comp in ("volume-helper", "kubelet", "apiserver-relay", "kube-proxy"):
        build.log(f"starting the real node's {comp}")
        pr.start(comp, argv[comp], cwd=paths.REPO)
    for path, obj in api_objects(state):
        if api.get(f"{path}/{obj['metadata']['name']}")[0] != 200:  # kept from an earlier node: left as is
            api.create(path, obj)

    def ready():
        code, body = api.get(f"/api/v1/nodes/{NAME}")
        return code == 200 and any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in body.get("status", {}).get("conditions", []))

    def alive():
        for c in ("kubelet", "apiserver-relay", "kube-proxy", "containerd"):
            pr.ensure_alive(c)

    wait_for(f"node {NAME} to become Ready", ready, 90, on_fail=alive)
    # kube-proxy puts its jumps first in FORWARD; ours goes back in front once it has synced
    wait_for("kube-proxy's first sync", lambda: _healthz(PROXY_HEALTHZ), 30, on_fail=alive)
    netguard.first()


def up(state: Path, bins: dict[str, Path], api) -> None:
    try:
        prepare(state, bins)
        start(state, bins, api)
    except BaseException:
        down(state)
        raise


def coredns_ready(api) -> bool:
    code, body = api.get("/api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dkube-dns")
    return code == 200 and any(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
        for p in body.get("items", []))
