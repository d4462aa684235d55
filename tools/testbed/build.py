"""Build the test bed's binaries from upstream source with the Go toolchain, once.

Each binary is cached under `<cache>/bin/<component>-<version>/` and checked with its
own `--version` before use; a missing or wrong answer (a corrupt or partial entry)
triggers a rebuild of that entry only.  Module and build caches are Go's own
(GOMODCACHE, GOCACHE), so a rebuild after a version bump is incremental.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import paths, versions
from .procs import TestbedError


@dataclass(frozen=True)
class Binary:
    name: str
    component: str  # cache key: <component>-<version>
    version: str
    version_args: tuple[str, ...]
    expect: str  # substring of the --version output

    @property
    def path(self) -> Path:
        return paths.cache_dir() / "bin" / f"{self.component}-{self.version}" / self.name


def _k8s(name: str) -> Binary:
    return Binary(name, "kubernetes", versions.KUBERNETES, ("--version",), f"Kubernetes {versions.KUBERNETES}")


BINARIES = {
    "etcd": Binary("etcd", "etcd", versions.ETCD, ("--version",), f"etcd Version: {versions.ETCD.lstrip('v')}"),
    "kube-apiserver": _k8s("kube-apiserver"),
    "kube-controller-manager": _k8s("kube-controller-manager"),
    "kube-scheduler": _k8s("kube-scheduler"),
    # The real node (tools/testbed/node.py): same module, version and ldflags as the control plane.
    "kubelet": _k8s("kubelet"),
    "kube-proxy": _k8s("kube-proxy"),
    "coredns": Binary("coredns", "coredns", versions.COREDNS, ("-version",), f"CoreDNS-{versions.COREDNS.lstrip('v')}"),
    # The sandbox ("pause") process, compiled from build/pause/linux/pause.c of the k8s.io/kubernetes module.
    "pause": Binary("pause", "pause", versions.KUBERNETES, ("-v",), "pause.c"),
    "kwok": Binary("kwok", "kwok", versions.KWOK, ("--version",), versions.KWOK),
    "helm": Binary("helm", "helm", versions.HELM, ("version", "--template", "{{.Version}}"), versions.HELM),
    # The helm-diff plugin's executable; `diff version` prints the bare version (no "v").
    "helm-diff": Binary("diff", "helm-diff", versions.HELM_DIFF, ("version",), versions.HELM_DIFF.lstrip("v")),
}


def log(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


def go() -> str:
    exe = shutil.which("go")
    if not exe:
        raise TestbedError(
            "the Go toolchain is needed to build the test bed (kube-apiserver, etcd, kwok, helm, helm-diff) "
            "and was not found: "
            "install Go >= 1.24 (Debian: `apt-get install golang-go`, or the official tarball into /usr/local/go) "
            "and make sure `go` is on PATH")
    return exe


def works(b: Binary) -> bool:
    if not os.access(b.path, os.X_OK):
        return False
    try:
        out = subprocess.run([str(b.path), *b.version_args], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b.expect in (out.stdout + out.stderr)


def _run(argv: list[str], cwd: Path, what: str, env: dict | None = None) -> str:
    full_env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", **(env or {})}
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=full_env, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise TestbedError(f"building {what} failed ({' '.join(argv[:3])} ...):\n{tail}")
    return proc.stdout


def _wrapper(tmp: Path, name: str) -> Path:
    d = tmp / name
    d.mkdir()
    (d / "go.mod").write_text(f"module example.invalid/datalab-testbed/{name}\n\ngo 1.24.0\n")
    return d


def _install_to(out_dir: Path, produced: dict[str, Path]) -> None:
    """Move freshly built binaries into place atomically (a partial build never looks complete)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, src in produced.items():
        tmp = out_dir / f".{name}.new"
        shutil.copy2(src, tmp)
        os.replace(tmp, out_dir / name)


# Every command built from k8s.io/kubernetes; a build compiles only those whose cached binary fails its check.
KUBERNETES_CMDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
# Modules of the real node that are not built for a control plane alone (DATALAB_TESTBED_REAL_NODE=0).
NODE_BINARIES = ("kubelet", "kube-proxy", "coredns", "pause")
CONTROL_PLANE_BINARIES = tuple(n for n in BINARIES if n not in NODE_BINARIES)


def _module_info(d: Path, module: str, what: str) -> dict:
    """`go mod download -json module` (Dir, GoMod, ...) run in the wrapper module `d`."""
    return json.loads(_run([go(), "mod", "download", "-json", module], d, what))


def build_kubernetes(tmp: Path) -> None:
    ver = versions.KUBERNETES
    minor = ver.split(".")[1]
    staging_ver = "v0." + ".".join(ver.lstrip("v").split(".")[1:])
    g = go()
    d = _wrapper(tmp, "kubernetes")
    info = _module_info(d, f"k8s.io/kubernetes@{ver}", "kubernetes (download)")
    gomod = Path(info["GoMod"]).read_text()
    staged = re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", gomod, re.M)
    if not staged:
        raise TestbedError(f"no staging replaces found in k8s.io/kubernetes@{ver} go.mod; cannot build")
    lines = [f"module example.invalid/datalab-testbed/kubernetes\n\ngo 1.24.0\n\nrequire k8s.io/kubernetes {ver}\n"]
    lines += [f"replace {m} => {m} {staging_ver}" for m in staged]
    (d / "go.mod").write_text("\n".join(lines) + "\n")
    cmds = [c for c in KUBERNETES_CMDS if not works(BINARIES[c])] or list(KUBERNETES_CMDS)
    (d / "tools.go").write_text("//go:build tools\n\npackage tools\n\nimport (\n" +
                                "".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"\n' for c in cmds) + ")\n")
    log(f"resolving k8s.io/kubernetes {ver} modules ({len(staged)} staging modules -> {staging_ver})")
    _run([g, "mod", "tidy"], d, "kubernetes (go mod tidy)")
    x = [f"-X k8s.io/component-base/version.gitVersion={ver}", "-X k8s.io/component-base/version.gitMajor=1",
         f"-X k8s.io/component-base/version.gitMinor={minor}", f"-X k8s.io/client-go/pkg/version.gitVersion={ver}",
         "-X k8s.io/component-base/version.gitTreeState=clean", "-X k8s.io/client-go/pkg/version.gitMajor=1",
         f"-X k8s.io/client-go/pkg/version.gitMinor={minor}"]
    out = d / "out"
    out.mkdir()
    log(f"compiling {', '.join(cmds)} {ver} (a cold build takes several minutes)")
    _run([g, "build", "-trimpath", "-o", str(out) + "/", "-ldflags", "-s -w " + " ".join(x),
          *[f"k8s.io/kubernetes/cmd/{c}" for c in cmds]], d, "kubernetes (go build)")
    _install_to(BINARIES["kube-apiserver"].path.parent, {c: out / c for c in cmds})


def build_pause(tmp: Path) -> None:
    """The sandbox process: pause.c from the k8s.io/kubernetes module zip, `gcc -Os -static` (no Go)."""
    from . import hostpkgs  # noqa: PLC0415 - only this build needs a C compiler
    hostpkgs.ensure({"gcc": "gcc", "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a"}, "building the pause binary")
    d = _wrapper(tmp, "pause")
    src = Path(_module_info(d, f"k8s.io/kubernetes@{versions.KUBERNETES}", "pause (download)")["Dir"])
    src = src / "build" / "pause" / "linux" / "pause.c"
    log(f"compiling {src.name} from k8s.io/kubernetes {versions.KUBERNETES}")
    out = d / "pause"
    _run(["gcc", "-Os", "-static", "-Wall", f"-DVERSION=v{versions.PAUSE}-datalab", "-o", str(out), str(src)],
         d, "pause (gcc)")
    _run(["strip", str(out)], d, "pause (strip)")
    _install_to(BINARIES["pause"].path.parent, {"pause": out})


def build_coredns(tmp: Path) -> None:
    mod, ver = "github.com/coredns/coredns", versions.COREDNS
    g = go()
    d = _wrapper(tmp, "coredns")
    log(f"building {mod}@{ver} (a cold build takes a few minutes: it compiles every bundled plugin)")
    _run([g, "get", f"{mod}@{ver}"], d, "coredns (go get)")
    _run([g, "build", "-trimpath", "-ldflags", f"-s -w -X {mod}/coremain.GitCommit={ver}", "-o", str(d / "coredns"),
          mod], d, "coredns")
    _install_to(BINARIES["coredns"].path.parent, {"coredns": d / "coredns"})


def build_etcd(tmp: Path) -> None:
    g = go()
    d = _wrapper(tmp, "etcd")
    log(f"building etcd {versions.ETCD}")
    _run([g, "get", f"go.etcd.io/etcd/server/v3@{versions.ETCD}"], d, "etcd (go get)")
    _run([g, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(d / "etcd"), "go.etcd.io/etcd/server/v3"], d, "etcd")
    _install_to(BINARIES["etcd"].path.parent, {"etcd": d / "etcd"})


def _go_install(tmp: Path, name: str, pkg: str, ldflags: str = "-s -w") -> None:
    g = go()
    d = _wrapper(tmp, name)
    log(f"building {pkg}")
    _run([g, "install", "-trimpath", "-ldflags", ldflags, pkg], d, name, env={"GOBIN": str(d / "bin"), "GOFLAGS": ""})
    _install_to(BINARIES[name].path.parent, {name: d / "bin" / name})


def build_kwok(tmp: Path) -> None:
    _go_install(tmp, "kwok", f"sigs.k8s.io/kwok/cmd/kwok@{versions.KWOK}")


def build_helm(tmp: Path) -> None:
    _go_install(tmp, "helm", f"helm.sh/helm/v3/cmd/helm@{versions.HELM}",
                f"-s -w -X helm.sh/helm/v3/internal/version.version={versions.HELM}")


# go.sum lines for modules whose checksum-database lookup is refused here (sum.golang.org answers
# 404 for them through this machine's proxy).  Pinned in the wrapper module's go.sum, Go checks the
# download against them and never asks the checksum database.  helm-diff v3.9.14: the module zip's
# files are identical to the upstream git tag v3.9.14 (commit ae426d7ea0cc).  Another version has
# no entry here and goes through the checksum database as usual.
_PINNED_SUMS = {
    ("github.com/databus23/helm-diff/v3", "v3.9.14"): ("h1:pguvdUgk6UQeCL6xXZ2zIWYqbMi3Z0we2xmhAf3+G4g=",
                                                       "h1:63MxVXc1LBw86dQbKqupYkHFXrqv4tiTltyuUydYc2g="),
}


def build_helm_diff(tmp: Path) -> None:
    mod, ver = "github.com/databus23/helm-diff/v3", versions.HELM_DIFF
    g = go()
    d = _wrapper(tmp, "helm-diff")
    sums = _PINNED_SUMS.get((mod, ver))
    if sums:
        (d / "go.sum").write_text(f"{mod} {ver} {sums[0]}\n{mod} {ver}/go.mod {sums[1]}\n")
    log(f"building {mod}@{ver} (the helm diff plugin)")
    _run([g, "get", f"{mod}@{ver}"], d, "helm-diff (go get)")
    # The plugin's own release build stamps cmd.Version with plugin.yaml's version (no "v").
    ldflags = f"-s -w -X {mod}/cmd.Version={ver.lstrip('v')}"
    _run([g, "build", "-trimpath", "-ldflags", ldflags, "-o", str(d / "diff"), mod], d, "helm-diff")
    _install_to(BINARIES["helm-diff"].path.parent, {"diff": d / "diff"})


BUILDERS = {"kubernetes": build_kubernetes, "etcd": build_etcd, "kwok": build_kwok, "helm": build_helm,
            "helm-diff": build_helm_diff, "coredns": build_coredns, "pause": build_pause}


def ensure_binaries(names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Return name -> path of every binary (or of `names`), building only the components whose check fails."""
    wanted = {name: BINARIES[name] for name in (names or BINARIES)}
    missing = sorted({b.component for b in wanted.values() if not works(b)})
    for component in missing:
        with tempfile.TemporaryDirectory(prefix=f"datalab-build-{component}-") as tmp:
            BUILDERS[component](Path(tmp))
    broken = [b for b in wanted.values() if not works(b)]
    if broken:
        b = broken[0]
        raise TestbedError(f"{b.name} at {b.path} does not report {b.expect!r} after building; "
                           f"remove {b.path.parent} and retry")
    return {name: b.path for name, b in wanted.items()}


def kwok_stage_dir() -> Path:
    """KWOK's own stage definitions, read from the Go module cache (never copied into the repo)."""
    with tempfile.TemporaryDirectory(prefix="datalab-kwok-") as tmp:
        d = _wrapper(Path(tmp), "kwokstages")
        info = _module_info(d, f"sigs.k8s.io/kwok@{versions.KWOK}", "kwok stages")
    return Path(info["Dir"]) / "kustomize" / "stage"
