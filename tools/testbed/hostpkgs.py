"""Debian packages the test bed needs on the host, installed by the project itself.

A new machine has none of them; `ensure()` installs what is missing with apt-get (as root)
and says why, or stops with the command to run when it cannot.  Nothing here is ever done
by hand: CI starts from a machine that only has what these calls install.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from .procs import TestbedError


def _missing(packages: dict[str, str]) -> list[str]:
    """Packages (name -> a file it provides) whose file is absent."""
    return [name for name, probe in packages.items() if not (shutil.which(probe) or os.path.exists(probe))]


def ensure(packages: dict[str, str], why: str) -> None:
    """Install the packages whose probe file is missing.  `packages` maps a Debian package to a
    command or path it provides (the check costs no apt call when everything is there)."""
    missing = _missing(packages)
    if not missing:
        return
    cmd = f"apt-get update && apt-get install -y --no-install-recommends {' '.join(missing)}"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise TestbedError(f"{why} needs the Debian packages {', '.join(missing)}; install them: `{cmd}`")
    print(f"[testbed] installing {', '.join(missing)} ({why})", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-20:])
            raise TestbedError(f"`{' '.join(argv)}` failed (exit {proc.returncode}):\n{tail}")
    still = _missing(packages)
    if still:
        raise TestbedError(f"apt-get reported success but {', '.join(still)} provide nothing at the expected paths")
