"""The collection's notebook, run by a demo user inside the notebook server the hub spawned for them.

On lab-a (the OAuth install of `inventories/local`, every pod on the test bed's real node):
- `site.yml --tags spark_image` builds the executor image with buildah (or finds it) and imports it
  into the real node's containerd;
- generated gas-sensor data goes to the install's MinIO (demo/gas-sensor/raw/), from the host through
  the MinIO pod's address on the test bed's bridge;
- the member logs in through Keycloak and spawns a server (1 CPU, 2 GiB); the shipped notebook, copied
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

import io
import json
import math
import time
from pathlib import Path

import pytest

from tests.sparkjob import HEADER, ROWS, keys, put_demo_data, run_notebook, s3_client, wait_for_home_notebook

USER = "mark.ketting"
EXECUTOR_IMAGE = "docker.io/datalab/spark-executor:3.5.2-python3.11"

pytestmark = pytest.mark.e2e


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
    client = s3_client(platform.core, platform.namespace, platform.s3_access_key, platform.s3_secret_key)
    return {"client": client, "csv": put_demo_data(client)}


def _read_parquet_dir(client, prefix: str):
    import pandas as pd
    import pyarrow.parquet as pq

    frames = [pq.read_table(io.BytesIO(client.get_object(Bucket="demo", Key=k)["Body"].read())).to_pandas()
              for k in keys(client, prefix) if k.endswith(".parquet")]
    assert frames, f"no Parquet part files under s3://demo/{prefix}"
    return pd.concat(frames, ignore_index=True)


def _run(platform, pod: str, executors: int, artifacts: Path, name: str) -> dict:
    return run_notebook(platform.core, platform.kubeconfig, platform.namespace, pod, executors, name, artifacts)


@pytest.fixture(scope="module")
def server(platform, realm_name, executor_image, s3, platform_ca_file):
    """The member's notebook server, spawned through the hub after logging in through Keycloak."""
    from e2e_harness.platform import delete_user_pods

    from tests.realplatform import spawn

    delete_user_pods(platform)
    install = {"hub": platform.hub_url, "keycloak": f"{platform.keycloak_url}/realms/{realm_name}/"}
    spawn(install, str(platform_ca_file), USER)
    pods = platform.core.list_namespaced_pod(platform.namespace, label_selector="component=singleuser-server").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    pod = pods[0].metadata.name
    wait_for_home_notebook(platform.kubeconfig, platform.namespace, pod)
    yield pod
    delete_user_pods(platform)


@pytest.fixture(scope="module")
def executed(platform, server, artifacts):
    return _run(platform, server, 2, artifacts, "process-s3.executed")


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
    parts = [k for k in keys(client, "gas-sensor/rewritten/") if k.endswith(".csv")]
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
    one = _run(platform, server, 1, artifacts, "process-s3.one-executor")
    assert len(one["executors"]) == 1, one["executors"]
    (artifacts / "notebook-times.json").write_text(json.dumps(
        {"two_executors_s": round(executed["seconds"], 1), "one_executor_s": round(one["seconds"], 1)}))


def test_the_executor_image_was_imported_by_the_role(platform, executor_image):
    from tools.testbed import cluster
    from tools.testbed.images import api as images_api

    labels = images_api.present(cluster.info().real_node["containerd_socket"]).get(executor_image)
    assert labels is not None, f"{executor_image} is not in the real node's containerd"
    assert len(labels.get("datalab.notebooks.build-hash", "")) == 64, labels
