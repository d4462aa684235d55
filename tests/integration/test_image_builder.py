"""The test bed's image builder for real: mmdebstrap + buildah on this machine, no registry.

Builds into the normal cache (DATALAB_CACHE): the first run of a session pays the cold build,
later runs find it cached.  Needs root (mmdebstrap, buildah's overlay store).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import time

import pytest

from tools.testbed import hoststate, images
from tools.testbed.images import Recipe, api, recipes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="building images needs root (mmdebstrap, buildah)"),
]

# Differences a real node running beside this test may cause on its own (pods start and stop,
# kubelet and kube-proxy set their sysctls).  ip_forward is only excused when the node itself
# came or went during the build (its bridge dl-rn0 appeared or vanished).
REAL_NODE = re.compile(r"veth|dl-rn0|KUBE-|DATALAB-|kubepods|/run/netns|/var/run/netns|/var/lib/cni|/run/containerd|"
                       r"/var/log/(pods|containers)|/var/lib/kubelet|/cluster/node/|10\.88\.|route_localnet|"
                       r"sysctls (kernel|vm)\.|bridge-nf-call")
FORWARDING = re.compile(r"sysctls net\.ipv[46]\.conf\.all\.forwarding|ip_forward")
# What buildah's default (CNI) network would leave behind.
BUILDAH_NET = re.compile(r"cni-podman|CNI-|podman|netavark|buildah", re.I)


@pytest.fixture(scope="module")
def python_image():
    return images.ensure("debian-python")


def _layers(archive):
    with tarfile.open(archive) as t:
        manifest = json.load(t.extractfile("manifest.json"))
        names = []
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=t.extractfile(layer)) as lt:
                names += lt.getnames()
    return manifest, names


def test_debian_python_archive_has_refs_config_and_python(python_image):
    assert python_image.refs == ["local.test/debian-python:1"]
    cfg = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"docker-archive:{python_image.archive}"],
                                    capture_output=True, text=True, check=True).stdout)
    assert cfg["config"]["Cmd"] == ["python3"]
    assert any(e.startswith("PATH=") for e in cfg["config"]["Env"])
    manifest, names = _layers(python_image.archive)
    assert manifest[0]["RepoTags"] == ["local.test/debian-python:1"]
    assert len(manifest[0]["Layers"]) == 2  # the shared debian-base layer + python3
    assert "usr/bin/python3" in names and "etc/ssl/certs/ca-certificates.crt" in names
    assert not [n for n in names if n.startswith("usr/share/man/") and n.endswith(".gz")]  # slim
    base = images.ensure("debian-base")
    assert not base.built
    base_manifest, dummy = _layers(base.archive)
    assert manifest[0]["Layers"][0] == base_manifest[0]["Layers"][0]  # same first layer: shared on import


def test_unchanged_recipe_is_a_cache_hit_in_seconds(python_image):
    t0 = time.monotonic()
    again = images.ensure("debian-python")
    elapsed = time.monotonic() - t0
    assert not again.built and again.key == python_image.key and again.archive == python_image.archive
    assert elapsed < 5, f"cache hit took {elapsed:.1f}s"
    out = subprocess.run([sys.executable, "-m", "tools.testbed.images", "list"], capture_output=True, text=True,
                         check=True, cwd=api.paths.REPO, env={**os.environ, "PYTHONPATH": str(api.paths.REPO)}).stdout
    row = next(line for line in out.splitlines() if line.startswith("debian-python "))
    assert python_image.key[:12] in row and " yes " in row


# An image only this test builds (other sessions share the cache and may rebuild debian-python),
# layered on debian-python with a local file and a command run inside (buildah run).
OWN = Recipe(name="images-test", refs=("local.test/images-test:1",), base="debian-python",
             files=(("tests/integration/test_image_builder.py", "/srv/"),),
             run=("python3 -c 'import sys; print(sys.version)' > /srv/ran.txt",), cmd=("cat", "/srv/ran.txt"))


@pytest.fixture()
def own_image(monkeypatch, python_image):
    monkeypatch.setitem(recipes.RECIPES, OWN.name, OWN)
    return images.ensure(OWN.name)


def _blob_cache_state():
    d = "/var/lib/containers/cache"
    return sorted((f, os.stat(os.path.join(d, f)).st_mtime_ns) for f in os.listdir(d)) if os.path.isdir(d) else None


def test_damaged_archive_is_rebuilt_and_the_host_network_is_untouched(own_image):
    dummy, names = _layers(own_image.archive)
    assert {"srv/test_image_builder.py", "srv/ran.txt"} <= set(names)
    before, blob_cache = hoststate.snapshot(), _blob_cache_state()
    data = bytearray(own_image.archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte different
    own_image.archive.write_bytes(bytes(data))
    rebuilt = images.ensure(OWN.name)  # buildah from debian-python, run --network none, commit, push
    after = hoststate.snapshot()
    assert rebuilt.built and rebuilt.key == own_image.key
    assert api._valid(rebuilt.archive, rebuilt.archive.with_suffix(".json"), rebuilt.key)
    assert not images.ensure(OWN.name).built
    assert _blob_cache_state() == blob_cache  # nothing written under /var/lib/containers
    diffs = hoststate.compare(before, after)
    node_came_or_went = any("dl-rn0 bridge" in d for d in diffs)
    ours = [d for d in diffs if not REAL_NODE.search(d) and not (node_came_or_went and FORWARDING.search(d))]
    assert ours == []
    assert not BUILDAH_NET.search(json.dumps(after["links"]) + json.dumps(after["iptables"]))


def test_static_image_of_a_few_files(tmp_path):
    exe = tmp_path / "hello"
    exe.write_text("#!/bin/sh\necho hello\n")
    exe.chmod(0o755)
    archive = images.build_static("local.test/static-test:1", {"/bin/hello": exe}, ["/bin/hello"], {"A": "1"})
    t0 = time.monotonic()
    assert images.build_static("local.test/static-test:1", {"/bin/hello": exe}, ["/bin/hello"], {"A": "1"}) == archive
    assert time.monotonic() - t0 < 2
    manifest, names = _layers(archive)
    assert manifest[0]["RepoTags"] == ["local.test/static-test:1"]
    assert {"bin/hello", "etc/passwd", "etc/group", "tmp"} <= set(names)
    cfg = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"docker-archive:{archive}"],
                                    capture_output=True, text=True, check=True).stdout)
    assert cfg["config"]["Entrypoint"] == ["/bin/hello"] and "A=1" in cfg["config"]["Env"]
    exe.write_text("#!/bin/sh\necho changed\n")
    assert images.build_static("local.test/static-test:1", {"/bin/hello": exe}, ["/bin/hello"], {"A": "1"}) != archive


def test_import_into_the_real_node_and_missing(cluster, python_image):
    if not cluster.real_node:
        pytest.skip("the test bed runs without a real node")
    sock = cluster.real_node["containerd_socket"]
    if not os.path.exists(sock):
        pytest.skip(f"the real node's containerd is not running ({sock})")
    images.import_into(sock, [python_image])
    assert images.missing(sock, python_image.refs + ["local.test/never-built:0"]) == ["local.test/never-built:0"]
    t0 = time.monotonic()
    images.import_into(sock, [python_image.archive])  # same image id: skipped
    assert time.monotonic() - t0 < 1
