"""The images the `local` inventory runs, built by the image builder and imported into the real node.

`python -m tools.testbed platform-images` (called by `make demo`, Molecule's `local` scenario and
the e2e harness before they converge `site.yml -i inventories/local`): every image is built once per
content key (tools/testbed/images) and imported under the reference the roles and the Z2JH chart
name, so the pods pull nothing.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from . import cluster, maven, node, paths
from .images import api as images_api
from .images.buildah import Store
from .build import log
from .procs import TestbedError

# Keycloak, MinIO and its bucket Job, the chart's hub and proxy, and (in every user pod) network tools.
PLATFORM = ("keycloak", "minio", "mc", "k8s-hub", "chp", "k8s-network-tools")
# The notebook server of the local profiles: only needed to spawn.
NOTEBOOK = "pyspark-notebook"
LOCAL_INVENTORY = PLATFORM + (NOTEBOOK,)
# What the spark_image role builds FROM in the local inventory (recipes.py), loaded into the role's store.
EXECUTOR_BASE = "spark-base"


REPO = Path(__file__).resolve().parents[2]


def upstream_chart() -> Path:
    """The real Z2JH chart inventories/local installs (its jupyterhub.yml reads the same variable):
    DATALAB_UPSTREAM_CHARTS, else ../shared/upstream-charts beside the checkout."""
    base = os.environ.get("DATALAB_UPSTREAM_CHARTS") or REPO.parent / "shared" / "upstream-charts"
    return Path(base) / "jupyterhub-4.4.0.tgz"


def local_inventory_missing() -> str:
    """Why `site.yml -i inventories/local` cannot run here ("" when it can): it installs the real
    Z2JH chart onto the test bed's real node."""
    chart = upstream_chart()
    if not chart.is_file():
        return f"{chart} is not on this machine (DATALAB_UPSTREAM_CHARTS names the directory)"
    if not node.enabled():
        return "the test bed runs without its real node (DATALAB_TESTBED_REAL_NODE=0)"
    return ""


def real_node() -> dict:
    """The running test bed's real node, or a TestbedError that says how to get one."""
    if not cluster.running():
        raise TestbedError("no test-bed cluster is running: start one with `make cluster-up`")
    real = cluster.info().real_node
    if not real:
        raise TestbedError("the running test bed has no real node (docs/testbed.md): the local inventory's "
                           "pods need one")
    return real


def ensure_imported(names=LOCAL_INVENTORY, executor_base: bool = True) -> dict:
    """Build (or find cached) and import `names` into the real node's containerd, and (executor_base)
    give the spark_image role its base image; returns the node."""
    real = real_node()
    t0 = time.monotonic()
    built = [images_api.ensure(name) for name in names]
    images_api.import_into(real["containerd_socket"], built)
    if executor_base:
        ensure_executor_base()
    fresh = [b.name for b in built if b.built]
    log(f"platform images ready on {real['name']} in {time.monotonic() - t0:.0f}s"
        f" ({'built ' + ', '.join(fresh) if fresh else 'all cached'})")
    return real


def executor_store() -> Store:
    """The buildah store the spark_image role builds in with the local inventory: its storage.conf and
    registries.conf (no registry) are what inventories/local passes as CONTAINERS_STORAGE_CONF and
    CONTAINERS_REGISTRIES_CONF; nothing goes to /var/lib/containers' image store."""
    return Store(paths.cache_dir() / "spark-image" / "store")


def role_default_jars() -> list[dict]:
    """spark_image_jars of the role's defaults (the S3A connector)."""
    import yaml

    return yaml.safe_load((REPO / "roles" / "spark_image" / "defaults" / "main.yml").read_text())["spark_image_jars"]


def ensure_executor_base() -> Store:
    """The executor's base image (EXECUTOR_BASE) built or found, and present in executor_store() under
    its reference, so that the role's `FROM` needs no registry; the role's default jars in the local
    Maven repository, which inventories/local downloads them from."""
    for jar in role_default_jars():
        maven.ensure_jar(jar["group"], jar["artifact"], jar["version"], jar["sha1"])
    built = images_api.ensure(EXECUTOR_BASE)
    store = executor_store()
    store.prepare()
    (store.root / "tmp").mkdir(exist_ok=True)  # the role's TMPDIR (inventories/local)
    want = built.image_id.removeprefix("sha256:")
    for ref in built.refs:
        have = store.image_id(ref) or ""  # buildah lists short ids
        if not want or not have or not want.startswith(have):
            t0 = time.monotonic()
            store.load_archive(built.archive, ref)
            log(f"{ref} loaded into the spark_image role's store in {time.monotonic() - t0:.0f}s")
    return store
