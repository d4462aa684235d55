"""The steps that fill an image's root filesystem.

Everything from a registry is fetched on the host with that registry's own client, into download
caches that only mirror the registry (a fresh DATALAB_CACHE re-downloads nothing):
`<downloads>/apt` (.deb files), `<downloads>/pip/<key>` (wheels), npm's and Maven's own caches.
Inside the image things are installed offline (`buildah run --network none`): pip inside a
chroot cannot verify TLS on this kind of machine, and an image build must not need the network.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from .. import hostpkgs
from ..procs import TestbedError
from . import key as keymod
from .buildah import Store, log
from .recipes import Maven, Recipe


def downloads_dir() -> Path:
    base = os.environ.get("DATALAB_DOWNLOADS") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "datalab-downloads")
    return Path(base)


def _run(argv: list[str], what: str, cwd: Path | None = None, env: dict | None = None, hint: str = "") -> str:
    proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, text=True, check=False,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise TestbedError(f"{what} failed (exit {proc.returncode}): {' '.join(argv[:5])} ...\n{tail}"
                           + (f"\n({hint})" if hint else ""))
    return proc.stdout


def unmount_below(root: Path) -> None:
    """Mounts a failed step left inside the root filesystem (deepest first)."""
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    prefix = str(root).rstrip("/") + "/"
    for m in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True, check=False)


# Debian -----------------------------------------------------------------------------------------
SLIM = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/locale/*",
        "path-include=/usr/share/locale/locale.alias", "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/info/*")


APT_LISTS = Path("/var/lib/apt/lists")


def mmdebstrap_argv(recipe: Recipe, target: Path, apt_cache: Path, sources: list[Path]) -> list[str]:
    argv = ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory", "--skip=essential/unlink",
            "--aptopt=APT::Install-Recommends \"false\"", "--dpkgopt=force-unsafe-io",
            # the host's package lists, not a fresh `apt-get update`: the same archive state that the
            # cache key records and that resolves the packages of layered images (and no index download)
            "--skip=update", "--aptopt=Acquire::GzipIndexes \"true\"",
            f"--setup-hook=mkdir -p \"$1/var/lib/apt/lists\" && "
            f"cp -p {APT_LISTS}/*_InRelease {APT_LISTS}/*_Packages* \"$1/var/lib/apt/lists/\"",
            # the .debs land in (and come from) the host's download cache, never in the image
            f"--setup-hook=mkdir -p \"$1/var/cache/apt/archives\" && "
            f"mount --bind {apt_cache} \"$1/var/cache/apt/archives\"",
            "--customize-hook=umount \"$1/var/cache/apt/archives\"",
            # the host's resolver and name are not the image's
            "--customize-hook=: > \"$1/etc/resolv.conf\"; echo localhost > \"$1/etc/hostname\""]
    if recipe.slim:
        argv += [f"--dpkgopt={o}" for o in SLIM]
        # update-alternatives (openjdk's postinst) links man pages and fails without the directories
        argv.append("--customize-hook=mkdir -p " + " ".join(f'"$1/usr/share/man/man{i}"' for i in range(1, 9)))
    if recipe.debs:
        argv.append("--include=" + ",".join(recipe.debs))
    return argv + [recipe.suite, str(target), *map(str, sources)]


def debian_root(recipe: Recipe, target: Path) -> None:
    hostpkgs.ensure({"mmdebstrap": "mmdebstrap"}, "building the test bed's Debian images")
    sources = keymod.apt_sources_files()
    if not sources:
        raise TestbedError("no apt sources on this machine (/etc/apt/sources.list*): mmdebstrap needs a Debian mirror")
    host_lists()
    apt_cache = downloads_dir() / "apt"
    (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        _run(mmdebstrap_argv(recipe, target, apt_cache, sources), f"mmdebstrap {recipe.suite} for {recipe.name}",
             hint=STALE_LISTS)
    finally:
        unmount_below(target)
    log(f"{recipe.name}: Debian {recipe.suite} root with {len(recipe.debs)} packages in {time.monotonic() - t0:.1f}s")


STALE_LISTS = ("if a package download failed (404), the host's package lists are older than the mirror: "
               "`apt-get update` (the images are then rebuilt: the lists' dates are in the cache key)")


def host_lists() -> None:
    """The host's apt lists, which resolve every Debian package of every image."""
    if not any(APT_LISTS.glob("*_InRelease")) or not any(APT_LISTS.glob("*_Packages*")):
        _run(["apt-get", "update", "-q"], "apt-get update (the host has no package lists)")


INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) .*\[([^\]]+)\]\)", re.M)


def deb_filename(name: str, version: str, arch: str) -> str:
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


def parse_simulation(out: str) -> list[tuple[str, str, str]]:
    return INST.findall(out)


def _host_apt(rootfs: Path, apt_cache: Path) -> list[str]:
    return ["apt-get", "-q", "-o", f"Dir::State::status={rootfs}/var/lib/dpkg/status",
            "-o", f"Dir::Cache::archives={apt_cache}", "-o", "APT::Install-Recommends=false",
            "-o", "Debug::NoLocking=1"]


def fetch_debs(packages: tuple[str, ...], rootfs: Path, into: Path) -> int:
    """What apt would add to `rootfs` for `packages`, downloaded by the host's apt (which uses
    the same sources as the root) into the download cache, linked into `into`."""
    host_lists()
    apt_cache = downloads_dir() / "apt"
    (apt_cache / "partial").mkdir(parents=True, exist_ok=True)
    base = _host_apt(rootfs, apt_cache)
    sim = _run([*base, "-s", "install", *packages], f"resolving Debian packages {' '.join(packages)}")
    wanted = parse_simulation(sim)
    if not wanted:
        return 0
    _run([*base, "-y", "--download-only", "install", *packages], f"downloading {' '.join(packages)}",
         hint=STALE_LISTS)
    into.mkdir(parents=True, exist_ok=True)
    for name, version, arch in wanted:
        src = apt_cache / deb_filename(name, version, arch)
        if not src.is_file():
            raise TestbedError(f"apt reported {name} {version} but {src} is not in the download cache")
        try:
            os.link(src, into / src.name)
        except OSError:
            shutil.copy2(src, into / src.name)
    return len(wanted)


def install_debs(store: Store, ctr: str, rootfs: Path, recipe: Recipe, tmp: Path) -> None:
    t0 = time.monotonic()
    debs = tmp / "debs"
    n = fetch_debs(recipe.debs, rootfs, debs)
    if n:
        store.run(ctr, ["sh", "-c", "apt-get install -y -q --no-install-recommends /tmp/datalab-debs/*.deb "
                        "&& rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb"],
                  volumes=[(debs, "/tmp/datalab-debs")], env={"DEBIAN_FRONTEND": "noninteractive"},
                  what=f"installing {' '.join(recipe.debs)} into {recipe.name}")
    log(f"{recipe.name}: {n} Debian packages added in {time.monotonic() - t0:.1f}s")


# pip ---------------------------------------------------------------------------------------------
# glibc of Debian bookworm.  With an explicit --platform pip accepts exactly the tags given (it
# does not add the older manylinux levels a glibc 2.36 system runs), so every level is listed.
GLIBC_MINOR = 36


def wheel_platforms(glibc_minor: int = GLIBC_MINOR, arch: str = "x86_64") -> list[str]:
    """The manylinux tags a system with glibc 2.<glibc_minor> runs, newest first (PEP 600 plus the
    legacy aliases manylinux2014/2010/1 for 2.17/2.12/2.5)."""
    out = [f"manylinux_2_{m}_{arch}" for m in range(glibc_minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return out + [f"{name}_{arch}" for m, name in legacy.items() if m <= glibc_minor]


def pip_download_argv(recipe: Recipe, dest: Path) -> list[str]:
    py = recipe.python_version.replace(".", "")
    platforms = [a for p in wheel_platforms() for a in ("--platform", p)]
    return [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest), "--only-binary=:all:",
            "--python-version", recipe.python_version, "--implementation", "cp", "--abi", f"cp{py}",
            *platforms, *recipe.pip]


def pip_wheel_argv(recipe: Recipe, dest: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-binary=:all:", "--wheel-dir",
            str(dest), *recipe.pip_sdist]


def check_pure(wheels: list[Path], recipe: Recipe) -> None:
    """Wheels built on the host go into the image only when they hold no compiled code."""
    bad = [w.name for w in wheels if not w.name.endswith("-none-any.whl")]
    if bad:
        raise TestbedError(f"image {recipe.name}: {', '.join(bad)} built from source on the host "
                           f"contain compiled code for the host's python, not the image's: "
                           f"use a package with a binary wheel instead")


def fetch_wheels(recipe: Recipe) -> Path:
    """Wheels for the image's python, downloaded once per requirement set (content-keyed dir).
    `pip_sdist` requirements are built first into pure-Python wheels, which then satisfy the
    download (also as dependencies of other packages)."""
    d = downloads_dir() / "pip" / keymod.digest({"pip": list(recipe.pip), "py": recipe.python_version,
                                                 **({"sdist": list(recipe.pip_sdist)} if recipe.pip_sdist else {})})[:24]
    if (d / ".complete").is_file():
        return d
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=d.parent))
    t0 = time.monotonic()
    argv = pip_download_argv(recipe, tmp)
    if recipe.pip_sdist:
        _run(pip_wheel_argv(recipe, tmp), f"pip wheel (from source) for {recipe.name}")
        check_pure(list(tmp.glob("*.whl")), recipe)
        argv[argv.index("--dest"):argv.index("--dest")] = ["--find-links", str(tmp)]
    _run(argv, f"pip download for {recipe.name}")
    (tmp / ".complete").write_text("")
    shutil.rmtree(d, ignore_errors=True)
    os.replace(tmp, d)
    log(f"{recipe.name}: {len(list(d.glob('*.whl')))} wheels downloaded in {time.monotonic() - t0:.1f}s")
    return d


def install_pip(store: Store, ctr: str, rootfs: Path, recipe: Recipe) -> None:
    wheels = fetch_wheels(recipe)
    t0 = time.monotonic()
    if not (rootfs / recipe.pip_venv.lstrip("/") / "bin" / "python").exists():
        store.run(ctr, ["python3", "-m", "venv", recipe.pip_venv], what=f"creating {recipe.pip_venv}")
    store.run(ctr, [f"{recipe.pip_venv}/bin/pip", "install", "--quiet", "--no-index", "--no-cache-dir",
                    "--disable-pip-version-check", "--find-links", "/tmp/datalab-wheels", *recipe.pip],
              volumes=[(wheels, "/tmp/datalab-wheels")], what=f"pip install (offline) into {recipe.name}")
    log(f"{recipe.name}: pip install into {recipe.pip_venv} in {time.monotonic() - t0:.1f}s")


# npm ---------------------------------------------------------------------------------------------
def install_npm(rootfs: Path, recipe: Recipe) -> None:
    hostpkgs.ensure({"npm": "npm"}, f"the npm packages of image {recipe.name}")
    prefix = rootfs / recipe.npm_prefix.lstrip("/")
    prefix.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    _run(["npm", "install", "--prefix", str(prefix), "--omit=dev", "--no-audit", "--no-fund",
          "--no-update-notifier", *recipe.npm], f"npm install for {recipe.name}")
    log(f"{recipe.name}: npm packages into {recipe.npm_prefix} in {time.monotonic() - t0:.1f}s")


# Maven -------------------------------------------------------------------------------------------
def _strip_top(names: list[str]) -> str:
    tops = {n.split("/", 1)[0] for n in names if n.strip("/")}
    return (tops.pop() + "/") if len(tops) == 1 and any("/" in n.strip("/") for n in names) else ""


def _safe(dest: Path, rel: str) -> Path:
    out = (dest / rel).resolve()
    if not str(out).startswith(str(dest.resolve())):
        raise TestbedError(f"archive member {rel!r} escapes {dest}")
    return out


def unpack(archive: Path, dest: Path) -> None:
    """A zip or tar.gz into `dest` without its single top-level directory."""
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            top = _strip_top(z.namelist())
            for info in z.infolist():
                rel = info.filename[len(top):] if info.filename.startswith(top) else info.filename
                if not rel:
                    continue
                out = _safe(dest, rel)
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                mode = (info.external_attr >> 16) & 0o7777
                if mode:
                    os.chmod(out, mode)
        return
    with tarfile.open(archive) as t:
        members = t.getmembers()
        top = _strip_top([m.name for m in members])
        for m in members:
            if top and m.name.startswith(top):
                m.name = m.name[len(top):]
            if not m.name or m.name == ".":
                continue
            _safe(dest, m.name)
            t.extract(m, dest, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))


def install_maven(rootfs: Path, recipe: Recipe, tmp: Path) -> None:
    hostpkgs.ensure({"maven": "mvn"}, f"the Maven artifacts of image {recipe.name}")
    for i, art in enumerate(recipe.maven):
        out = tmp / f"mvn-{i}"
        out.mkdir(parents=True)
        t0 = time.monotonic()
        _run(["mvn", "-q", "-B", "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy",
              f"-Dartifact={art.coords}", f"-DoutputDirectory={out}", "-Dmdep.useBaseVersion=true"],
             f"mvn dependency:copy {art.coords}", cwd=tmp)
        got = [p for p in out.iterdir() if p.is_file()]
        if len(got) != 1:
            raise TestbedError(f"mvn dependency:copy {art.coords} left {len(got)} files in {out}, expected 1")
        place_maven(got[0], rootfs, art)
        log(f"{recipe.name}: {art.coords} -> {art.dest} in {time.monotonic() - t0:.1f}s")


def place_maven(file: Path, rootfs: Path, art: Maven) -> None:
    dest = rootfs / art.dest.lstrip("/")
    if art.extract:
        unpack(file, dest)
    else:
        if art.dest.endswith("/"):
            dest = dest / file.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, dest)


# local files -------------------------------------------------------------------------------------
def copy_files(rootfs: Path, recipe: Recipe) -> None:
    for src, dest in recipe.files:
        place(keymod.source_path(src), rootfs, dest)


def place(src: Path, rootfs: Path, dest: str) -> None:
    target = rootfs / dest.lstrip("/")
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
        return
    if dest.endswith("/"):
        target = target / src.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    shutil.copy2(src, target, follow_symlinks=False)


def scratch_basics(rootfs: Path) -> None:
    """What a process in a scratch image may expect: /tmp, and user and group names for 0 and 65534."""
    (rootfs / "tmp").mkdir(mode=0o1777, exist_ok=True)
    os.chmod(rootfs / "tmp", 0o1777)
    (rootfs / "etc").mkdir(exist_ok=True)
    for name, text in (("passwd", "root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/:/nonexistent\n"),
                       ("group", "root:x:0:\nnogroup:x:65534:\n")):
        if not (rootfs / "etc" / name).exists():
            (rootfs / "etc" / name).write_text(text)


# image config ------------------------------------------------------------------------------------
def config_args(recipe: Recipe) -> list[str]:
    args: list[str] = []
    if recipe.base is None:
        args += ["--os", "linux", "--arch", "amd64"]
    for k, v in recipe.env:
        args += ["--env", f"{k}={v}"]
    if recipe.user is not None:
        args += ["--user", recipe.user]
    if recipe.workdir is not None:
        args += ["--workingdir", recipe.workdir]
    if recipe.entrypoint is not None:
        args += ["--entrypoint", json.dumps(list(recipe.entrypoint))]
        # as in a Dockerfile, a new entrypoint drops the base's command unless one is given
        args += ["--cmd", json.dumps(list(recipe.cmd or ()))] if recipe.cmd is not None or recipe.base else []
    if recipe.cmd is not None and recipe.entrypoint is None:
        args += ["--cmd", json.dumps(list(recipe.cmd))]
    for p in recipe.ports:
        args += ["--port", p]
    for k, v in recipe.labels:
        args += ["--label", f"{k}={v}"]
    return args
