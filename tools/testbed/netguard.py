"""The real node's containment rules: nothing from the pod network or the service range leaves the machine.

Two chains of our own, each jumped to from the first rule of a built-in chain:

* `DATALAB-GUARD` in filter FORWARD: pods reach only the bridge; traffic for the pod subnet, the
  service range or KWOK's fake pod addresses never leaves through another interface.
* `DATALAB-GUARD-POST` in mangle POSTROUTING, for packets the host itself sends (filter OUTPUT sees
  the device of the route before kube-proxy's DNAT; POSTROUTING sees the final one): the same
  addresses go only to the bridge or to lo, and a connection kube-proxy redirected (DNAT) goes only
  to the bridge or lo.

`counters()` reads the packets each chain dropped, so a test can prove a drop happened.
"""
from __future__ import annotations

import subprocess

from .procs import TestbedError

FORWARD_CHAIN = "DATALAB-GUARD"
POST_CHAIN = "DATALAB-GUARD-POST"


def _rules(bridge: str, pod_subnet: str, service_cidr: str, fake_pod_cidr: str) -> dict[tuple[str, str, str], list[list[str]]]:
    """(table, chain, built-in chain) -> rules of our chain."""
    drop = ["-j", "DROP"]
    return {
        ("filter", FORWARD_CHAIN, "FORWARD"): [
            ["-i", bridge, "!", "-o", bridge, *drop],
            ["-s", pod_subnet, "!", "-o", bridge, *drop],
            ["-d", pod_subnet, "!", "-o", bridge, *drop],
            ["-d", service_cidr, *drop],
            ["-d", fake_pod_cidr, *drop],
        ],
        ("mangle", POST_CHAIN, "POSTROUTING"): [
            ["-o", "lo", "-j", "RETURN"],
            ["-d", pod_subnet, "!", "-o", bridge, *drop],
            ["-d", service_cidr, *drop],
            ["-d", fake_pod_cidr, *drop],
            ["-m", "conntrack", "--ctstate", "DNAT", "!", "-o", bridge, *drop],
            ["-s", pod_subnet, "-o", bridge, "-j", "RETURN"],
            ["-s", pod_subnet, *drop],
        ],
    }


def _ipt(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise TestbedError(f"`iptables {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def up(bridge: str, pod_subnet: str, service_cidr: str, fake_pod_cidr: str) -> None:
    """Create (or re-create) both chains and put their jumps first in FORWARD / mangle POSTROUTING."""
    down()
    for (table, chain, builtin), rules in _rules(bridge, pod_subnet, service_cidr, fake_pod_cidr).items():
        _ipt("-t", table, "-N", chain)
        for rule in rules:
            _ipt("-t", table, "-A", chain, *rule)
        _ipt("-t", table, "-I", builtin, "1", "-j", chain)


def down() -> None:
    """Remove both chains and their jumps (nothing happens when they are absent)."""
    for table, chain, builtin in (("filter", FORWARD_CHAIN, "FORWARD"), ("mangle", POST_CHAIN, "POSTROUTING")):
        while _ipt("-t", table, "-D", builtin, "-j", chain, check=False).returncode == 0:
            pass
        _ipt("-t", table, "-F", chain, check=False)
        _ipt("-t", table, "-X", chain, check=False)


def first() -> None:
    """Move our jumps back to the first place of FORWARD / POSTROUTING (kube-proxy prepends its own)."""
    for table, chain, builtin in (("filter", FORWARD_CHAIN, "FORWARD"), ("mangle", POST_CHAIN, "POSTROUTING")):
        listed = _ipt("-t", table, "-S", builtin).stdout.splitlines()
        if len(listed) > 1 and listed[1] != f"-A {builtin} -j {chain}":
            _ipt("-t", table, "-D", builtin, "-j", chain)
            _ipt("-t", table, "-I", builtin, "1", "-j", chain)


def present() -> bool:
    return all(_ipt("-t", t, "-C", b, "-j", c, check=False).returncode == 0
               for t, c, b in (("filter", FORWARD_CHAIN, "FORWARD"), ("mangle", POST_CHAIN, "POSTROUTING")))


def counters() -> dict[str, int]:
    """Packets dropped so far by each chain: {"forward": n, "post": n}."""
    out = {}
    for key, table, chain in (("forward", "filter", FORWARD_CHAIN), ("post", "mangle", POST_CHAIN)):
        proc = _ipt("-t", table, "-L", chain, "-n", "-v", "-x", check=False)
        total = 0
        for line in proc.stdout.splitlines()[2:]:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "DROP":
                total += int(fields[0])
        out[key] = total
    return out
