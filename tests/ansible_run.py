"""Running ansible-playbook from a test and reading its output (shared by the integration tests).

Playbooks run from the repo root with the repo's ansible.cfg, the test interpreter's venv first
on PATH, and colour off, so that the output can be parsed: `recap()` reads PLAY RECAP,
`changed_tasks()` lists the tasks that reported a change.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def env() -> dict:
    """The environment a playbook runs with: the repo's ansible.cfg, no colour, this venv first."""
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
                PYTHONUNBUFFERED="1", PATH="%s:%s" % (BIN, os.environ.get("PATH", "")))


def argv(inventory, playbook: str, *args: str) -> list[str]:
    return [str(BIN / "ansible-playbook"), "-i", str(inventory), playbook, *args]


def run_playbook(inventory, playbook: str = "site.yml", *args: str, timeout: int = 1500) -> tuple[int, str]:
    """Run a playbook to the end: (exit status, stdout and stderr)."""
    proc = subprocess.run(argv(inventory, playbook, *args), cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def recap(output: str) -> dict:
    """host -> {ok, changed, unreachable, failed} from PLAY RECAP; fails when there is none."""
    found = {m.group(1): {"ok": int(m.group(2)), "changed": int(m.group(3)),
                          "unreachable": int(m.group(4)), "failed": int(m.group(5))}
             for m in RECAP.finditer(output)}
    assert found, "no PLAY RECAP in output:\n" + output[-3000:]
    return found


def changed_tasks(output: str) -> list[str]:
    """Headers ("TASK [role : name]") of the tasks that reported changed, in order."""
    names, task = [], None
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line.split(" ***")[0].rstrip("* ").strip()
        elif line.startswith("changed:") and task:
            names.append(task)
    return names


def host_recap(output: str, host: str) -> dict:
    """The PLAY RECAP counts of one host; fails when that host has none."""
    found = recap(output)
    assert host in found, "no PLAY RECAP for %s:\n%s" % (host, output[-3000:])
    return found[host]


def localhost_task(tmp_path: Path, play: dict, *args: str) -> dict:
    """Run one play on localhost (connection local, this interpreter) with the JSON callback; the result of
    its first task on localhost."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([play]), encoding="utf-8")
    run_env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                   ANSIBLE_NOCOLOR="1")
    run_env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook), *args],
                          env=run_env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
