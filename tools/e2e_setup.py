"""Install and cache everything the end-to-end tests need, outside the repository.

    python -m tools.e2e_setup            # install what is missing (idempotent), report on stderr
    python -m tools.e2e_setup paths      # the same, then print the paths as JSON on stdout
    python -m tools.e2e_setup run [ARGS] # the same, then run `pytest -m e2e tests/e2e ARGS`
                                         # with the e2e venv's interpreter (what `make e2e` calls)

What it installs, each step skipped when its result is already there:
- Debian `chromium` and `libnss3-tools` (certutil) with apt-get (root only); no tool is
  ever allowed to download a browser of its own;
- three venvs under `~/.cache/datalab-notebooks/e2e/`, each named after a hash of the
  requirements file it was built from (`tests/e2e/requirements-*.txt`), so editing a file
  builds a new venv and a rerun reuses the old one: `runner` (pytest, playwright, boto3,
  pandas, pyarrow), `hub50` (what the Z2JH 4.4.0 hub image ships) and `hub-current` (for
  tests/integration/test_jupyterhub_driver_hook.py: the driver-Service snippet on both KubeSpawners).
Spark runs in the pods (the notebook image, the executor image): nothing of it on the host.
The main venv stays lean: none of this goes there.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.testbed.paths import cache_dir  # noqa: E402

REQS = REPO / "tests" / "e2e"
VENVS = {  # name -> requirements file
    "runner": REQS / "requirements-runner.txt",
    "hub50": REQS / "requirements-hub50.txt",
    "hub-current": REQS / "requirements-hub-current.txt",
}
CHROMIUM = Path("/usr/bin/chromium")
CERTUTIL = Path("/usr/bin/certutil")
APT_PACKAGES = ["chromium", "libnss3-tools", "fonts-liberation"]


class SetupError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"e2e-setup: {msg}", file=sys.stderr, flush=True)


def e2e_cache() -> Path:
    return cache_dir() / "e2e"


def _run(argv: list[str], what: str, **kw) -> None:
    log(f"{what}: {' '.join(argv)}")
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False, **kw)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise SetupError(f"{what} failed (exit {proc.returncode}):\n{tail}")


@contextlib.contextmanager
def _lock():
    """One set-up at a time per cache (two test sessions may start together)."""
    e2e_cache().mkdir(parents=True, exist_ok=True)
    with open(e2e_cache() / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- Debian packages --------------------------------------------------------------
def ensure_apt() -> None:
    missing = [p for p, present in (("chromium", CHROMIUM.exists()), ("libnss3-tools", CERTUTIL.exists()),
                                    ("fonts-liberation", Path("/usr/share/fonts/truetype/liberation").is_dir()))
               if not present]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SetupError(f"Debian packages missing: {' '.join(missing)}; as root run: "
                         f"apt-get update && apt-get install -y {' '.join(APT_PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update"], "apt index", env=env)
    _run(["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES], "apt install", env=env)
    if not CHROMIUM.exists() or not CERTUTIL.exists():
        raise SetupError("apt-get reported success but /usr/bin/chromium or /usr/bin/certutil is missing")


# --- venvs --------------------------------------------------------------------------
def _key(path: Path) -> str:
    h = hashlib.sha256(path.read_bytes())
    h.update(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    return h.hexdigest()[:12]


def venv_dir(name: str) -> Path:
    return e2e_cache() / f"venv-{name}-{_key(VENVS[name])}"


def _base_python() -> str:
    # A venv made from inside another venv is still based on the real interpreter.
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_venv(name: str) -> Path:
    target = venv_dir(name)
    stamp = target / ".datalab-complete"
    if stamp.exists():
        return target
    if target.exists():
        log(f"venv {target.name} is incomplete (an interrupted install): rebuilding it")
        shutil.rmtree(target)
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    _run([_base_python(), "-m", "venv", str(tmp)], f"create venv {name}")
    py = str(tmp / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], f"upgrade pip in {name}")
    _run([py, "-m", "pip", "install", "-q", "-r", str(VENVS[name])], f"install {VENVS[name].name}")
    # venv scripts carry the interpreter path in their shebang: fix them after the rename.
    tmp.rename(target)
    for script in (target / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            try:
                text = script.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            if str(tmp) in text:
                script.write_text(text.replace(str(tmp), str(target)))
    for cfg in (target / "pyvenv.cfg",):
        cfg.write_text(cfg.read_text().replace(str(tmp), str(target)))
    stamp.write_text(VENVS[name].read_text())
    _prune(name, keep=target)
    return target


def _prune(name: str, keep: Path) -> None:
    """Old venvs of the same name (an edited requirements file) are removed."""
    for old in e2e_cache().glob(f"venv-{name}-*"):
        if old != keep and not old.name.endswith(".partial"):
            log(f"removing outdated venv {old.name}")
            shutil.rmtree(old, ignore_errors=True)


# --- all ---------------------------------------------------------------------------------
def ensure() -> dict:
    """Everything the e2e tests need; returns the paths (cheap when all is cached)."""
    with _lock():
        ensure_apt()
        venvs = {name: str(ensure_venv(name)) for name in VENVS}
    return {
        "chromium": str(CHROMIUM),
        "certutil": str(CERTUTIL),
        "venvs": venvs,
        "runner_python": str(Path(venvs["runner"]) / "bin" / "python"),
        "hub_python": {"hub50": str(Path(venvs["hub50"]) / "bin" / "python"),
                       "hub-current": str(Path(venvs["hub-current"]) / "bin" / "python")},
    }


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "ensure"
    try:
        info = ensure()
    except SetupError as exc:
        print(f"e2e-setup: ERROR: {exc}", file=sys.stderr)
        return 2
    if cmd == "paths":
        print(json.dumps(info, indent=2))
    elif cmd == "run":
        args = argv[1:]
        paths = [a for a in args if not a.startswith("-") and (REPO / a.split("::")[0]).exists()]
        pytest_argv = [info["runner_python"], "-m", "pytest", "-m", "e2e", *([] if paths else ["tests/e2e"]), *args]
        log("running " + " ".join(pytest_argv))
        # pytest takes this process's place: a signal to it (make test stopped) reaches pytest itself,
        # which then tears its fixtures down (tests/interrupt.py).
        sys.stdout.flush()
        sys.stderr.flush()
        os.chdir(REPO)
        os.execv(pytest_argv[0], pytest_argv)
    elif cmd != "ensure":
        print(__doc__, file=sys.stderr)
        return 2
    else:
        log("ready: " + ", ".join(f"{k}={v}" for k, v in info["venvs"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
