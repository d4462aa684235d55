"""Build images from recipes, cache them by content, import them into a containerd.

Layout under `<cache>/images/`:
  <recipe>/<key>.tar, <key>.json    docker-archive + record (refs, sha256, size, image id)
  static/<key>.tar, <key>.json      scratch images from build_static()
  build/                            buildah's private store (storage.conf, registries.conf, tmp)
Archives and records are written to a temporary name and renamed; a record is trusted only if
the archive's size and SHA-256 match it, otherwise the image is rebuilt.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import hostpkgs, paths
from ..procs import TestbedError
from . import key as keymod
from . import recipes, steps
from .buildah import NO_NET_ENV, Store, log
from .recipes import Recipe

LABEL = "datalab.image-id"


@dataclass
class Built:
    name: str
    refs: list[str]
    archive: Path
    key: str
    built: bool
    image_id: str = ""
    record: dict = field(default_factory=dict, repr=False)


def images_dir() -> Path:
    return paths.cache_dir() / "images"


def store() -> Store:
    return Store(images_dir() / "build")


_held = {"depth": 0}


@contextlib.contextmanager
def _lock():
    """One build at a time per cache directory (re-entrant: a build ensures its base first)."""
    if _held["depth"]:
        _held["depth"] += 1
        try:
            yield
        finally:
            _held["depth"] -= 1
        return
    d = images_dir()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        _held["depth"] = 1
        try:
            yield
        finally:
            _held["depth"] = 0
            fcntl.flock(f, fcntl.LOCK_UN)


def _tools_ready() -> None:
    hostpkgs.ensure({"buildah": "buildah", "skopeo": "skopeo", "mmdebstrap": "mmdebstrap"},
                    "building the test bed's container images")


# keys ---------------------------------------------------------------------------------------------
def keys(name: str) -> dict[str, str]:
    """Cache keys of a recipe and its bases (cheap: hashes of inputs, no build)."""
    tools, builder = keymod.tool_versions(), keymod.builder_version()
    apt = None
    out: dict[str, str] = {}
    base_key = None
    for r in recipes.chain(name):
        if apt is None and (r.base is None or r.debs):
            apt = keymod.apt_state()
        base_key = keymod.recipe_key(r, base_key=base_key, apt=apt or {}, tools=tools, builder=builder,
                                     local=keymod.local_inputs(r))
        out[r.name] = base_key
    return out


# records ------------------------------------------------------------------------------------------
def _paths_for(group: str, key: str) -> tuple[Path, Path]:
    d = images_dir() / group
    return d / f"{key}.tar", d / f"{key}.json"


def _valid(archive: Path, record_path: Path, key: str) -> dict | None:
    try:
        rec = json.loads(record_path.read_text())
        if rec.get("key") != key or archive.stat().st_size != rec.get("size"):
            return None
    except (OSError, ValueError):
        return None
    if keymod.file_sha256(archive) != rec.get("sha256"):
        log(f"{archive} does not match its record (damaged): rebuilding")
        return None
    return rec


def archive_info(archive: Path) -> tuple[list[str], str]:
    """RepoTags and image id (config digest) from a docker-archive's manifest.json."""
    with tarfile.open(archive) as t:
        member = t.extractfile("manifest.json")
        if member is None:
            raise TestbedError(f"{archive} has no manifest.json: not a docker-archive")
        manifest = json.load(member)
    entry = manifest[0]
    cfg = entry["Config"].split("/")[-1].removesuffix(".json")
    return list(entry.get("RepoTags") or []), f"sha256:{cfg.removeprefix('sha256:')}"


def _publish(tmp_archive: Path, archive: Path, record_path: Path, record: dict) -> dict:
    refs, image_id = archive_info(tmp_archive)
    record.update({"refs": refs, "image_id": image_id, "size": tmp_archive.stat().st_size,
                   "sha256": keymod.file_sha256(tmp_archive), "archive": archive.name})
    archive.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp_archive, archive)
    tmp_rec = record_path.with_suffix(".json.tmp")
    tmp_rec.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_rec, record_path)
    # older keys of the same image (same recipe, or same ref for static images) are superseded
    for other in archive.parent.glob("*.json"):
        if other.stem == archive.stem:
            continue
        try:
            same = json.loads(other.read_text()).get("name") == record.get("name")
        except (OSError, ValueError):
            same = True
        if same:
            other.with_suffix(".tar").unlink(missing_ok=True)
            other.unlink(missing_ok=True)
    return record


def _built(r: Recipe, key: str, rec: dict, built: bool) -> Built:
    archive, dummy = _paths_for(r.name, key)
    return Built(r.name, list(r.refs), archive, key, built, rec.get("image_id", ""), rec)


def cached(name: str) -> Built | None:
    r = recipes.get(name)
    k = keys(name)[name]
    archive, record_path = _paths_for(name, k)
    rec = _valid(archive, record_path, k)
    return _built(r, k, rec, False) if rec else None


# build --------------------------------------------------------------------------------------------
def _build_tag(name: str, key: str) -> str:
    return f"localhost/datalab/{name}:{key[:20]}"


def ensure(name: str) -> Built:
    """The image of recipe `name` (and its bases), built if its archive is missing or damaged."""
    ks = keys(name)
    r = recipes.get(name)
    archive, record_path = _paths_for(name, ks[name])
    rec = _valid(archive, record_path, ks[name])
    if rec:
        return _built(r, ks[name], rec, False)
    _tools_ready()
    with _lock():
        rec = _valid(archive, record_path, ks[name])  # another process may have built it meanwhile
        if rec:
            return _built(r, ks[name], rec, False)
        base = ensure(r.base) if r.base else None
        return _build(r, ks[name], base)


def _fresh_store() -> Store:
    """The build store, without what an interrupted build left (containers, work directories)."""
    st = store()
    st.prepare()
    st.clean_containers()
    for d in images_dir().glob(".build-*"):
        shutil.rmtree(d, ignore_errors=True)
    return st


def _build(r: Recipe, key: str, base: Built | None) -> Built:
    st = _fresh_store()
    t0 = time.monotonic()
    log(f"building image {r.name} ({', '.join(r.refs)}), key {key[:12]}")
    archive, record_path = _paths_for(r.name, key)
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".build-{r.name}-", dir=images_dir()))
    try:
        if base is not None:
            base_tag = _build_tag(base.name, base.key)
            if st.image_id(base_tag) is None:
                st.load_archive(base.archive, base_tag)
            ctr = st.from_(base_tag, f"datalab-{r.name}")
        else:
            ctr = st.from_("scratch", f"datalab-{r.name}")
        mnt = st.mount(ctr)
        try:
            if base is None:
                steps.debian_root(r, mnt)
            elif r.debs:
                steps.install_debs(st, ctr, mnt, r, tmp)
            if r.pip:
                steps.install_pip(st, ctr, mnt, r)
            if r.npm:
                steps.install_npm(mnt, r)
            if r.maven:
                steps.install_maven(mnt, r, tmp)
            if r.files:
                steps.copy_files(mnt, r)
            for cmd in r.run:
                st.run(ctr, ["sh", "-c", cmd], what=f"`{cmd}` in {r.name}")
            versions = _deb_versions(mnt)
        finally:
            steps.unmount_below(mnt)
            st.umount(ctr)
        st.config(ctr, steps.config_args(r))
        tag = _build_tag(r.name, key)
        st.commit(ctr, tag)
        tmp_archive = tmp / "image.tar"
        st.push_archive(tag, tmp_archive, list(r.refs))
        stale = [t for t in st.tags(f"localhost/datalab/{r.name}:") if t != tag]
        st.remove_images(stale)
        rec = _publish(tmp_archive, archive, record_path, {
            "name": r.name, "key": key, "base": base.key if base else None, "built_at": time.time(),
            "build_seconds": round(time.monotonic() - t0, 1), "debian_packages": versions})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"image {r.name} built in {time.monotonic() - t0:.1f}s: {archive} ({rec['size'] / 1e6:.0f} MB)")
    return _built(r, key, rec, True)


def _deb_versions(rootfs: Path) -> dict[str, str]:
    out, pkg = {}, None
    try:
        text = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        if line.startswith("Package: "):
            pkg = line[9:].strip()
        elif line.startswith("Version: ") and pkg:
            out[pkg] = line[9:].strip()
    return out


def build_static(ref: str, files: dict[str, Path], entrypoint: list[str], env: dict | None = None) -> Path:
    """A scratch image holding `files` (destination in the image -> host file), e.g. a static
    binary, plus /tmp and a two-line /etc/passwd and /etc/group (root, nobody) unless given;
    cached by content.  Returns the docker-archive."""
    tools, builder = keymod.tool_versions(), keymod.builder_version()
    digests = {dest: keymod.tree_digest(Path(src)) for dest, src in files.items()}
    k = keymod.static_key(ref, digests, entrypoint, env, tools=tools, builder=builder)
    archive, record_path = _paths_for("static", k)
    if _valid(archive, record_path, k):
        return archive
    _tools_ready()
    with _lock():
        if _valid(archive, record_path, k):
            return archive
        t0 = time.monotonic()
        st = _fresh_store()
        tmp = Path(tempfile.mkdtemp(prefix=".build-static-", dir=images_dir()))
        try:
            ctr = st.from_("scratch", "datalab-static")
            mnt = st.mount(ctr)
            try:
                for dest, src in files.items():
                    steps.place(Path(src), mnt, dest)
                steps.scratch_basics(mnt)
            finally:
                st.umount(ctr)
            args = ["--os", "linux", "--arch", "amd64", "--entrypoint", json.dumps(list(entrypoint))]
            for kk, v in (env or {}).items():
                args += ["--env", f"{kk}={v}"]
            st.config(ctr, args)
            tag = f"localhost/datalab/static:{k[:20]}"
            st.commit(ctr, tag)
            tmp_archive = tmp / "image.tar"
            st.push_archive(tag, tmp_archive, [ref])
            st.remove_images([tag])
            _publish(tmp_archive, archive, record_path, {"name": ref, "key": k, "built_at": time.time(),
                                                         "build_seconds": round(time.monotonic() - t0, 1)})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log(f"static image {ref} built in {time.monotonic() - t0:.1f}s")
    return archive


# containerd -----------------------------------------------------------------------------------------
def normalize(ref: str) -> str:
    """containerd's name for a reference (docker.io defaults, :latest)."""
    name, tag = ref, ""
    if "@" in name:
        name, tag = name.split("@", 1)
        tag = "@" + tag
    elif re.search(r":[^/]+$", name):
        name, tag = name.rsplit(":", 1)
        tag = ":" + tag
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        name = "docker.io/" + (name if "/" in name else "library/" + name)
    return name + (tag or ":latest")


def _ctr(address: str, *args: str, what: str) -> str:
    hostpkgs.ensure({"containerd": "ctr"}, "importing images into containerd")
    argv = ["ctr", "--address", address, "--namespace", "k8s.io", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                          env={**os.environ, **NO_NET_ENV})
    if proc.returncode != 0:
        raise TestbedError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{proc.stderr.strip()}")
    return proc.stdout


def present(address: str) -> dict[str, dict[str, str]]:
    """Images in containerd's k8s.io namespace: name -> labels."""
    out = {}
    lines = _ctr(address, "images", "ls", what="listing containerd images").splitlines()
    for line in lines[1:]:
        cols = line.split()
        if not cols:
            continue
        labels = {}
        if cols[-1] != "-":
            for kv in cols[-1].split(","):
                k, dummy, v = kv.partition("=")
                labels[k] = v
        out[cols[0]] = labels
    return out


def missing(address: str, refs: list[str]) -> list[str]:
    """The refs that containerd at `address` does not have (namespace k8s.io)."""
    have = present(address)
    return [r for r in refs if normalize(r) not in have]


def import_into(address: str, archives: list) -> None:
    """Import archives (paths or Built) under their refs; skip those already there with the same id."""
    have = present(address)
    for item in archives:
        archive = Path(item.archive if isinstance(item, Built) else item)
        rec_path = archive.with_suffix(".json")
        try:
            rec = json.loads(rec_path.read_text())
            refs, image_id = rec["refs"], rec["image_id"]
        except (OSError, ValueError, KeyError):
            refs, image_id = archive_info(archive)
        if refs and all(have.get(normalize(r), {}).get(LABEL) == image_id for r in refs):
            continue
        t0 = time.monotonic()
        _ctr(address, "images", "import", str(archive), what=f"importing {archive}")
        for r in refs:
            _ctr(address, "images", "label", normalize(r), f"{LABEL}={image_id}", what=f"labelling {r}")
        log(f"imported {', '.join(refs)} in {time.monotonic() - t0:.1f}s")
