"""`make demo`: pick a cluster, install the platform with site.yml, print where things are.

The cluster comes from tools/testbed/target.py: your $KUBECONFIG, else Kind (kind + a
working Docker), else this repository's test bed (started here, left running so you can
use it; `make cluster-down` stops it).  On the test bed every pod runs on its real node, from images
built on this machine and imported there (tools/testbed/platform_images.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.testbed import cluster, platform_images, target  # noqa: E402
from tools.testbed.procs import TestbedError  # noqa: E402


def main() -> int:
    choice = target.select()
    env = {**os.environ, **choice, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    if choice["DATALAB_TARGET"] == "kind":
        env.setdefault("KIND_CONTEXT", "kind-datalab")  # inventories/kind reads it
    kind = choice["DATALAB_TARGET"]
    try:
        if kind == "testbed":
            print("==> no KUBECONFIG and no Kind/Docker here: using the local test bed (docs/testbed.md)")
            chart = platform_images.upstream_chart()
            if not chart.is_file():
                print(f"==> the local inventory installs the real Zero-to-JupyterHub chart, {chart}, which is missing:"
                      " set DATALAB_UPSTREAM_CHARTS to the directory that holds jupyterhub-4.4.0.tgz",
                      file=sys.stderr)
                return 1
            cluster.ensure_up()
            platform_images.ensure_imported()
        elif kind == "kind":
            print("==> Kind and Docker found: creating/using Kind cluster 'datalab'")
            names = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, check=False).stdout.split()
            if "datalab" not in names:
                subprocess.run(["kind", "create", "cluster", "--name", "datalab",
                                "--config", str(REPO / "molecule" / "kind" / "kind-config.yml")], check=True)
        else:
            print(f"==> using your cluster from KUBECONFIG={choice['KUBECONFIG']} with {choice['DATALAB_INVENTORY']}")
    except (TestbedError, subprocess.CalledProcessError) as exc:
        print(f"==> cannot get a cluster: {exc}", file=sys.stderr)
        return 1
    bin_dir = Path(sys.executable).parent
    argv = [str(bin_dir / "ansible-playbook"), "site.yml", "-i", choice["DATALAB_INVENTORY"]] + sys.argv[1:]
    print("==> " + " ".join(argv), flush=True)
    return subprocess.run(argv, cwd=REPO, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
