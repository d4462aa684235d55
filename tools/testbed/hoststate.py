"""What the real node changes on the host, as a comparable snapshot.

`snapshot()` reads the host's network and kernel state that the real node (tools/testbed/node.py)
touches: links, addresses, routes, the iptables/ip6tables rules of the filter, nat and mangle
tables (without counters), the sysctls kubelet, kube-proxy and the node set, the mounts, the
top-level cgroups, the network namespaces under /run/netns and the CNI cache.  `compare(before,
after)` lists every difference in words.  A test (and tools/run_tests.py) takes a snapshot before
`cluster-up` and compares it with one after `cluster-down`: equal means the host is left as found.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

# Every sysctl the real node, kubelet or kube-proxy may change (node.py restores them on teardown).
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.conf.all.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    # kubelet's kernel tunables (protectKernelDefaults: false lets it set them)
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
# Whole groups read for the comparison (a change the list above misses still shows).
_SYSCTL_DIRS = ("net/ipv4/conf/all", "net/ipv4/conf/default", "net/ipv6/conf/all", "net/ipv6/conf/default",
                "net/bridge")
_TABLES = ("filter", "nat", "mangle")
_PATHS = ("/run/netns", "/var/run/netns", "/var/lib/cni", "/run/containerd", "/var/lib/containerd",
          "/etc/cni/net.d", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/etc/kubernetes",
          "/tmp/kwok-local-path-provisioner")


def _key(path: str) -> str:
    return path.replace("/", ".")


def read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name.replace(".", "/")).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    Path("/proc/sys", name.replace(".", "/")).write_text(value + "\n")


def sysctls() -> dict[str, str | None]:
    out = {name: read_sysctl(name) for name in SYSCTLS}
    for d in _SYSCTL_DIRS:
        base = Path("/proc/sys", d)
        if base.is_dir():
            for f in sorted(base.iterdir()):
                try:
                    out[_key(f"{d}/{f.name}")] = f.read_text().strip()
                except OSError:
                    continue  # write-only or refused entries
    return out


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def iptables_rules(cmd: str = "iptables") -> dict[str, list[str]]:
    """Table -> its chains and rules as `<cmd>-save` prints them, without counters and comments.
    A table that holds only the built-in chains, policy ACCEPT and no rule is the same as no table
    (iptables-nft creates such a table on first use and never deletes it) and is left out."""
    out = {}
    for table in _TABLES:
        lines = []
        for line in _run([f"{cmd}-save", "-t", table]).splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line.startswith(":"):
                line = re.sub(r"\s*\[\d+:\d+\]$", "", line)
            lines.append(line)
        body = [ln for ln in lines if ln not in (f"*{table}", "COMMIT")]
        if all(re.fullmatch(r":[A-Z]+ ACCEPT", ln) for ln in body):
            continue
        out[table] = lines
    return out


def _links() -> list[str]:
    """Name, kind and flags of every link (`ip -d -j link`), without counters or changing fields."""
    try:
        links = json.loads(_run(["ip", "-d", "-j", "link", "show"]) or "[]")
    except ValueError:
        return []
    return sorted(f"{ln.get('ifname')} {ln.get('linkinfo', {}).get('info_kind', '')} "
                  f"{','.join(sorted(ln.get('flags', [])))} master={ln.get('master', '')}" for ln in links)


def _addresses() -> list[str]:
    try:
        links = json.loads(_run(["ip", "-j", "addr", "show"]) or "[]")
    except ValueError:
        return []
    return sorted(f"{ln.get('ifname')} {a.get('local')}/{a.get('prefixlen')}"
                  for ln in links for a in ln.get("addr_info", []))


def _routes() -> list[str]:
    return sorted(ln.strip() for argv in (["ip", "-4", "route", "show", "table", "all"],
                                          ["ip", "-6", "route", "show", "table", "all"])
                  for ln in _run(argv).splitlines() if ln.strip())


def _mounts() -> list[str]:
    """Mount points (and types) where the node mounts: the test bed's state, /run, /var.  Other
    places (e.g. an image build's overlay under /tmp) are left out: they are not the node's."""
    from . import paths  # noqa: PLC0415
    roots = (str(paths.state_dir()), "/run", "/var")
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    points = [(ln.split()[4], ln.split(" - ")[1].split()[0]) for ln in lines]
    return sorted({f"{m} {t}" for m, t in points if any(m == r or m.startswith(r + "/") for r in roots)})


def _cgroups() -> list[str]:
    """Top-level cgroups of every hierarchy (kubelet creates `kubepods` in each)."""
    root = Path("/sys/fs/cgroup")
    out = []
    for h in sorted(root.iterdir()) if root.is_dir() else []:
        if h.is_dir() and not h.is_symlink():
            out += [f"{h.name}/{c.name}" for c in sorted(h.iterdir()) if c.is_dir()]
    return out


def _paths() -> dict[str, list[str]]:
    out = {}
    for p in _PATHS:
        d = Path(p)
        out[p] = sorted(str(f.relative_to(d)) for f in d.rglob("*")) if d.is_dir() else None
    return out


def snapshot() -> dict:
    """The host state the real node touches (see the module docstring).  Needs root for iptables."""
    return {
        "links": _links(),
        "addresses": _addresses(),
        "routes": _routes(),
        "iptables": iptables_rules("iptables"),
        "ip6tables": iptables_rules("ip6tables"),
        "sysctls": sysctls(),
        "mounts": _mounts(),
        "cgroups": _cgroups(),
        "paths": _paths(),
    }


def compare(before: dict, after: dict) -> list[str]:
    """Every difference between two snapshots, one line each (empty: the host is as it was)."""
    out = []
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        if b == a:
            continue
        if isinstance(b, dict) and isinstance(a, dict):
            for sub in sorted(set(b) | set(a)):
                if b.get(sub) != a.get(sub):
                    out += _diff(f"{key} {sub}", b.get(sub), a.get(sub))
        else:
            out += _diff(key, b, a)
    return out


def _diff(where: str, b, a) -> list[str]:
    if isinstance(b, list) and isinstance(a, list):
        return ([f"{where}: gone: {x}" for x in b if x not in a]
                + [f"{where}: new: {x}" for x in a if x not in b]) or [f"{where}: order changed"]
    return [f"{where}: was {b!r}, now {a!r}"]


def save(path: str | os.PathLike) -> dict:
    snap = snapshot()
    Path(path).write_text(json.dumps(snap, indent=1, sort_keys=True))
    return snap


if __name__ == "__main__":  # python -m tools.testbed.hoststate [save FILE | compare FILE]
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "save":
        save(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "compare":
        diffs = compare(json.loads(Path(sys.argv[2]).read_text()), snapshot())
        print("\n".join(diffs) or "host state unchanged")
        sys.exit(1 if diffs else 0)
    else:
        print("usage: python -m tools.testbed.hoststate save FILE | compare FILE", file=sys.stderr)
        sys.exit(2)
