"""The platform on the test bed's real node: converge, no-op rerun, spawn, memory at rest.

Per run (3 by default), in the test bed of this environment (started if none runs, stopped only
then; it needs the real node and ../shared/upstream-charts or DATALAB_UPSTREAM_CHARTS):
a new install in a namespace of its own (tests/realplatform.py: Keycloak, MinIO and the real
Z2JH 4.4.0 chart, every pod on the real node) is converged with `site.yml`, converged again
(the no-op rerun), measured at rest (the memory of every container of the install, from the pods'
memory cgroups), then a demo user logs in through the install's Keycloak and spawns a notebook
server (request to ready, through the hub's API); the namespace is deleted.  Images are built and
imported before the first run: the figures are with images cached.

Writes benchmarks/results/platform_real.json and the section "Platform on the real node" of
docs/benchmarks.md (medians; the ratio no-op / first converge is the median of each run's ratio).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import client, config  # noqa: E402

from benchmarks.report import runs_from_command_line, testbed_up, publish, replace_section, stamp  # noqa: E402
from tests.ansible_run import recap, run_playbook  # noqa: E402
from tests.realplatform import HOST, MEMBER, NOTEBOOK_IMAGE, ca_file, import_images, spawn, upstream_chart, \
    write_inventory  # noqa: E402
from tests.sparkjob import pod_memory  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "platform_real.json"
SECTION = "## Platform on the real node"


def say(msg: str) -> None:
    print(f"[bench-platform] {msg}", file=sys.stderr, flush=True)


def one_run(cluster, real, core, work: Path) -> dict:
    ns = f"dl-bench-{uuid.uuid4().hex[:6]}"
    install = write_inventory(work / f"{ns}.yml", cluster, real, core, ns)
    try:
        t0 = time.monotonic()
        rc, out = run_playbook(install["inventory"], "site.yml", timeout=1500)
        first = time.monotonic() - t0
        if rc != 0:
            raise SystemExit(f"first converge failed:\n{out[-4000:]}")
        t0 = time.monotonic()
        rc, out = run_playbook(install["inventory"], "site.yml", timeout=1500)
        noop = time.monotonic() - t0
        changed = recap(out)[HOST]["changed"]
        if rc != 0 or changed:
            raise SystemExit(f"no-op rerun failed or changed {changed}:\n{out[-4000:]}")
        time.sleep(20)  # at rest: the rollouts and the bucket Job are done
        pods = [p for p in core.list_namespaced_pod(ns).items if p.status.phase == "Running"]
        at_rest = {p.metadata.name: pod_memory(p) for p in pods}
        dummy, dummy_server, spawn_s = spawn(install, ca_file(core, ns, work), MEMBER)
        notebook = core.list_namespaced_pod(ns, label_selector="component=singleuser-server").items
        with_notebook = sum(at_rest.values()) + sum(pod_memory(p) for p in notebook)
        result = {"first_converge_s": round(first, 1), "noop_rerun_s": round(noop, 1),
                  "noop_ratio": round(noop / first, 3), "spawn_to_ready_s": round(spawn_s, 1),
                  "memory_at_rest_mib": round(sum(at_rest.values()) / 2**20),
                  "memory_with_one_notebook_mib": round(with_notebook / 2**20),
                  "pods_at_rest": {k: round(v / 2**20) for k, v in sorted(at_rest.items())}}
        say(json.dumps(result))
        return result
    finally:
        core.delete_namespace(ns, grace_period_seconds=0)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and any(n.metadata.name == ns for n in core.list_namespace().items):
            time.sleep(1)


def write_doc(report: dict) -> None:
    runs = report["runs"]
    med = report["median"]
    lines = [
        SECTION, "",
        f"Measured {report['when']} on {report['cores']} cores by `python benchmarks/platform_real.py` "
        f"(raw data in `benchmarks/results/platform_real.json`): {len(runs)} runs, each a new install of "
        "Keycloak, MinIO and the real Z2JH 4.4.0 chart on the test bed's real node (tests/realplatform.py), "
        "images built and imported beforehand; medians, and the ratio is the median of each run's ratio. "
        f"Load average at the start: {report['load_start']}, at the end: {report['load_end']}.", "",
        "| | median | all runs |", "|---|---|---|",
        f"| first converge | {med['first_converge_s']} s | {', '.join(str(r['first_converge_s']) for r in runs)} |",
        f"| no-op rerun (changed=0) | {med['noop_rerun_s']} s | {', '.join(str(r['noop_rerun_s']) for r in runs)} |",
        f"| no-op / first converge | {med['noop_ratio']} | {', '.join(str(r['noop_ratio']) for r in runs)} |",
        f"| spawn request to ready (1 CPU, 2 GiB) | {med['spawn_to_ready_s']} s | "
        f"{', '.join(str(r['spawn_to_ready_s']) for r in runs)} |",
        f"| memory of the install at rest | {med['memory_at_rest_mib']} MiB | "
        f"{', '.join(str(r['memory_at_rest_mib']) for r in runs)} |",
        f"| the same with one idle notebook server | {med['memory_with_one_notebook_mib']} MiB | "
        f"{', '.join(str(r['memory_with_one_notebook_mib']) for r in runs)} |",
        "",
        "Memory per pod at rest in the median run (MiB, the pods' memory cgroups, page cache included): "
        + ", ".join(f"{k.rsplit('-', 2)[0] if k.count('-') >= 2 else k} {v}"
                    for k, v in runs[report['median_run']]["pods_at_rest"].items()) + ".",
        "",
    ]
    replace_section(SECTION, lines)


def main() -> int:
    runs_wanted = runs_from_command_line(__doc__)
    if not upstream_chart().exists():
        raise SystemExit(f"{upstream_chart()} is not on this machine (DATALAB_UPSTREAM_CHARTS)")
    with testbed_up() as info:
        if not info.real_node:
            raise SystemExit("the test bed has no real node (DATALAB_TESTBED_REAL_NODE=0?)")
        config.load_kube_config(info.kubeconfig)
        core = client.CoreV1Api()
        say("building and importing the images (cached after the first time)")
        import_images(info.real_node)
        import_images(info.real_node, [NOTEBOOK_IMAGE])
        load_start = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="bench-platform-") as work:
            runs = [one_run(info, info.real_node, core, Path(work)) for dummy in range(runs_wanted)]
        keys = [k for k in runs[0] if k != "pods_at_rest"]
        median = {k: statistics.median(r[k] for r in runs) for k in keys}
        median_run = sorted(range(len(runs)), key=lambda i: runs[i]["first_converge_s"])[len(runs) // 2]
        publish(RESULTS, {**stamp(load_start), "runs": runs, "median": median, "median_run": median_run}, write_doc,
                "bench-platform")
    return 0


if __name__ == "__main__":
    sys.exit(main())
