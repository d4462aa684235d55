"""The collection's notebook, run by a demo user inside the notebook server the hub spawned for them.

On lab-a (the OAuth install of `inventories/local`, every pod on the test bed's real node):
- `site.yml --tags spark_image` builds the executor image with buildah (or finds it) and imports it
  into the real node's containerd;
- generated gas-sensor data goes to the install's MinIO (demo/gas-sensor/raw/), from the host through
  the MinIO pod's address on the test bed's bridge;
- the member logs in through Keycloak and spawns a server (1 CPU, 2 GB); the shipped notebook, copied
  into their home by the server's postStart hook, is executed there (`jupyter nbconvert --execute`
  started with `kubectl exec`): its kernel is the Spark driver, which starts executor pods through
  the API server as ServiceAccount spark, with the built image; they connect back through the per-user
  driver Service and read and write MinIO;
- meanwhile the API server is watched for the executor pods; afterwards the outputs are read back
  from MinIO and compared value by value with pandas on the host.
An executor-like pod that mounts a Secret outside the allowed list is refused by the admission policy
(a real create, as ServiceAccount spark).
"""
from __future__ import annotations

import base64
import io
import json
import math
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEADER = ["timesecs", "coppm", "humidity", "temperature", "flowrate", "heatervoltage"] + [f"r{i}" for i in range(1, 15)]
ROWS = 2400
RAW_KEY = "gas-sensor/raw/20160930_203718.csv"
USER = "mark.ketting"
EXECUTOR_IMAGE = "docker.io/datalab/spark-executor:3.5.2-python3.11"
HOME_NOTEBOOK = "/home/jovyan/examples/process-s3.ipynb"

pytestmark = pytest.mark.e2e


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


# --- the pieces ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def executor_image(platform, artifacts):
    """site.yml --tags spark_image for lab-a: the executor image built with buildah (or found) and
    imported into the real node; a second run changes nothing."""
    from e2e_harness import platform as pf

    log = artifacts / "spark-image.log"
    pf.converge(log, ["--tags", "spark_image", "--limit", platform.host])
    again = artifacts / "spark-image-rerun.log"
    pf.converge(again, ["--tags", "spark_image", "--limit", platform.host])
    recap = [line for line in again.read_text().splitlines() if line.startswith(platform.host + " ")]
    assert recap and "changed=0" in recap[-1], f"the rerun of the spark_image role changed something: {recap}"
    return EXECUTOR_IMAGE


@pytest.fixture(scope="module")
def s3(platform):
    """boto3 against the install's MinIO pod (its address on the test bed's bridge), the raw CSV uploaded."""
    import boto3
    from botocore.config import Config

    pods = platform.core.list_namespaced_pod(platform.namespace, label_selector="app.kubernetes.io/name=minio").items
    running = [p for p in pods if p.status.phase == "Running" and p.status.pod_ip]
    assert running, "no running MinIO pod"
    endpoint = f"http://{running[0].status.pod_ip}:9000"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=platform.s3_access_key,
                          aws_secret_access_key=platform.s3_secret_key, region_name="us-east-1",
                          config=Config(proxies={}, s3={"addressing_style": "path"}))
    csv = generate_csv()
    client.put_object(Bucket="demo", Key=RAW_KEY, Body=csv.encode())
    for prefix in ("gas-sensor/rewritten/", "gas-sensor/parquet/", "gas-sensor/agg/"):
        for key in _keys(client, prefix):
            client.delete_object(Bucket="demo", Key=key)
    return {"client": client, "csv": csv}


def _keys(client, prefix: str) -> list[str]:
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="demo", Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return out


def _read_parquet_dir(client, prefix: str):
    import pandas as pd
    import pyarrow.parquet as pq

    frames = [pq.read_table(io.BytesIO(client.get_object(Bucket="demo", Key=k)["Body"].read())).to_pandas()
              for k in _keys(client, prefix) if k.endswith(".parquet")]
    assert frames, f"no Parquet part files under s3://demo/{prefix}"
    return pd.concat(frames, ignore_index=True)


def _exec(platform, pod: str, argv: list[str], timeout: float = 60) -> str:
    """A short command in the notebook container (the API server's exec, as `kubectl exec`)."""
    from kubernetes import client
    from kubernetes.stream import stream

    from e2e_harness.platform import api_client

    # stream() turns the client it is given into a websocket client: a client of its own for each exec
    core = client.CoreV1Api(api_client(platform.kubeconfig))
    return stream(core.connect_get_namespaced_pod_exec, pod, platform.namespace, container="notebook",
                  command=argv, stderr=True, stdin=False, stdout=True, tty=False, _request_timeout=timeout)


class ExecutorWatch(threading.Thread):
    """Polls the API server for the executor pods of the user's Spark applications."""

    def __init__(self, platform):
        super().__init__(daemon=True)
        self.platform = platform
        self.seen: dict[str, dict] = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for p in self.platform.core.list_namespaced_pod(self.platform.namespace,
                                                            label_selector="spark-role=executor").items:
                if p.status.phase == "Running":
                    self.seen.setdefault(p.metadata.name, {
                        "node": p.spec.node_name, "image": p.spec.containers[0].image,
                        "app": p.metadata.labels.get("spark-app-selector", ""),
                        "service_account": p.spec.service_account_name,
                        "owner": [o.name for o in p.metadata.owner_references or []]})
            self.stop.wait(0.5)


def run_notebook(platform, pod: str, executors: int, artifacts: Path, name: str, timeout: float = 900) -> dict:
    """Execute the shipped notebook in the user's server with `executors` executors; returns the
    executed notebook, the wall time and what the watch saw."""
    out = f"/tmp/{name}.ipynb"
    script = (f"rm -f /tmp/{name}.rc; (SPARK_EXECUTOR_INSTANCES={executors} jupyter nbconvert --to notebook "
              f"--execute --ExecutePreprocessor.timeout=600 --output {out} {HOME_NOTEBOOK} > /tmp/{name}.log 2>&1; "
              f"echo $? > /tmp/{name}.rc) > /dev/null 2>&1 &")
    watch = ExecutorWatch(platform)
    watch.start()
    t0 = time.monotonic()
    _exec(platform, pod, ["sh", "-c", script])
    deadline = time.monotonic() + timeout
    rc = ""
    while time.monotonic() < deadline:
        rc = _exec(platform, pod, ["sh", "-c", f"cat /tmp/{name}.rc 2>/dev/null || true"]).strip()
        if rc:
            break
        time.sleep(2)
    seconds = time.monotonic() - t0
    watch.stop.set()
    watch.join(10)
    log = _exec(platform, pod, ["cat", f"/tmp/{name}.log"])
    (artifacts / f"{name}.log").write_text(log)
    assert rc, f"the notebook did not finish in {timeout:.0f}s; log:\n{log[-3000:]}"
    # as base64: the client's exec would hand back a JSON file as a Python repr
    text = base64.b64decode(_exec(platform, pod, ["base64", "-w0", out])).decode() if rc == "0" else ""
    if text:
        (artifacts / f"{name}.ipynb").write_text(text)
    assert rc == "0", f"the notebook failed in the pod (exit {rc}):\n{log[-4000:]}"
    return {"nb": json.loads(text), "seconds": seconds, "executors": watch.seen}


@pytest.fixture(scope="module")
def server(platform, realm_name, executor_image, s3):
    """The member's notebook server, spawned through the hub after logging in through Keycloak."""
    from e2e_harness.platform import delete_user_pods

    from tests.realplatform import spawn

    delete_user_pods(platform)
    ca = Path(platform.kubeconfig).parent / f"{platform.namespace}-e2e-ca.crt"
    ca.write_text(platform.ca_pem)
    install = {"hub": platform.hub_url, "keycloak": f"{platform.keycloak_url}/realms/{realm_name}/"}
    spawn(install, str(ca), USER)
    pods = platform.core.list_namespaced_pod(platform.namespace, label_selector="component=singleuser-server").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    pod = pods[0].metadata.name
    deadline = time.monotonic() + 60
    while "process-s3.ipynb" not in _exec(platform, pod, ["ls", str(Path(HOME_NOTEBOOK).parent)]):
        assert time.monotonic() < deadline, "the postStart hook did not copy the notebook into the home directory"
        time.sleep(1)
    yield pod
    delete_user_pods(platform)


@pytest.fixture(scope="module")
def executed(platform, server, artifacts):
    return run_notebook(platform, server, 2, artifacts, "process-s3.executed")


# --- the tests -----------------------------------------------------------------------------------------
def _outputs(nb) -> str:
    text = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text.append("".join(out.get("text", "")) or "".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


def test_the_notebook_runs_in_the_users_server_against_kubernetes(executed, platform):
    out = _outputs(executed["nb"])
    assert "Spark master   k8s://https://" in out, out[:2000]
    assert f"Namespace      {platform.namespace}" in out
    assert "sum of squares 1..100 = 338350, computed on the executors" in out
    assert f"{ROWS} rows read back from s3a://demo/gas-sensor/parquet/" in out
    errors = [o for c in executed["nb"]["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors


def test_executors_were_pods_on_the_real_node_with_the_built_image(executed, platform, server):
    seen = executed["executors"]
    assert len(seen) == 2, f"expected the 2 executors of the run, the API server showed {seen}"
    for name, pod in seen.items():
        node = platform.core.read_node(pod["node"])
        assert node.metadata.labels.get("testbed.datalab.io/node-kind") == "real", (name, pod)
        assert pod["image"].removeprefix("docker.io/") == EXECUTOR_IMAGE.removeprefix("docker.io/"), pod
        assert pod["service_account"] == "spark", pod
        assert pod["owner"] == [server], f"{name} is not owned by the driver's pod {server}: {pod}"
    assert len({p["app"] for p in seen.values()}) == 1


def test_executors_are_gone_after_the_job(executed, platform):
    deadline = time.monotonic() + 90
    while platform.core.list_namespaced_pod(platform.namespace, label_selector="spark-role=executor").items:
        assert time.monotonic() < deadline, "executor pods are still there 90 s after spark.stop()"
        time.sleep(1)


def test_rewritten_csv_and_parquet_have_every_row(executed, s3):
    import pandas as pd

    client = s3["client"]
    parts = [k for k in _keys(client, "gas-sensor/rewritten/") if k.endswith(".csv")]
    assert parts, "no CSV part files under rewritten/"
    frames = [pd.read_csv(io.BytesIO(client.get_object(Bucket="demo", Key=k)["Body"].read())) for k in parts]
    assert sum(len(f) for f in frames) == ROWS
    parquet = _read_parquet_dir(client, "gas-sensor/parquet/")
    assert len(parquet) == ROWS and list(parquet.columns) == HEADER


def test_per_minute_averages_equal_pandas(executed, s3):
    """The aggregates the executors wrote to MinIO equal what pandas computes on the host from the same CSV."""
    import pandas as pd

    raw = pd.read_csv(io.StringIO(s3["csv"]))
    raw["minute"] = (raw["timesecs"] // 60 + 1).astype("int64")
    expected = raw.groupby("minute").agg(avg_humidity=("humidity", "mean"), avg_temperature=("temperature", "mean"),
                                         avg_flowrate=("flowrate", "mean")).reset_index()
    got = _read_parquet_dir(s3["client"], "gas-sensor/agg/").sort_values("minute").reset_index(drop=True)
    assert list(got["minute"]) == list(expected["minute"])
    for col in ("avg_humidity", "avg_temperature", "avg_flowrate"):
        for minute, a, b in zip(got["minute"], got[col], expected[col]):
            assert math.isclose(a, round(b, 2), abs_tol=0.0051), (col, minute, a, b)


def test_admission_refuses_an_executor_pod_mounting_another_secret(platform, executor_image):
    """A real pod creation as ServiceAccount spark (impersonated): a Secret outside the allowed list."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from e2e_harness.platform import api_client

    api = api_client(platform.kubeconfig)
    api.set_default_header("Impersonate-User", f"system:serviceaccount:{platform.namespace}:spark")
    core = client.CoreV1Api(api)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "executor-probe-", "labels": {"spark-role": "probe"}},
           "spec": {"serviceAccountName": "spark", "restartPolicy": "Never",
                    "containers": [{"name": "executor", "image": executor_image, "args": ["true"]}],
                    "volumes": [{"name": "stolen", "secret": {"secretName": "keycloak-admin"}}]}}
    with pytest.raises(ApiException) as refused:
        created = core.create_namespaced_pod(platform.namespace, pod)
        core.delete_namespaced_pod(created.metadata.name, platform.namespace)  # only if the policy failed
    assert refused.value.status in (403, 422), refused.value
    assert "Secret keycloak-admin may not be used by pods of ServiceAccount spark" in refused.value.body, \
        refused.value.body


def test_one_and_two_executors(platform, server, executed, artifacts):
    """The job's wall time with 1 executor, after the 2-executor run above (docs/benchmarks.md has the medians)."""
    one = run_notebook(platform, server, 1, artifacts, "process-s3.one-executor")
    assert len(one["executors"]) == 1, one["executors"]
    (artifacts / "notebook-times.json").write_text(json.dumps(
        {"two_executors_s": round(executed["seconds"], 1), "one_executor_s": round(one["seconds"], 1)}))


def test_the_executor_image_was_imported_by_the_role(platform, executor_image):
    from tools.testbed import cluster

    real = cluster.info().real_node
    proc = subprocess.run(["ctr", "--address", real["containerd_socket"], "--namespace", "k8s.io", "images", "ls",
                           "--quiet", f"name=={executor_image}"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == executor_image, proc.stdout + proc.stderr
