"""MinIO server and `mc`, built from the Go module proxy at test time, for the real node's images.

Both are AGPL-3.0: their code is fetched by Go into its own module cache and compiled in a
throw-away wrapper module (as `build.py` does for etcd); nothing of theirs enters this repository.
The module proxy serves them only as pseudo-versions.  The binaries are cached like the test bed's
other binaries, under `<cache>/bin/<name>-<pseudo-version>/`, and checked with `--version` before
use (the commit id stamped at link time must be in the answer); a failing check rebuilds.

`minio_binary()` and `mc_binary()` are the image recipes' local inputs (`py:` sources in
tools/testbed/images/recipes.py).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from . import build
from .build import Binary, log

MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
MC_MODULE = "github.com/minio/mc"
MC_VERSION = "v0.0.0-20250313080218-cf909e1063a9"


def _commit(pseudo: str) -> str:
    """The 12-hex commit of a pseudo-version (`v0.0.0-<time>-<commit>`)."""
    return pseudo.rsplit("-", 1)[-1]


MODULES = {"minio": (MINIO_MODULE, MINIO_VERSION), "mc": (MC_MODULE, MC_VERSION)}
BINARIES = {name: Binary(name, name, ver, ("--version",), f"commit-id={_commit(ver)}")
            for name, (_mod, ver) in MODULES.items()}


def ldflags(module: str, version: str) -> str:
    # Both print `<name> version DEVELOPMENT.GOGET (commit-id=<CommitID>)`; the commit makes the
    # cached binary's answer name the pseudo-version it was built from.
    return f"-s -w -X {module}/cmd.CommitID={_commit(version)}"


def _build(name: str, tmp: Path) -> None:
    module, version = MODULES[name]
    g = build.go()
    d = build._wrapper(tmp, name)  # noqa: SLF001 - the test bed's own wrapper-module helper
    log(f"building {module}@{version} (AGPL: fetched into Go's module cache, compiled in {d})")
    build._run([g, "get", f"{module}@{version}"], d, f"{name} (go get)")  # noqa: SLF001
    out = d / name
    build._run([g, "build", "-trimpath", "-ldflags", ldflags(module, version), "-o", str(out), module],  # noqa: SLF001
               d, name)
    build._install_to(BINARIES[name].path.parent, {name: out})  # noqa: SLF001


def ensure(name: str) -> Path:
    """The binary, built if its cached copy is missing or does not answer `--version` as expected."""
    b = BINARIES[name]
    if not build.works(b):
        with tempfile.TemporaryDirectory(prefix=f"datalab-build-{name}-") as tmp:
            _build(name, Path(tmp))
        if not build.works(b):
            from .procs import TestbedError  # noqa: PLC0415
            raise TestbedError(f"{b.path} does not report {b.expect!r} after building; remove {b.path.parent}")
    return b.path


def minio_binary() -> Path:
    return ensure("minio")


def mc_binary() -> Path:
    return ensure("mc")
