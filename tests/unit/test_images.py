"""Pure logic of the test bed's image builder (tools/testbed/images): cache keys, records, parsing."""
from __future__ import annotations

import dataclasses
import json
import tarfile
from pathlib import Path

import pytest

from tools.testbed.images import api, key, recipes, steps
from tools.testbed.images.recipes import Maven, Recipe
from tools.testbed.procs import TestbedError

APT = {"sources": {"/etc/apt/sources.list.d/debian.sources": "URIs: http://deb.debian.org/debian\n"},
       "release_dates": {"x_InRelease": "Fri, 04 Dec 2026 03:54:28 UTC"}}
TOOLS = {"buildah": "1.28.2", "mmdebstrap": "1.3.5-7", "skopeo": "1.9.3"}


def k(recipe: Recipe, **kw) -> str:
    args = {"base_key": "b" * 64, "apt": APT, "tools": TOOLS, "builder": "c" * 64, "local": {}}
    args.update(kw)
    return key.recipe_key(recipe, **args)


BASE = Recipe(name="x", refs=("local.test/x:1",), base="debian-base", debs=("python3",))

# one changed value per recipe field
CHANGES = {
    "name": "y", "refs": ("local.test/x:2",), "base": "debian-jre", "suite": "trixie", "debs": ("python3", "curl"),
    "slim": False, "pip": ("requests==2.32.3",), "pip_sdist": ("onetimepass==1.0.1",), "pip_venv": "/opt/hub",
    "python_version": "3.12",
    "npm": ("configurable-http-proxy@4.6.3",), "npm_prefix": "/opt/chp",
    "maven": (Maven("org.example:a:1", "/opt/a.jar"),), "files": (("tools", "/opt/tools"),),
    "run": ("true",), "env": (("A", "1"),), "user": "1000", "workdir": "/srv", "entrypoint": ("tini",),
    "cmd": ("sh",), "ports": ("8080",), "labels": (("a", "b"),),
}


def test_every_recipe_field_is_covered_by_the_test():
    assert set(CHANGES) == {f.name for f in dataclasses.fields(Recipe)}


def test_unchanged_recipe_same_key():
    assert k(BASE) == k(dataclasses.replace(BASE))
    assert len(k(BASE)) == 64


@pytest.mark.parametrize("field", sorted(CHANGES))
def test_any_field_changes_the_key(field):
    assert k(dataclasses.replace(BASE, **{field: CHANGES[field]})) != k(BASE)


def test_other_inputs_change_the_key():
    assert k(BASE, base_key="d" * 64) != k(BASE)
    assert k(BASE, tools={**TOOLS, "buildah": "1.29"}) != k(BASE)
    assert k(BASE, builder="e" * 64) != k(BASE)
    assert k(BASE, local={"f": "1"}) != k(BASE)
    newer = {**APT, "release_dates": {"x_InRelease": "Sat, 05 Dec 2026 03:54:28 UTC"}}
    assert k(BASE, apt=newer) != k(BASE)
    other_mirror = {**APT, "sources": {"/etc/apt/sources.list": "deb http://example.invalid/debian bookworm main\n"}}
    assert k(BASE, apt=other_mirror) != k(BASE)


def test_apt_state_only_matters_where_debian_packages_are_resolved():
    files_only = Recipe(name="f", refs=("local.test/f:1",), base="debian-python", files=(("a", "/a"),))
    newer = {**APT, "release_dates": {}}
    assert k(files_only, apt=newer) == k(files_only)
    root = Recipe(name="r", refs=("local.test/r:1",))
    assert k(root, apt=newer, base_key=None) != k(root, base_key=None)


def test_file_content_mode_and_names_change_the_tree_digest(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.txt").write_text("one")
    (d / "sub").mkdir()
    (d / "sub" / "b").write_text("two")
    first = key.tree_digest(d)
    assert key.tree_digest(d) == first
    (d / "sub" / "b").write_text("three")
    second = key.tree_digest(d)
    assert second != first
    (d / "sub" / "b").chmod(0o755)
    assert key.tree_digest(d) != second
    third = key.tree_digest(d)
    (d / "link").symlink_to("a.txt")
    assert key.tree_digest(d) != third
    with pytest.raises(FileNotFoundError):
        key.tree_digest(tmp_path / "absent")


def test_local_input_content_reaches_the_recipe_key(tmp_path):
    f = tmp_path / "server.py"
    f.write_text("print(1)\n")
    r = Recipe(name="s", refs=("local.test/s:1",), base="debian-python", files=((str(f), "/srv/server.py"),))
    before = k(r, local=key.local_inputs(r))
    assert k(r, local=key.local_inputs(r)) == before
    f.write_text("print(2)\n")
    assert k(r, local=key.local_inputs(r)) != before


def test_static_key():
    a = key.static_key("local.test/pause:3.10", {"/pause": "1" * 64}, ["/pause"], None, tools=TOOLS, builder="c")
    assert a == key.static_key("local.test/pause:3.10", {"/pause": "1" * 64}, ["/pause"], {}, tools=TOOLS, builder="c")
    assert a != key.static_key("local.test/pause:3.10", {"/pause": "2" * 64}, ["/pause"], None, tools=TOOLS, builder="c")
    assert a != key.static_key("local.test/pause:3.11", {"/pause": "1" * 64}, ["/pause"], None, tools=TOOLS, builder="c")
    assert a != key.static_key("local.test/pause:3.10", {"/pause": "1" * 64}, ["/pause", "-v"], None, tools=TOOLS,
                               builder="c")


def test_builder_version_excludes_the_recipe_data():
    assert len(key.builder_version()) == 64


def test_apt_state_reads_sources_and_release_dates(tmp_path, monkeypatch):
    etc = tmp_path / "etc"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text("URIs: http://deb.debian.org/debian\n")
    (etc / "sources.list.d" / "old.list.disabled").write_text("ignored")
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "deb.debian.org_debian_dists_bookworm_InRelease").write_text("Origin: Debian\nDate: Sat, 1 Jan 2026\n")
    monkeypatch.setenv("DATALAB_IMAGES_APT_ETC", str(etc))
    monkeypatch.setenv("DATALAB_IMAGES_APT_LISTS", str(lists))
    st = key.apt_state()
    assert list(st["sources"]) == [str(etc / "sources.list.d" / "debian.sources")]
    assert st["release_dates"] == {"deb.debian.org_debian_dists_bookworm_InRelease": "Sat, 1 Jan 2026"}


def test_recipes_are_consistent():
    seen_refs = set()
    for name, r in recipes.RECIPES.items():
        assert r.name == name and r.refs
        assert not (set(r.refs) & seen_refs), f"{name} reuses a ref"
        seen_refs |= set(r.refs)
        chain = recipes.chain(name)
        assert chain[-1] is r and chain[0].base is None
    assert recipes.RECIPES["debian-python"].refs == ("local.test/debian-python:1",)


def test_unknown_and_cyclic_recipes(monkeypatch):
    with pytest.raises(TestbedError, match="no image recipe 'nope'"):
        recipes.chain("nope")
    cyc = {"a": Recipe(name="a", refs=("a:1",), base="b"), "b": Recipe(name="b", refs=("b:1",), base="a")}
    monkeypatch.setattr(recipes, "RECIPES", cyc)
    with pytest.raises(TestbedError, match="cycle"):
        recipes.chain("a")


def test_apt_simulation_parsing_and_deb_names():
    out = ("NOTE: This is only a simulation!\n"
           "Inst libpython3.11-minimal (3.11.2-6+deb12u6 Debian:12.12/stable, Debian-Security:12/stable-security [amd64])\n"
           "Inst python3 (3.11.2-1+b1 Debian:12.12/stable [amd64])\n"
           "Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.12/stable [all])\n"
           "Conf python3 (3.11.2-1+b1 Debian:12.12/stable [amd64])\n")
    assert steps.parse_simulation(out) == [("libpython3.11-minimal", "3.11.2-6+deb12u6", "amd64"),
                                           ("python3", "3.11.2-1+b1", "amd64"),
                                           ("tzdata", "2025b-0+deb12u1", "all")]
    assert steps.deb_filename("libc6", "1:2.36-9", "amd64") == "libc6_1%3a2.36-9_amd64.deb"


def test_mmdebstrap_uses_the_download_cache_and_unmounts_it(tmp_path):
    r = Recipe(name="r", refs=("r:1",), debs=("ca-certificates", "python3"))
    argv = steps.mmdebstrap_argv(r, tmp_path / "root", tmp_path / "apt", [tmp_path / "debian.sources"])
    assert argv[:2] == ["mmdebstrap", "--variant=minbase"]
    assert "--include=ca-certificates,python3" in argv
    assert any(a.startswith("--setup-hook=") and "mount --bind" in a for a in argv)
    assert any(a.startswith("--customize-hook=umount") for a in argv)
    assert argv[-3:] == ["bookworm", str(tmp_path / "root"), str(tmp_path / "debian.sources")]
    assert "--skip=update" in argv  # the host's lists: the archive state the key records
    assert not [a for a in steps.mmdebstrap_argv(dataclasses.replace(r, slim=False), tmp_path, tmp_path, [])
                if a.startswith("--dpkgopt=path-")]


def test_config_args():
    r = Recipe(name="r", refs=("r:1",), base="debian-python", env=(("A", "1"),), user="1000", workdir="/srv",
               entrypoint=("tini", "--"), ports=("8080",))
    args = steps.config_args(r)
    assert args[:2] == ["--env", "A=1"]
    assert ["--entrypoint", '["tini", "--"]'] == args[args.index("--entrypoint"):args.index("--entrypoint") + 2]
    assert ["--cmd", "[]"] == args[args.index("--cmd"):args.index("--cmd") + 2]  # base's command dropped
    assert "--port" in args and "--os" not in args
    root = steps.config_args(Recipe(name="b", refs=("b:1",), cmd=("bash",)))
    assert root[:4] == ["--os", "linux", "--arch", "amd64"] and root[-2:] == ["--cmd", '["bash"]']


@pytest.mark.parametrize("ref,want", [
    ("local.test/debian-python:1", "local.test/debian-python:1"),
    ("quay.io/keycloak/keycloak:26.5.5", "quay.io/keycloak/keycloak:26.5.5"),
    ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
    ("jupyterhub/k8s-hub:4.4.0", "docker.io/jupyterhub/k8s-hub:4.4.0"),
    ("busybox", "docker.io/library/busybox:latest"),
    ("localhost:5000/a/b:1", "localhost:5000/a/b:1"),
])
def test_normalize(ref, want):
    assert api.normalize(ref) == want


def _fake_archive(path, refs, cfg="ab" * 32):
    inner = path.parent / "manifest.json"
    inner.write_text(json.dumps([{"Config": f"{cfg}.json", "RepoTags": refs, "Layers": []}]))
    with tarfile.open(path, "w") as t:
        t.add(inner, arcname="manifest.json")
    inner.unlink()


def test_records_are_verified_and_damage_is_detected(tmp_path, monkeypatch):
    monkeypatch.setenv("DATALAB_CACHE", str(tmp_path / "cache"))
    archive, rec_path = api._paths_for("demo", "f" * 64)
    (tmp_path / "work").mkdir()
    tmp_archive = tmp_path / "work" / "image.tar"
    _fake_archive(tmp_archive, ["local.test/demo:1"])
    rec = api._publish(tmp_archive, archive, rec_path, {"name": "demo", "key": "f" * 64})
    assert rec["refs"] == ["local.test/demo:1"] and rec["image_id"] == "sha256:" + "ab" * 32
    assert api._valid(archive, rec_path, "f" * 64)
    assert api._valid(archive, rec_path, "0" * 64) is None  # another key
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF
    archive.write_bytes(bytes(data))
    assert api._valid(archive, rec_path, "f" * 64) is None  # same size, other bytes
    archive.write_bytes(bytes(data[:-10]))
    assert api._valid(archive, rec_path, "f" * 64) is None  # truncated
    rec_path.write_text("{not json")
    assert api._valid(archive, rec_path, "f" * 64) is None


def test_publish_supersedes_older_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("DATALAB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "work").mkdir()
    for kk in ("1" * 64, "2" * 64):
        archive, rec_path = api._paths_for("demo", kk)
        _fake_archive(tmp_path / "work" / "image.tar", ["local.test/demo:1"])
        api._publish(tmp_path / "work" / "image.tar", archive, rec_path, {"name": "demo", "key": kk})
    assert sorted(p.name for p in archive.parent.iterdir()) == ["2" * 64 + ".json", "2" * 64 + ".tar"]
    # static images share a directory: only the same ref is superseded
    for kk, ref in (("3" * 64, "local.test/pause:3.10"), ("4" * 64, "local.test/coredns:1.15.0"),
                    ("5" * 64, "local.test/pause:3.10")):
        archive, rec_path = api._paths_for("static", kk)
        _fake_archive(tmp_path / "work" / "image.tar", [ref])
        api._publish(tmp_path / "work" / "image.tar", archive, rec_path, {"name": ref, "key": kk})
    assert sorted(p.stem for p in archive.parent.glob("*.tar")) == ["4" * 64, "5" * 64]


def test_unpack_strips_the_top_directory(tmp_path):
    import zipfile
    z = tmp_path / "dist.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("keycloak-1/bin/kc.sh", "#!/bin/sh\n")
        f.writestr("keycloak-1/lib/a.jar", "jar")
    steps.unpack(z, tmp_path / "out")
    assert (tmp_path / "out" / "bin" / "kc.sh").read_text() == "#!/bin/sh\n"
    t = tmp_path / "dist.tar.gz"
    src = tmp_path / "src" / "top"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "x").write_text("x")
    with tarfile.open(t, "w:gz") as f:
        f.add(src, arcname="top")
    steps.unpack(t, tmp_path / "out2")
    assert (tmp_path / "out2" / "bin" / "x").read_text() == "x"


def test_a_missing_local_input_names_the_recipe(tmp_path):
    r = Recipe(name="gone", refs=("local.test/gone:1",), base="debian-python", files=((str(tmp_path / "nope"), "/x"),))
    with pytest.raises(TestbedError, match="image recipe gone: .*nope"):
        key.local_inputs(r)


def test_wheel_platforms_cover_every_manylinux_level_the_image_runs():
    tags = steps.wheel_platforms(36)
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in tags and "manylinux_2_5_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_37_x86_64" not in tags and "linux_x86_64" not in tags
    r = dataclasses.replace(BASE, pip=("aiohttp==3.14.1",))
    argv = steps.pip_download_argv(r, Path("/d"))
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--platform"] == steps.wheel_platforms()
    assert "--only-binary=:all:" in argv and argv[-1] == "aiohttp==3.14.1"


def test_sdist_wheels_must_be_pure_python(tmp_path):
    r = dataclasses.replace(BASE, pip=("onetimepass==1.0.1", "six==1.17.0"), pip_sdist=("onetimepass==1.0.1",))
    assert steps.pip_wheel_argv(r, tmp_path)[-1] == "onetimepass==1.0.1"
    assert "--no-binary=:all:" in steps.pip_wheel_argv(r, tmp_path)
    steps.check_pure([tmp_path / "onetimepass-1.0.1-py3-none-any.whl"], r)
    with pytest.raises(TestbedError, match="psycopg2-2.9.12-cp311-cp311-linux_x86_64.whl .*compiled code"):
        steps.check_pure([tmp_path / "psycopg2-2.9.12-cp311-cp311-linux_x86_64.whl"], r)


def test_py_sources_are_called_and_keyed(tmp_path, monkeypatch):
    import sys  # noqa: PLC0415
    import types  # noqa: PLC0415
    made = tmp_path / "bin"
    made.write_text("v1")
    mod = types.ModuleType("datalab_fake_producer")
    calls = []
    mod.produce = lambda: calls.append(1) or made
    monkeypatch.setitem(sys.modules, "datalab_fake_producer", mod)
    r = Recipe(name="p", refs=("local.test/p:1",), base="debian-base",
               files=(("py:datalab_fake_producer:produce", "/usr/bin/p"),))
    assert key.source_path("py:datalab_fake_producer:produce") == made
    first = key.local_inputs(r)
    made.write_text("v2")
    assert key.local_inputs(r) != first and len(calls) == 3


def test_platform_recipes_use_the_references_the_roles_and_chart_run():
    refs = {n: r.refs for n, r in recipes.RECIPES.items()}
    assert refs["keycloak"] == ("quay.io/keycloak/keycloak:26.5.5",)
    assert refs["minio"] == ("quay.io/minio/minio:RELEASE.2024-12-18T13-15-44Z",)
    assert refs["mc"] == ("quay.io/minio/mc:RELEASE.2024-11-21T17-21-54Z",)
    assert refs["k8s-hub"] == ("quay.io/jupyterhub/k8s-hub:4.4.0",)
    assert refs["chp"] == ("quay.io/jupyterhub/configurable-http-proxy:5.2.0",)
    assert refs["pyspark-notebook"] == ("quay.io/jupyter/pyspark-notebook:spark-3.5.2",)
    assert refs["k8s-network-tools"] == ("quay.io/jupyterhub/k8s-network-tools:4.4.0",)
    assert recipes.RECIPES["keycloak"].user == "1000" and recipes.RECIPES["k8s-hub"].user == "1000"


def test_hub_pins_are_the_charts_hub_image_requirements():
    """The hub recipe installs exactly the pins of the chart's hub image (when the shared file is here),
    with psycopg2 (sdist only) as psycopg2-binary of the same version."""
    charts = Path(__file__).resolve().parents[2].parent / "shared" / "upstream-charts"
    req = charts / "z2jh-4.4.0-hub-image-requirements.txt"
    if not req.is_file():
        pytest.skip(f"{req} is not on this machine")
    pins = sorted(line.split("#")[0].strip() for line in req.read_text().splitlines()
                  if line.split("#")[0].strip())
    hub = recipes.RECIPES["k8s-hub"]
    assert sorted(p.replace("psycopg2-binary==", "psycopg2==") for p in hub.pip) == pins
    assert set(hub.pip_sdist) <= set(hub.pip)
