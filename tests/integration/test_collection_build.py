"""The built collection installs and runs site.yml from outside the checkout."""
from __future__ import annotations

import os
import re
import subprocess
import tarfile
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(argv, cwd, env, timeout=1200):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_built_collection_installs_and_converges_from_outside_the_checkout(cluster, tmp_path):
    """Converges lab-a of inventories/local (on the real node, with the real chart) from the installed
    collection; the install stays for the later layers (Molecule and the e2e tests converge it too)."""
    from tools.testbed import platform_images

    why = platform_images.local_inventory_missing()
    if why:
        pytest.skip(f"the local inventory cannot run here: {why}")
    platform_images.ensure_imported()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    built = _run([str(BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(tmp_path)],
                 tmp_path, env)
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = tmp_path.glob("datalab-notebooks-*.tar.gz")
    size_mb = tarball.stat().st_size / 1e6
    assert size_mb < 20, f"collection artifact is {size_mb:.1f} MB: build_ignore misses something"
    with tarfile.open(tarball) as tar:
        names = {m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()}
    for needed in ("LICENSE", "README.md", "MANIFEST.json", "FILES.json", "meta/runtime.yml",
                   "playbooks/site.yml", "roles/spark_image/files/executor-entrypoint.sh",
                   "plugins/modules/keycloak_realm_import.py", "roles/jupyterhub/files/notebooks/process-s3.ipynb"):
        assert needed in names, f"{needed} is not in the built collection"
    dev = sorted(n for n in names if n.split("/")[0] in ("tools", "benchmarks", "molecule", ".ci", "artifacts")
                 or n.startswith("docs/img/") or n in ("Makefile", "pytest.ini"))
    assert not dev, f"development tooling in the built collection: {dev[:10]}"

    colls = tmp_path / "collections"
    installed = _run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(colls),
                      "--no-deps"], tmp_path, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (colls / "ansible_collections" / "datalab" / "notebooks" / "playbooks" / "site.yml").is_file()

    # A directory with nothing of the checkout in it; only the inventory comes from the repository.
    work = tmp_path / "elsewhere"
    work.mkdir()
    env["ANSIBLE_COLLECTIONS_PATH"] = str(colls)
    doc = _run([str(BIN / "ansible-doc"), "datalab.notebooks.nodeport_address"], work, env, timeout=120)
    assert doc.returncode == 0, doc.stderr
    run = _run([str(BIN / "ansible-playbook"), "datalab.notebooks.site", "-i", str(REPO / "inventories" / "local"),
                "--limit", "lab-a"], work, env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    recap = re.search(r"lab-a\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=0\s+failed=0", out)
    assert recap, out[-3000:]
    assert str(colls) in _run([str(BIN / "ansible-galaxy"), "collection", "list", "datalab.notebooks"],
                              work, env, timeout=120).stdout
