"""`molecule test -s kind` on a machine without Kind or a working Docker engine.

The scenario's create step stops at once, before anything is created, and says why; Molecule
then exits with status 2 (ansible-playbook's "a task failed", passed through).  This test runs it
here, checks that it ends within seconds with that reason and that status, and then reports the
scenario as skipped - with the reason Molecule printed - since it cannot run on this machine.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXIT_STATUS = 2  # documented in molecule/kind/molecule.yml
MAX_SECONDS = 60  # syntax + create + destroy playbooks, a few seconds each
REASON = re.compile(r"The kind scenario cannot run on this machine: (.+?)\. It needs")


def _docker_works() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.integration
def test_kind_scenario_stops_at_once_without_docker(tmp_path):
    if shutil.which("kind") and _docker_works():
        pytest.skip("kind and a working Docker are present: run `molecule test -s kind` itself")

    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        # A throw-away ephemeral directory: the state of a real kind scenario run stays untouched.
        "MOLECULE_EPHEMERAL_DIRECTORY": str(tmp_path / "ephemeral"),
        "NO_COLOR": "1",
        "ANSIBLE_NOCOLOR": "1",
    }
    env.pop("KUBECONFIG", None)
    t0 = time.monotonic()
    proc = subprocess.run([str(BIN / "molecule"), "test", "-s", "kind"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.monotonic() - t0
    output = proc.stdout + proc.stderr
    # Molecule frames Ansible's output in a box and wraps long lines: undo both before matching.
    flat = re.sub(r"\s+", " ", re.sub(r"\x1b\[[0-9;]*m|[│┌└─]", " ", output))

    assert proc.returncode == EXIT_STATUS, f"exit status {proc.returncode}, expected {EXIT_STATUS}:\n{output[-4000:]}"
    assert elapsed < MAX_SECONDS, f"took {elapsed:.0f}s; the missing engine should stop the scenario at once"
    match = REASON.search(flat)
    assert match, f"no reason printed:\n{output[-4000:]}"
    assert "Nothing was created" in flat
    assert not (tmp_path / "ephemeral" / "kind-cluster").exists(), "a cluster was recorded as created"

    pytest.skip(f"kind scenario cannot run here (molecule exit {proc.returncode} after {elapsed:.0f}s): "
                f"{match.group(1)}")
