"""Spark on the real node: the executor image build, and the notebook's job with 1 and 2 executors.

In the running test bed with `inventories/local` converged (lab-a; converged here when it is not):
- the executor image, built by the spark_image role as that inventory runs it (buildah FROM the test
  bed's Spark base, the S3A jars, imported into the real node): per run a new tag (the base and the
  jars in ~/.m2 are there: "cold" is the role's own build, archive and import), then the same run again
  (unchanged: nothing rebuilt or imported); the test tags are removed afterwards;
- the shipped notebook, executed in a demo user's notebook server (1 CPU, 2 GiB) with 2 and with 1
  executor, alternating, 3 times each (tests/sparkjob.py): wall time from the start of
  `jupyter nbconvert --execute` to its exit status, and the peak of the memory in use by the
  notebook pod and its executor pods together (their memory cgroups, sampled every 0.5 s).

Writes benchmarks/results/spark.json and the section "## Spark on the real node" of docs/benchmarks.md.
"""
from __future__ import annotations

import os
import statistics
import subprocess
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
from tests.realplatform import MEMBER, spawn  # noqa: E402
from tests.sparkjob import put_demo_data, run_notebook, s3_client, wait_for_home_notebook  # noqa: E402
from tools.testbed import platform_images  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "spark.json"
SECTION = "## Spark on the real node"
INVENTORY = REPO / "inventories" / "local"
HOST, NAMESPACE, REALM = "lab-a", "datalab-a", "demo-a"


def say(msg: str) -> None:
    print(f"[bench-spark] {msg}", file=sys.stderr, flush=True)


def timed_play(*args: str) -> tuple[float, int]:
    t0 = time.monotonic()
    rc, out = run_playbook(INVENTORY, "playbooks/spark_image.yml", "--limit", HOST, *args)
    seconds = time.monotonic() - t0
    if rc != 0:
        raise SystemExit(f"spark_image.yml failed (rc {rc}):\n{out[-4000:]}")
    return seconds, recap(out)[HOST]["changed"]


def image_builds(runs: int, work: Path, real: dict) -> list[dict]:
    out = []
    store_env = platform_images.executor_store().env
    for i in range(runs):
        tag = f"bench-{uuid.uuid4().hex[:8]}"
        extra = ["-e", f"spark_image_tag={tag}", "-e", f"spark_image_build_dir={work / tag}"]
        try:
            cold, changed = timed_play(*extra)
            assert changed > 0, "the first run of a new tag changed nothing"
            unchanged, again = timed_play(*extra)
            assert again == 0, f"the rerun changed {again} tasks"
        finally:
            subprocess.run(["ctr", "--address", real["containerd_socket"], "--namespace", "k8s.io", "images", "rm",
                            f"docker.io/datalab/spark-executor:{tag}"], capture_output=True, check=False)
            subprocess.run(["buildah", "rmi", "--force", f"datalab/spark-executor:{tag}"], env=store_env,
                           capture_output=True, check=False)
        out.append({"cold_s": round(cold, 1), "unchanged_s": round(unchanged, 1)})
        say(f"image build {i + 1}: cold {cold:.1f} s, unchanged {unchanged:.1f} s")
    return out


def install(core) -> dict:
    """lab-a as the hub and Keycloak publish it, and its CA as a file."""
    addr = core.read_namespaced_config_map("keycloak-address", NAMESPACE).data
    hub_port = next(p.node_port for p in core.read_namespaced_service("proxy-public", NAMESPACE).spec.ports
                    if p.node_port)
    return {"hub": f"http://{addr['keycloakNodeIp']}:{hub_port}",
            "keycloak": f"https://{addr['keycloakAddress']}/realms/{REALM}/",
            "ca": core.read_namespaced_config_map("datalab-ca", NAMESPACE).data["ca.crt"]}


def delete_user_pods(core) -> None:
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector="component=singleuser-server").items:
        core.delete_namespaced_pod(pod.metadata.name, NAMESPACE, grace_period_seconds=0)
    deadline = time.monotonic() + 90
    while core.list_namespaced_pod(NAMESPACE, label_selector="component=singleuser-server").items:
        if time.monotonic() > deadline:
            raise SystemExit("the user servers did not go")
        time.sleep(0.5)


def jobs(runs: int, core, kubeconfig: str, work: Path) -> list[dict]:
    import base64

    secret = core.read_namespaced_secret("minio-s3-credentials", NAMESPACE).data
    s3 = s3_client(core, NAMESPACE, *(base64.b64decode(secret[k]).decode() for k in ("accessKey", "secretKey")))
    lab = install(core)
    ca = work / "ca.crt"
    ca.write_text(lab["ca"])
    delete_user_pods(core)
    spawn(lab, str(ca), MEMBER)
    (pod,) = [p.metadata.name for p in core.list_namespaced_pod(
        NAMESPACE, label_selector="component=singleuser-server").items]
    wait_for_home_notebook(kubeconfig, NAMESPACE, pod)
    out = []
    try:
        for i in range(runs):
            row = {}
            for executors in (2, 1):
                put_demo_data(s3)
                res = run_notebook(core, kubeconfig, NAMESPACE, pod, executors, f"bench-{i}-{executors}")
                if len(res["executors"]) != executors:
                    raise SystemExit(f"expected {executors} executor pods, saw {res['executors']}")
                row[f"{executors}_executors_s"] = round(res["seconds"], 1)
                row[f"{executors}_executors_peak_mib"] = round(res["peak_memory"] / 2**20)
                say(f"job {i + 1}, {executors} executor(s): {res['seconds']:.1f} s, "
                    f"peak {res['peak_memory'] / 2**20:.0f} MiB")
            row["ratio_2_over_1"] = round(row["2_executors_s"] / row["1_executors_s"], 3)
            out.append(row)
    finally:
        delete_user_pods(core)
    return out


def write_doc(report: dict) -> None:
    med, builds, runs = report["median"], report["image_builds"], report["jobs"]

    def all_of(rows, key):
        return ", ".join(str(r[key]) for r in rows)

    lines = [
        SECTION, "",
        f"Measured {report['when']} on {report['cores']} cores by `python benchmarks/spark.py` (raw data in "
        "`benchmarks/results/spark.json`), on `lab-a` of `inventories/local` (every pod on the test bed's real "
        f"node): {len(builds)} builds of the executor image by the spark_image role and {len(runs)} runs of the "
        "shipped notebook's job with each executor count, alternating; medians, and the ratio is the median of "
        f"each run's ratio. Load average at the start: {report['load_start']}, at the end: {report['load_end']}.",
        "",
        "| | median | all runs |", "|---|---|---|",
        f"| executor image, role run with a new tag (buildah build FROM the cached base with the S3A jars, "
        f"docker archive, import into the node) | {med['image_cold_s']} s | {all_of(builds, 'cold_s')} |",
        f"| the same run again, nothing changed (changed=0) | {med['image_unchanged_s']} s | "
        f"{all_of(builds, 'unchanged_s')} |",
        f"| notebook job, 2 executors (wall time of `jupyter nbconvert --execute` in the user's server) | "
        f"{med['2_executors_s']} s | {all_of(runs, '2_executors_s')} |",
        f"| notebook job, 1 executor | {med['1_executors_s']} s | {all_of(runs, '1_executors_s')} |",
        f"| 2 executors / 1 executor | {med['ratio_2_over_1']} | {all_of(runs, 'ratio_2_over_1')} |",
        f"| peak memory, notebook pod + 2 executor pods | {med['2_executors_peak_mib']} MiB | "
        f"{all_of(runs, '2_executors_peak_mib')} |",
        f"| peak memory, notebook pod + 1 executor pod | {med['1_executors_peak_mib']} MiB | "
        f"{all_of(runs, '1_executors_peak_mib')} |",
        "",
        "With 2 executors the job takes longer than with 1 (ratio above 1): its 2,400 rows leave nothing worth "
        "splitting, so its time is Spark's start-up and coordination (executor pods, JVMs, S3A), and two "
        "executor JVMs starting at once share a 2-core node with two installs and the 1-CPU notebook server "
        "(each executor requests a quarter of a CPU). The memory is what a user's job costs on top of the "
        "platform: each executor pod adds about 1.1 GiB (1g heap + overhead). The base image the role builds "
        "FROM (`spark-base`) is built by the test bed's image builder: see \"Image builds: spark-base\".",
        "",
    ]
    replace_section(SECTION, lines)


def main() -> int:
    runs_wanted = runs_from_command_line(__doc__)
    why = platform_images.local_inventory_missing()
    if why:
        raise SystemExit(f"the local inventory cannot run here: {why}")
    with testbed_up() as info:
        real = platform_images.ensure_imported()
        config.load_kube_config(info.kubeconfig)
        core = client.CoreV1Api()
        rc, out = run_playbook(INVENTORY, "site.yml", "--limit", HOST)
        if rc != 0:
            raise SystemExit(f"converging {HOST} failed:\n{out[-4000:]}")
        load_start = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="bench-spark-") as work:
            builds = image_builds(runs_wanted, Path(work), real)
            runs = jobs(runs_wanted, core, info.kubeconfig, Path(work))
        median = {"image_cold_s": statistics.median(b["cold_s"] for b in builds),
                  "image_unchanged_s": statistics.median(b["unchanged_s"] for b in builds)}
        for key in runs[0]:
            median[key] = statistics.median(r[key] for r in runs)
        publish(RESULTS, {**stamp(load_start), "image_builds": builds, "jobs": runs, "median": median}, write_doc,
                "bench-spark")
    return 0


if __name__ == "__main__":
    sys.exit(main())
