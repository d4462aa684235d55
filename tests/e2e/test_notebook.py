"""The collection's notebook, executed as a user would run it, in local Spark mode against S3.

S3 is moto's server on 127.0.0.1 holding generated data with the gas-sensor header at
demo/gas-sensor/raw/; Spark is pyspark 3.5 with the S3A connector jars from Maven Central
as local files (SPARK_JARS, never spark.jars.packages).  The outputs under rewritten/,
parquet/ and agg/ are then read back independently (pyarrow) and the per-minute averages
are compared with the same computation in pandas.
"""
from __future__ import annotations

import io
import math
import random
import socket
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "roles" / "jupyterhub" / "files" / "notebooks" / "process-s3.ipynb"
HEADER = ["timesecs", "coppm", "humidity", "temperature", "flowrate", "heatervoltage"] + [f"r{i}" for i in range(1, 15)]
ROWS = 2400
RAW_KEY = "gas-sensor/raw/20160930_203718.csv"

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on loopback with bucket demo and the raw CSV."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"accessKey": "e2e-access", "secretKey": "e2e-secret-" + "".join(random.choices("abcdef0123456789", k=16))}
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=creds["accessKey"],
                          aws_secret_access_key=creds["secretKey"], region_name="us-east-1")
    client.create_bucket(Bucket="demo")
    csv = generate_csv()
    client.put_object(Bucket="demo", Key=RAW_KEY, Body=csv.encode())
    yield {"endpoint": endpoint, "client": client, "creds": creds, "csv": csv}
    server.stop()


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


@pytest.fixture(scope="module")
def executed(s3, e2e_tools, artifacts, tmp_path_factory):
    """The notebook run top to bottom with nbclient, configured only through its environment variables."""
    import os

    import nbformat
    from nbclient import NotebookClient

    assert NOTEBOOK.exists(), f"{NOTEBOOK} is missing: the jupyterhub role ships it"
    creds_dir = tmp_path_factory.mktemp("minio-s3-credentials")
    for key, value in s3["creds"].items():
        (creds_dir / key).write_text(value)
    env = {
        "SPARK_MASTER": "local[2]",
        "S3_ENDPOINT": s3["endpoint"] + "/",
        "S3_CREDENTIALS_PATH": str(creds_dir),
        "SPARK_JARS": ",".join(e2e_tools["jars"]),
        "SPARK_JARS_PACKAGES": "",
        "SPARK_DRIVER_HOST": "127.0.0.1",
        "PYSPARK_PYTHON": e2e_tools["runner_python"],
        "PYSPARK_DRIVER_PYTHON": e2e_tools["runner_python"],
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(tmp_path_factory.mktemp("spark-local")),
    }
    saved = {k: os.environ.get(k) for k in list(env) + ["KUBERNETES_SERVICE_HOST"]}
    os.environ.update(env)
    os.environ.pop("KUBERNETES_SERVICE_HOST", None)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    t0 = time.monotonic()
    try:
        NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(creds_dir)}}).execute()
    finally:
        nbformat.write(nb, artifacts / "process-s3.executed.ipynb")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"nb": nb, "seconds": time.monotonic() - t0}


def _outputs(nb) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", "") or "".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


def test_notebook_runs_and_reports_its_steps(executed):
    out = _outputs(executed["nb"])
    assert "PySpark 3.5" in out
    assert "Spark master   local[2]" in out
    assert "sum of squares 1..100 = 338350" in out
    assert f"{ROWS} rows read from s3a://demo/gas-sensor/raw/" in out
    assert f"{ROWS} rows read back from s3a://demo/gas-sensor/parquet/" in out


def test_rewritten_csv_has_every_row(executed, s3):
    import pandas as pd

    keys = [k for k in _keys(s3["client"], "gas-sensor/rewritten/") if k.endswith(".csv")]
    assert keys, "no CSV part files under s3://demo/gas-sensor/rewritten/"
    frames = [pd.read_csv(io.BytesIO(s3["client"].get_object(Bucket="demo", Key=k)["Body"].read())) for k in keys]
    df = pd.concat(frames, ignore_index=True)
    assert list(df.columns) == HEADER
    assert len(df) == ROWS


def test_parquet_has_every_row_and_column(executed, s3):
    df = _read_parquet_dir(s3["client"], "gas-sensor/parquet/")
    assert len(df) == ROWS
    assert set(HEADER) <= set(df.columns)


def test_per_minute_averages_equal_pandas(executed, s3):
    """agg/ holds, per minute floor(timesecs/60)+1, the mean humidity/temperature/flowrate rounded to 2."""
    import pandas as pd

    raw = pd.read_csv(io.StringIO(s3["csv"]))
    raw["minute"] = (raw["timesecs"] // 60).astype("int64") + 1
    expected = raw.groupby("minute")[["humidity", "temperature", "flowrate"]].mean()
    agg = _read_parquet_dir(s3["client"], "gas-sensor/agg/").set_index("minute").sort_index()
    assert list(agg.index) == list(expected.index), "the minutes in agg/ differ from pandas' groups"
    for col in ("humidity", "temperature", "flowrate"):
        got, want = agg[f"avg_{col}"], expected[col]
        # Spark rounds half-up on decimals, pandas would round half-even on floats: compare
        # the stored value with the exact mean instead; it must be its 2-decimal rounding.
        bad = [(m, got[m], want[m]) for m in expected.index if not math.isclose(got[m], round(want[m], 2), abs_tol=1e-9)
               and abs(got[m] - want[m]) > 0.005 + 1e-9]
        assert not bad, f"avg_{col} differs from pandas for minutes {bad[:5]}"
