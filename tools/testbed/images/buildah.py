"""Debian's buildah and skopeo on a private store under the cache directory.

Nothing touches /var/lib/containers or /etc/containers: storage.conf and registries.conf are
our own files, and no registry is ever configured.  `run()` always passes `--network none`
(runc, an empty network namespace): buildah's default network would leave a cni-podman0
bridge, iptables chains and ip_forward=1 behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..procs import TestbedError

# pulls (there are none) would fail locally instead of reaching anything
NO_NET_ENV = {k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}


def log(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


def hidden_system_store(argv: list[str]) -> list[str]:
    """`argv` in a private mount namespace with an empty tmpfs over /var/lib/containers (or /var/lib
    when that does not exist): image copies (commit, skopeo copy) as root always write a blob-info
    cache to /var/lib/containers/cache, and no flag moves it.  Not for `buildah mount`, whose
    mount must outlive the command."""
    hide = "/var/lib/containers" if os.path.isdir("/var/lib/containers") else "/var/lib"
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount -t tmpfs -o size=16m,mode=0700 datalab-images "$0" && exec "$@"', hide, *argv]


class Store:
    def __init__(self, root: Path):
        self.root = root
        self.graph = root / "storage"
        self.runroot = root / "run"
        self.conf = root / "storage.conf"
        self.registries = root / "registries.conf"

    def prepare(self) -> None:
        self.graph.mkdir(parents=True, exist_ok=True)
        self.runroot.mkdir(parents=True, exist_ok=True)
        conf = f'[storage]\ndriver = "overlay"\ngraphroot = "{self.graph}"\nrunroot = "{self.runroot}"\n'
        if not self.conf.is_file() or self.conf.read_text() != conf:
            self.conf.write_text(conf)
        regs = "unqualified-search-registries = []\n"
        if not self.registries.is_file() or self.registries.read_text() != regs:
            self.registries.write_text(regs)

    @property
    def env(self) -> dict:
        return {**os.environ, **NO_NET_ENV, "CONTAINERS_STORAGE_CONF": str(self.conf),
                "CONTAINERS_REGISTRIES_CONF": str(self.registries), "BUILDAH_ISOLATION": "oci",
                "TMPDIR": str(self.root / "tmp")}

    def transport(self, ref: str) -> str:
        return f"containers-storage:[overlay@{self.graph}+{self.runroot}]{ref}"

    def _run(self, argv: list[str], what: str, capture: bool = True) -> str:
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(argv, env=self.env, text=True, check=False, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        if proc.returncode != 0:
            tail = "\n".join(((proc.stdout or "") + proc.stderr).splitlines()[-25:])
            raise TestbedError(f"{what} failed (exit {proc.returncode}): {' '.join(argv[:4])} ...\n{tail}")
        return proc.stdout or ""

    def argv(self, *args: str) -> list[str]:
        return ["buildah", "--root", str(self.graph), "--runroot", str(self.runroot), "--storage-driver", "overlay",
                *args]

    def buildah(self, *args: str, what: str = "buildah") -> str:
        return self._run(self.argv(*args), what)

    def _try(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True, check=False)

    def _images(self) -> list[dict]:
        proc = self._try("images", "--json")
        return (json.loads(proc.stdout or "[]") or []) if proc.returncode == 0 else []

    # containers -------------------------------------------------------------------------------
    def clean_containers(self) -> None:
        """Working containers left by an interrupted build."""
        self.buildah("rm", "--all", what="buildah rm --all")

    def from_(self, image: str, name: str) -> str:
        return self.buildah("from", "--pull=never", "--quiet", "--name", name, image,
                            what=f"buildah from {image}").strip()

    def mount(self, ctr: str) -> Path:
        return Path(self.buildah("mount", ctr, what="buildah mount").strip())

    def umount(self, ctr: str) -> None:
        self.buildah("umount", ctr, what="buildah umount")

    def run(self, ctr: str, argv: list[str], volumes: list[tuple[Path, str]] = (), env: dict | None = None,
            what: str = "a command in the image") -> None:
        args = ["run", "--network", "none", "--isolation", "oci"]
        for host, inside in volumes:
            args += ["--volume", f"{host}:{inside}:ro"]
        for k, v in (env or {}).items():
            args += ["--env", f"{k}={v}"]
        self.buildah(*args, ctr, "--", *argv, what=what)

    def config(self, ctr: str, args: list[str]) -> None:
        if args:
            self.buildah("config", *args, ctr, what="buildah config")

    def commit(self, ctr: str, tag: str) -> str:
        return self._run(hidden_system_store(self.argv("commit", "--quiet", "--format", "docker", "--rm", ctr, tag)),
                         "buildah commit").strip()

    # images -----------------------------------------------------------------------------------
    def image_id(self, ref: str) -> str | None:
        want = ref if "/" in ref.split(":")[0] else f"localhost/{ref}"
        return next((img["id"] for img in self._images() if want in (img.get("names") or [])), None)

    def load_archive(self, archive: Path, tag: str) -> None:
        """A base image back into the store from its archive (a local file, no registry)."""
        self._run(hidden_system_store(["skopeo", "copy", "--quiet", f"docker-archive:{archive}", self.transport(tag)]),
                  f"loading {archive.name} into the build store")

    def remove_images(self, tags: list[str]) -> None:
        if tags:
            self._try("rmi", "--force", *tags)

    def tags(self, prefix: str) -> list[str]:
        return [n for img in self._images() for n in (img.get("names") or []) if n.startswith(prefix)]

    def push_archive(self, tag: str, out: Path, refs: list[str]) -> None:
        """docker-archive with every ref in RepoTags (what `ctr images import` names the images)."""
        out.unlink(missing_ok=True)
        argv = ["skopeo", "copy", "--quiet", self.transport(tag), f"docker-archive:{out}:{refs[0]}"]
        for r in refs[1:]:
            argv += ["--additional-tag", r]
        t0 = time.monotonic()
        self._run(hidden_system_store(argv), f"writing {out.name}")
        log(f"archive {out.name} written in {time.monotonic() - t0:.1f}s")
