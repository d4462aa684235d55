"""Start-up time of the test bed with a warm cache: `make cluster-up` from nothing, median of N.

Runs a separate test bed (own state dir, ports shifted by DATALAB_TESTBED_PORT_OFFSET)
so a cluster in use is not disturbed.  Writes benchmarks/results/testbed.json.
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


def run(cmd: str, env: dict) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "tools.testbed", cmd], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="datalab-bench-state-") as state:
        env = {**os.environ, "DATALAB_STATE": state, "DATALAB_TESTBED_PORT_OFFSET": "1000"}
        ups, noops, downs = [], [], []
        for dummy in range(args.runs):
            ups.append(run("cluster-up", env))
            noops.append(run("cluster-up", env))
            downs.append(run("cluster-down", env))
    result = {
        "benchmark": "testbed-startup", "runs": args.runs,
        "cluster_up_warm_s": {"median": statistics.median(ups), "all": ups},
        "cluster_up_noop_s": {"median": statistics.median(noops), "all": noops},
        "cluster_down_s": {"median": statistics.median(downs), "all": downs},
        "machine": {"nproc": os.cpu_count()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = REPO / "benchmarks" / "results" / "testbed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
