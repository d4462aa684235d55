"""Start-up time of the test bed with a warm cache: `make cluster-up` from nothing, median of N.

Runs a separate test bed (own state dir, ports shifted by DATALAB_TESTBED_PORT_OFFSET)
so a cluster in use is not disturbed.  Writes benchmarks/results/testbed.json.

With the real node (tools/testbed/node.py), each round also starts the same separate test bed
with DATALAB_TESTBED_REAL_NODE=1 right after the control plane alone, so the ratio of the two
medians comes from one run under the same load; then it measures pod start to Ready for the small
probe image and the memory (RSS) of the node's processes.  Only one real node can run on a
machine: when another test bed's node runs, the node part is skipped and the reason recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def run(cmd: str, env: dict) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "tools.testbed", cmd], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def _image_rebuild_unchanged(name: str, runs: int) -> list[float]:
    """`python -m tools.testbed.images build <name>` again with nothing changed (a cache hit), whole process."""
    argv = [sys.executable, "-m", "tools.testbed.images", "build", name]
    subprocess.run(argv, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = []
    for dummy in range(runs):
        t0 = time.monotonic()
        subprocess.run(argv, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.monotonic() - t0)
    return out


def _median(values: list[float]) -> dict:
    return {"median": statistics.median(values), "all": values}


def _node_blocked() -> str | None:
    """Why the real node cannot run beside what already runs here (None: it can)."""
    from tools.testbed import node  # noqa: PLC0415
    if os.geteuid() != 0:
        return "not root"
    if subprocess.run(["ip", "link", "show", node.BRIDGE], capture_output=True, check=False).returncode == 0:
        return f"another test bed's real node runs on this machine (bridge {node.BRIDGE} exists)"
    return None


def _pod_ready_seconds(env: dict, pods: int) -> list[float]:
    """Create `pods` pods of the probe image on the real node, one after another; seconds from create to Ready."""
    kubeconfig = Path(env["DATALAB_STATE"]) / "cluster" / "kubeconfig"
    from tools.testbed import node  # noqa: PLC0415
    out = []
    for i in range(pods):
        name = f"bench-{i}"
        manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                    "spec": {"nodeSelector": node.REAL_NODE_SELECTOR, "tolerations": [node.REAL_NODE_TOLERATION],
                             "terminationGracePeriodSeconds": 0,
                             "containers": [{"name": "main", "image": node.PROBE_IMAGE, "imagePullPolicy": "Never",
                                             "args": ["sleep"]}]}}
        t0 = time.monotonic()
        subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", "create", "-f", "-"], input=json.dumps(manifest),
                       text=True, check=True, capture_output=True)
        subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", "wait", "--for=condition=Ready", f"pod/{name}",
                        "--timeout=60s"], check=True, capture_output=True)
        out.append(time.monotonic() - t0)
    return out


def _node_rss_mb(env: dict) -> dict[str, float]:
    """RSS of the node's recorded processes, its containerd shims and the pods' processes, in MB."""
    state = Path(env["DATALAB_STATE"]) / "cluster"
    out: dict[str, float] = {}

    def rss(pid: int) -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    for pidfile in (state / "node" / "pids").glob("*.pid"):
        out[pidfile.stem] = rss(int(pidfile.read_text().split()[0]))
    sock = str(state / "node" / "containerd" / "containerd.sock")
    shims, pods = 0.0, 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            cgroup = (proc / "cgroup").read_text()
            if "containerd-shim" in cmdline and sock in cmdline:
                shims += rss(int(proc.name))
            elif "/kubepods" in cgroup:
                pods += rss(int(proc.name))
        except OSError:
            continue
    out["containerd-shims"] = shims
    out["pod processes"] = pods
    out["total"] = sum(out.values())
    return {k: round(v, 1) for k, v in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pods", type=int, default=3, help="pods per round for start-to-Ready (real node)")
    args = ap.parse_args()
    blocked = _node_blocked()
    with tempfile.TemporaryDirectory(prefix="datalab-bench-state-", ignore_cleanup_errors=True) as state:
        base = {**os.environ, "DATALAB_STATE": state, "DATALAB_TESTBED_PORT_OFFSET": "1000"}
        plain = {**base, "DATALAB_TESTBED_REAL_NODE": "0"}
        with_node = {**base, "DATALAB_TESTBED_REAL_NODE": "1"}
        ups, noops, downs, node_ups, node_downs, ready, memory = [], [], [], [], [], [], {}
        try:
            for dummy in range(args.runs):
                ups.append(run("cluster-up", plain))
                noops.append(run("cluster-up", plain))
                downs.append(run("cluster-down", plain))
                blocked = blocked or _node_blocked()
                if blocked:
                    continue
                node_ups.append(run("cluster-up", with_node))
                ready += _pod_ready_seconds(with_node, args.pods)
                memory = _node_rss_mb(with_node)
                node_downs.append(run("cluster-down", with_node))
        finally:  # never leave a test bed (and its mounts under the temporary directory) behind
            subprocess.run([sys.executable, "-m", "tools.testbed", "cluster-down"], cwd=REPO, env=with_node,
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = {
        "benchmark": "testbed-startup", "runs": args.runs,
        "cluster_up_warm_s": _median(ups),
        "cluster_up_noop_s": _median(noops),
        "cluster_down_s": _median(downs),
        "image_rebuild_unchanged_s": {"debian-python": _median(_image_rebuild_unchanged("debian-python", args.runs)),
                                      "pyspark-notebook": _median(_image_rebuild_unchanged("pyspark-notebook",
                                                                                           args.runs))},
        "machine": {"nproc": os.cpu_count(), "loadavg_at_end": os.getloadavg()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if blocked:
        result["real_node"] = {"skipped": blocked}
    else:
        result["real_node"] = {
            "cluster_up_warm_s": _median(node_ups),
            "ratio_to_control_plane_alone": round(statistics.median(node_ups) / statistics.median(ups), 2),
            "cluster_down_s": _median(node_downs),
            "pod_start_to_ready_s": _median(ready),
            "rss_mb_last_round": memory,
        }
    out = REPO / "benchmarks" / "results" / "testbed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
