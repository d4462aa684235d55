"""The shipped notebook's Spark job, run inside a user's notebook server pod on the real node.

Shared by tests/e2e/test_notebook.py and benchmarks/spark.py: the demo data (generated rows with the
gas-sensor header), commands in the notebook container through the API server's exec, a watch of the
executor pods (and of the memory of the notebook pod and its executors) while the job runs, and
`run_notebook`, which executes the notebook with `jupyter nbconvert --execute` in the pod.
"""
from __future__ import annotations

import base64
import json
import random
import threading
import time
from pathlib import Path

HEADER = ["timesecs", "coppm", "humidity", "temperature", "flowrate", "heatervoltage"] + [f"r{i}" for i in range(1, 15)]
ROWS = 2400
RAW_KEY = "gas-sensor/raw/20160930_203718.csv"
OUTPUT_PREFIXES = ("gas-sensor/rewritten/", "gas-sensor/parquet/", "gas-sensor/agg/")
HOME_NOTEBOOK = "/home/jovyan/examples/process-s3.ipynb"  # the server's postStart hook copies it there
EXECUTORS = "spark-role=executor"


def generate_csv(rows: int = ROWS, seed: int = 20160930) -> str:
    """Rows like the UCI recording: a sample every ~0.3 s over ~12 minutes, 3-decimal readings."""
    rnd = random.Random(seed)
    lines = [",".join(HEADER)]
    t = 0.0
    for _row in range(rows):
        t += rnd.uniform(0.25, 0.35)
        values = [round(t, 3), rnd.choice([0, 2.22, 4.44, 6.67, 8.89, 11.11, 13.33, 15.56, 17.78, 20]),
                  round(rnd.uniform(40, 60), 3), round(rnd.uniform(25.5, 26.8), 3), round(rnd.uniform(238, 242), 3),
                  round(rnd.uniform(0.2, 0.9), 3)] + [round(rnd.uniform(0.1, 80), 4) for _r in range(14)]
        lines.append(",".join(str(v) for v in values))
    return "\n".join(lines) + "\n"


def pod_memory(pod) -> int:
    """Bytes in use by one pod's containers on the real node: its memory cgroup (v1; v2 as a fallback)."""
    qos = pod.status.qos_class.lower()
    parts = ["kubepods"] + ([] if qos == "guaranteed" else [qos]) + [f"pod{pod.metadata.uid}"]
    for base, name in ((Path("/sys/fs/cgroup/memory"), "memory.usage_in_bytes"), (Path("/sys/fs/cgroup"), "memory.current")):
        path = base.joinpath(*parts, name)
        if path.exists():
            return int(path.read_text())
    raise RuntimeError(f"no memory cgroup for pod {pod.metadata.name} under /sys/fs/cgroup")


def exec_in(kubeconfig: str, namespace: str, pod: str, argv: list[str], timeout: float = 60) -> str:
    """A short command in the notebook container (the API server's exec, as `kubectl exec`)."""
    from kubernetes import client, config
    from kubernetes.stream import stream

    # stream() turns the client it is given into a websocket client: a client of its own for each exec
    core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    return stream(core.connect_get_namespaced_pod_exec, pod, namespace, container="notebook", command=argv,
                  stderr=True, stdin=False, stdout=True, tty=False, _request_timeout=timeout)


def read_file(kubeconfig: str, namespace: str, pod: str, path: str) -> str:
    # as base64: the client's exec would hand back a JSON file as a Python repr
    return base64.b64decode(exec_in(kubeconfig, namespace, pod, ["base64", "-w0", path])).decode()


class ExecutorWatch(threading.Thread):
    """Polls the API server for the executor pods in `namespace` that run, and the memory in use by
    the driver's pod and those executors together (its peak)."""

    def __init__(self, core, namespace: str, driver_pod: str, period: float = 0.5):
        super().__init__(daemon=True)
        self.core, self.namespace, self.driver_pod, self.period = core, namespace, driver_pod, period
        self.seen: dict[str, dict] = {}
        self.peak_memory = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            running = [p for p in self.core.list_namespaced_pod(self.namespace, label_selector=EXECUTORS).items
                       if p.status.phase == "Running"]
            for p in running:
                self.seen.setdefault(p.metadata.name, {
                    "node": p.spec.node_name, "image": p.spec.containers[0].image,
                    "app": p.metadata.labels.get("spark-app-selector", ""),
                    "service_account": p.spec.service_account_name,
                    "owner": [o.name for o in p.metadata.owner_references or []]})
            try:
                driver = self.core.read_namespaced_pod(self.driver_pod, self.namespace)
                self.peak_memory = max(self.peak_memory, sum(pod_memory(p) for p in [driver, *running]))
            except RuntimeError:  # an executor that just ended has no cgroup any more
                pass
            self.stop.wait(self.period)


def run_notebook(core, kubeconfig: str, namespace: str, pod: str, executors: int, name: str,
                 artifacts: Path | None = None, timeout: float = 900) -> dict:
    """Execute the shipped notebook in the user's server with `executors` executors; returns the executed
    notebook, the wall time, the executor pods the watch saw and the peak memory of driver + executors."""
    out = f"/tmp/{name}.ipynb"
    script = (f"rm -f /tmp/{name}.rc; (SPARK_EXECUTOR_INSTANCES={executors} jupyter nbconvert --to notebook "
              f"--execute --ExecutePreprocessor.timeout=600 --output {out} {HOME_NOTEBOOK} > /tmp/{name}.log 2>&1; "
              f"echo $? > /tmp/{name}.rc) > /dev/null 2>&1 &")
    watch = ExecutorWatch(core, namespace, pod)
    watch.start()
    t0 = time.monotonic()
    exec_in(kubeconfig, namespace, pod, ["sh", "-c", script])
    deadline = time.monotonic() + timeout
    rc = ""
    while time.monotonic() < deadline:
        rc = exec_in(kubeconfig, namespace, pod, ["sh", "-c", f"cat /tmp/{name}.rc 2>/dev/null || true"]).strip()
        if rc:
            break
        time.sleep(1)
    seconds = time.monotonic() - t0
    watch.stop.set()
    watch.join(10)
    log = exec_in(kubeconfig, namespace, pod, ["cat", f"/tmp/{name}.log"])
    if artifacts:
        (artifacts / f"{name}.log").write_text(log)
    if not rc:
        raise AssertionError(f"the notebook did not finish in {timeout:.0f}s; log:\n{log[-3000:]}")
    text = read_file(kubeconfig, namespace, pod, out) if rc == "0" else ""
    if text and artifacts:
        (artifacts / f"{name}.ipynb").write_text(text)
    if rc != "0":
        raise AssertionError(f"the notebook failed in the pod (exit {rc}):\n{log[-4000:]}")
    return {"nb": json.loads(text), "seconds": seconds, "executors": watch.seen, "peak_memory": watch.peak_memory}


def wait_for_home_notebook(kubeconfig: str, namespace: str, pod: str, timeout: float = 60) -> None:
    directory = str(Path(HOME_NOTEBOOK).parent)
    deadline = time.monotonic() + timeout
    while Path(HOME_NOTEBOOK).name not in exec_in(kubeconfig, namespace, pod, ["ls", directory]):
        if time.monotonic() > deadline:
            raise AssertionError("the postStart hook did not copy the notebook into the home directory")
        time.sleep(1)


def s3_client(core, namespace: str, access_key: str, secret_key: str):
    """boto3 against the install's MinIO pod (its address on the test bed's bridge)."""
    import boto3
    from botocore.config import Config

    pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=minio").items
    running = [p for p in pods if p.status.phase == "Running" and p.status.pod_ip]
    if not running:
        raise AssertionError(f"no running MinIO pod in {namespace}")
    return boto3.client("s3", endpoint_url=f"http://{running[0].status.pod_ip}:9000", aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, region_name="us-east-1",
                        config=Config(proxies={}, s3={"addressing_style": "path"}))


def keys(client, prefix: str) -> list[str]:
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="demo", Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return out


def put_demo_data(client) -> str:
    """The raw CSV at demo/gas-sensor/raw/, the notebook's earlier outputs removed; returns the CSV."""
    csv = generate_csv()
    client.put_object(Bucket="demo", Key=RAW_KEY, Body=csv.encode())
    for prefix in OUTPUT_PREFIXES:
        for key in keys(client, prefix):
            client.delete_object(Bucket="demo", Key=key)
    return csv
