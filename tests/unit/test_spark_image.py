"""The spark_image role without a real container engine.

A fake `docker` and a fake `kind` (shell scripts on PATH that record their calls and keep
the image's build-hash label in a state directory) stand in for the engine, so the role's
decisions are checked: the Dockerfile it writes, build only when the Dockerfile changed,
load into Kind only when a node lacks the image, push only when built or missing, a clear
failure when the engine is not usable, and nothing at all with spark_image_build false.
The jars come from a Maven-layout directory served by a real HTTP server on loopback (small
files with their real sha1), so the download and its checksum run too.  The real build with
buildah, into the test bed's containerd, is tests/integration/test_spark_image_build.py.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)

FAKE_DOCKER = r"""#!/bin/bash
# Fake container engine for tests: records calls, keeps labels and pushes in $FAKE_STATE.
echo "docker $*" >> "$FAKE_STATE/calls"
case "$1" in
  info) [ -e "$FAKE_STATE/daemon-down" ] && { echo "Cannot connect to the Docker daemon" >&2; exit 1; }; echo 28.2.2 ;;
  image) ref="${@: -1}"; f="$FAKE_STATE/label-$(echo "$ref" | tr '/:' '__')"
         [ -e "$f" ] && cat "$f" || { echo "Error: No such image: $ref" >&2; exit 1; } ;;
  build) while [ $# -gt 0 ]; do case "$1" in --label) label="${2#*=}"; shift;; --tag) ref="$2"; shift;; esac; shift; done
         echo "$label" > "$FAKE_STATE/label-$(echo "$ref" | tr '/:' '__')" ;;
  save) touch "$3" ;;
  exec) [ -e "$FAKE_STATE/kind-has-image" ] || exit 1 ;;
  manifest) [ -e "$FAKE_STATE/pushed" ] || { echo "no such manifest" >&2; exit 1; } ;;
  push) touch "$FAKE_STATE/pushed" ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"""

FAKE_KIND = r"""#!/bin/bash
echo "kind $*" >> "$FAKE_STATE/calls"
echo "kind-env DOCKER_HOST=${DOCKER_HOST-unset} KIND_EXPERIMENTAL_PROVIDER=${KIND_EXPERIMENTAL_PROVIDER-unset}" \
  >> "$FAKE_STATE/calls"
case "$1" in
  get) echo "$4-control-plane"; echo "$4-worker" ;;
  load) touch "$FAKE_STATE/kind-has-image" ;;
  *) exit 2 ;;
esac
"""


@pytest.fixture(scope="module")
def maven(tmp_path_factory):
    """Two small jars in Maven's layout on a loopback HTTP server; returns (repository URL, jars)."""
    root = tmp_path_factory.mktemp("maven")
    jars = []
    for group, artifact, version in (("org.example", "s3-connector", "1.0.0"), ("com.example", "sdk-bundle", "2.1")):
        path = root / group.replace(".", "/") / artifact / version / f"{artifact}-{version}.jar"
        path.parent.mkdir(parents=True)
        path.write_bytes(f"jar {artifact} {version}".encode())
        jars.append({"group": group, "artifact": artifact, "version": version,
                     "sha1": hashlib.sha1(path.read_bytes()).hexdigest()})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", jars
    server.shutdown()


class Bed:
    def __init__(self, tmp_path, maven):
        self.maven_url, self.jars = maven
        self.tmp = tmp_path
        self.state = tmp_path / "state"
        self.state.mkdir()
        fake_bin = tmp_path / "bin"
        fake_bin.mkdir()
        for name, script in (("docker", FAKE_DOCKER), ("kind", FAKE_KIND)):
            (fake_bin / name).write_text(script)
            (fake_bin / name).chmod(0o755)
        self.env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                        FAKE_STATE=str(self.state), PATH=f"{fake_bin}:{BIN}:/usr/bin:/bin", no_proxy="127.0.0.1",
                        NO_PROXY="127.0.0.1")
        self.build_dir = tmp_path / "build"

    def run(self, **hostvars):
        host = {"spark_image_build_dir": str(self.build_dir), "spark_image_maven_repository": self.maven_url,
                "spark_image_jars": self.jars, **hostvars}
        inventory = self.tmp / "hosts.yml"
        inventory.write_text(yaml.safe_dump({"notebook_platform": {"hosts": {"img": host}, "vars": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
        if (self.state / "calls").exists():
            (self.state / "calls").unlink()
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/spark_image.yml"],
                              cwd=REPO, env=self.env, capture_output=True, text=True, timeout=300, check=False)
        out = proc.stdout + proc.stderr
        calls = (self.state / "calls").read_text().splitlines() if (self.state / "calls").exists() else []
        m = {h: int(c) for h, c in ((m.group(1), m.group(3)) for m in RECAP.finditer(out))}
        return proc.returncode, out, calls, m.get("img")

    @property
    def dockerfile(self):
        return (self.build_dir / "Dockerfile").read_text()


@pytest.fixture()
def bed(tmp_path, maven):
    return Bed(tmp_path, maven)


def verbs(calls, tool="docker"):
    return [c.split()[1] for c in calls if c.startswith(tool + " ")]


def test_build_load_push_once_then_nothing(bed):
    kw = {"spark_image_kind_cluster": "demo", "spark_image_registry": "registry.example.com/datalab/"}
    rc, out, calls, changed = bed.run(**kw)
    assert rc == 0, out[-3000:]
    assert "build" in verbs(calls) and "push" in verbs(calls) and "save" in verbs(calls)
    assert any(c.startswith("kind load image-archive") and c.endswith("--name demo") for c in calls), calls
    build = next(c for c in calls if c.startswith("docker build"))
    assert "--tag registry.example.com/datalab/datalab/spark-executor:3.5.2-python3.11" in build
    assert "--label datalab.notebooks.build-hash=" in build
    assert changed > 0

    rc, out, calls, changed = bed.run(**kw)
    assert rc == 0, out[-3000:]
    assert changed == 0, out[-3000:]
    assert not {"build", "save", "push"} & set(verbs(calls)), calls
    assert not any(c.startswith("kind load") for c in calls)

    rc, out, calls, changed = bed.run(spark_image_python_packages=["six==1.17.0"], **kw)
    assert rc == 0, out[-3000:]
    assert "build" in verbs(calls) and "push" in verbs(calls), "a changed Dockerfile is rebuilt and delivered"
    assert "--no-index --find-links /tmp/datalab-wheels six==1.17.0" in bed.dockerfile
    assert any(w.name.startswith("six-1.17.0-") for w in (bed.build_dir / "wheels").iterdir())


def test_kind_nodes_missing_the_image_get_it_without_a_rebuild(bed):
    rc, out, _calls, _changed = bed.run(spark_image_kind_cluster="demo")
    assert rc == 0, out[-3000:]
    (bed.state / "kind-has-image").unlink()  # e.g. the Kind cluster was recreated
    rc, out, calls, changed = bed.run(spark_image_kind_cluster="demo")
    assert rc == 0, out[-3000:]
    assert "build" not in verbs(calls)
    assert any(c.startswith("kind load") for c in calls)
    assert changed > 0


def test_kind_runs_with_the_engine_environment(bed):
    engine_env = {"DOCKER_HOST": "unix:///run/elsewhere.sock"}
    rc, out, calls, _changed = bed.run(spark_image_kind_cluster="demo", spark_image_engine_environment=engine_env)
    assert rc == 0, out[-3000:]
    seen = [c for c in calls if c.startswith("kind-env ")]
    assert len(seen) == 2, calls  # kind get nodes, kind load
    assert set(seen) == {"kind-env DOCKER_HOST=unix:///run/elsewhere.sock KIND_EXPERIMENTAL_PROVIDER="}, seen


def test_dockerfile(bed):
    rc, out, _calls, _changed = bed.run()
    assert rc == 0, out[-3000:]
    text = bed.dockerfile
    assert "FROM spark:3.5.2-scala2.12-java17-ubuntu" in text.splitlines()
    assert "python3.11 python3.11-venv" in text, "installed when the base lacks Python 3.11"
    assert "if ! python3.11 -c 'import ensurepip'" in text
    assert 'update-alternatives --install /usr/bin/python3 python3 "$(command -v python3.11)" 1' in text
    assert "COPY jars/s3-connector-1.0.0.jar jars/sdk-bundle-2.1.jar /opt/spark/jars/" in text
    sha1 = bed.jars[0]["sha1"]
    assert f'echo "{sha1}  s3-connector-1.0.0.jar" | sha1sum -c -' in text
    for jar in bed.jars:
        got = bed.build_dir / "jars" / f"{jar['artifact']}-{jar['version']}.jar"
        assert hashlib.sha1(got.read_bytes()).hexdigest() == jar["sha1"], "the jar downloaded before the build"
    assert 'ENTRYPOINT ["/opt/datalab/executor-entrypoint.sh"]' in text
    assert (bed.build_dir / "executor-entrypoint.sh").read_text() == \
        (REPO / "roles/spark_image/files/executor-entrypoint.sh").read_text()
    assert text.rstrip().splitlines()[-1] == "USER 185"
    assert "pip install" not in text


def test_a_jar_with_another_checksum_is_refused(bed):
    jars = [dict(bed.jars[0], sha1="0" * 40)]
    rc, out, calls, _changed = bed.run(spark_image_jars=jars)
    assert rc != 0
    assert "checksum" in out.lower(), out[-3000:]
    assert "build" not in verbs(calls)


def test_dockerfile_without_jars(bed):
    rc, out, _calls, _changed = bed.run(spark_image_jars=[])
    assert rc == 0, out[-3000:]
    assert "/opt/spark/jars" not in bed.dockerfile and "sha1sum" not in bed.dockerfile


def test_unusable_engine_fails_with_the_fix(bed):
    (bed.state / "daemon-down").touch()
    rc, out, calls, _changed = bed.run()
    assert rc != 0
    assert "Cannot connect to the Docker daemon" in out
    assert "spark_image_build: false" in out and "spark_image_engine" in out
    assert "build" not in verbs(calls)


def test_missing_engine_fails_with_the_fix(bed):
    # An engine whose probe fails (as a missing one does), whatever this machine has installed.
    broken = bed.tmp / "bin" / "buildah"
    broken.write_text("#!/bin/sh\necho 'buildah: cannot run here' >&2\nexit 127\n")
    broken.chmod(0o755)
    rc, out, _calls, _changed = bed.run(spark_image_engine="buildah")
    assert rc != 0
    assert "container engine 'buildah' is not usable" in out
    assert "spark_image_build: false" in out


def test_build_false_does_nothing(bed):
    rc, out, calls, changed = bed.run(spark_image_build=False, spark_image_engine="buildah")
    assert rc == 0, out[-3000:]
    assert calls == [] and changed == 0
    assert "no image is built" in out


@pytest.mark.parametrize("hostvars, message", [
    ({"spark_image_engine": "buildah", "spark_image_kind_cluster": "demo"}, "Kind loads images from docker or podman"),
    ({"spark_image_jars": [{"group": "g", "artifact": "a", "version": "1"}]}, "40-hex sha1"),
    ({"spark_image_tag": "bad tag"}, "not a valid image reference"),
    ({"spark_image_engine": "nerdctl"}, "spark_image_engine"),
])
def test_bad_input_is_refused(bed, hostvars, message):
    rc, out, calls, _changed = bed.run(**hostvars)
    assert rc != 0
    assert message in out, out[-3000:]
    assert calls == []


def test_inventories_point_the_hub_at_the_image_they_build():
    for inventory in ("local", "kind", "production"):
        gv = REPO / "inventories" / inventory / "group_vars" / "notebook_platform"
        hub = yaml.safe_load((gv / "jupyterhub.yml").read_text())
        image = yaml.safe_load((gv / "spark_image.yml").read_text())
        assert "spark_image_name" in hub["jupyterhub_spark_executor_image"], inventory
        assert {"spark_image_name", "spark_image_tag"} <= set(image), json.dumps(image)
