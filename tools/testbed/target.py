"""Which cluster `make demo` installs into: the one place that decides it.

1. `$KUBECONFIG` set by the user -> that cluster, inventory `kind` unless DATALAB_INVENTORY says otherwise;
2. else `kind` and a working Docker -> a Kind cluster (inventory `kind`);
3. else the test bed of this repository (inventory `local`).
"""
from __future__ import annotations

import os
import shutil
import subprocess

from . import cluster


def docker_works() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def select(env: dict | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    if env.get("KUBECONFIG"):
        return {"DATALAB_TARGET": "kubeconfig", "KUBECONFIG": env["KUBECONFIG"],
                "DATALAB_INVENTORY": env.get("DATALAB_INVENTORY", "inventories/kind")}
    if shutil.which("kind") and docker_works():
        return {"DATALAB_TARGET": "kind", "DATALAB_INVENTORY": "inventories/kind"}
    return {"DATALAB_TARGET": "testbed", "KUBECONFIG": cluster.info().kubeconfig,
            "DATALAB_INVENTORY": "inventories/local"}
