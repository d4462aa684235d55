"""The spark_image role's own build path, for real: buildah (Debian's), FROM the test bed's Spark base,
imported into the real node's containerd, as `inventories/local` runs it.

`playbooks/spark_image.yml -i inventories/local --limit lab-a`, with a tag of its own (so the
platform's image is untouched) and no jars (the e2e notebook test runs the default image, S3A jars
included): the first run builds and imports (changed), a rerun with no input changed does neither
(changed=0), a changed input (a Python package) rebuilds and re-imports, and the package is in the
new image.  Skips where the local inventory cannot run (no real node, no upstream chart directory).
"""
from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.ansible_run import recap, run_playbook

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
LABEL = "datalab.notebooks.build-hash"


def _play(tmp_path: Path, extra: dict) -> tuple[int, str, int | None]:
    vars_file = tmp_path / f"vars-{uuid.uuid4().hex[:6]}.json"
    vars_file.write_text(json.dumps(extra))
    rc, out = run_playbook(REPO / "inventories" / "local", "playbooks/spark_image.yml", "--limit", "lab-a",
                           "-e", f"@{vars_file}", timeout=1200)
    return rc, out, recap(out).get("lab-a", {}).get("changed") if "PLAY RECAP" in out else None


def _containerd_hash(real: dict, ref: str) -> str:
    """The build hash containerd's image carries (the role's label), "" when the image is absent."""
    from tools.testbed.images import api as images_api

    labels = images_api.present(real["containerd_socket"]).get(ref)
    return "" if labels is None else labels.get(LABEL, "unlabelled")


@pytest.fixture()
def build(cluster, tmp_path):
    from tools.testbed import platform_images

    why = platform_images.local_inventory_missing()
    if why:
        pytest.skip(f"the local inventory cannot run here: {why}")
    real = platform_images.real_node()
    store = platform_images.ensure_executor_base()
    tag = f"itest-{uuid.uuid4().hex[:8]}"
    ref = f"datalab/spark-executor:{tag}"
    yield {"real": real, "store": store, "tag": tag, "ref": ref, "qualified": f"docker.io/{ref}",
           "vars": {"spark_image_tag": tag, "spark_image_jars": [], "spark_image_build_dir": str(tmp_path / "ctx")}}
    subprocess.run(["ctr", "--address", real["containerd_socket"], "--namespace", "k8s.io", "images", "rm",
                    f"docker.io/{ref}"], capture_output=True, check=False)
    subprocess.run(["buildah", "rmi", "--force", ref], env=store.env, capture_output=True,
                   check=False)


def _in_image(store, ref: str, argv: list[str]) -> subprocess.CompletedProcess:
    env = store.env  # its storage.conf, no registry, BUILDAH_ISOLATION=oci
    ctr = subprocess.run(["buildah", "from", "--pull=never", "--quiet", ref], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        return subprocess.run(["buildah", "run", "--network", "none", ctr, "--", *argv], env=env,
                              capture_output=True, text=True, check=False)
    finally:
        subprocess.run(["buildah", "rm", ctr], env=env, capture_output=True, check=False)


def test_build_once_rerun_nothing_changed_input_rebuilds(build, tmp_path):
    rc, out, changed = _play(tmp_path, build["vars"])
    assert rc == 0, out[-5000:]
    assert changed and changed > 0, out[-3000:]
    first = _containerd_hash(build["real"], build["qualified"])
    assert re.fullmatch(r"[0-9a-f]{64}", first), f"containerd has no labelled {build['qualified']}: {first!r}"
    entry = _in_image(build["store"], build["ref"], ["sh", "-c", "python3 --version; command -v python3; "
                                                           "python3 -c 'import pyspark; print(pyspark.__version__)'"])
    assert entry.returncode == 0, entry.stderr
    assert entry.stdout.split() == ["Python", "3.11.2", "/opt/datalab/python/bin/python3", "3.5.2"], entry.stdout

    rc, out, changed = _play(tmp_path, build["vars"])
    assert rc == 0, out[-5000:]
    assert changed == 0, out[-3000:]
    assert _containerd_hash(build["real"], build["qualified"]) == first

    rc, out, changed = _play(tmp_path, {**build["vars"], "spark_image_python_packages": ["six==1.17.0"]})
    assert rc == 0, out[-5000:]
    assert changed and changed > 0, out[-3000:]
    second = _containerd_hash(build["real"], build["qualified"])
    assert re.fullmatch(r"[0-9a-f]{64}", second) and second != first, (first, second)
    six = _in_image(build["store"], build["ref"], ["python3", "-c", "import six; print(six.__version__)"])
    assert six.stdout.strip() == "1.17.0", six.stdout + six.stderr
