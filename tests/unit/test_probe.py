"""datalab.notebooks.probe: one read-only command, its exit code and output as a result.

The shared core runs real programs (sh, a file that is not executable, one that does not exist, one that
overruns its timeout). The module runs as Ansible runs it on a host (its file with the arguments file), and
the action plugin runs from a playbook both ways: in the controller's process where the connection is
`local`, and shipping the module over a connection with another name (`elsewhere`, the local connection
renamed, in tests/unit/connection_plugins), in normal and in check mode.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".collections"
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.datalab.notebooks.plugins.module_utils.probe import ProbeError, check, run  # noqa: E402

from tests import ansible_run  # noqa: E402


def params(argv, env=None, timeout=60):
    return check({"argv": argv, "env": env or {}, "timeout": timeout})


def test_exit_code_and_both_streams_are_reported_apart():
    said = run(params(["sh", "-c", 'echo out; echo "$GREETING" >&2; exit 3'], env={"GREETING": "from env"}))
    assert (said["rc"], said["stdout"], said["stderr"]) == (3, "out", "from env")
    assert said["stdout_lines"] == ["out"] and said["changed"] is False


def test_env_adds_to_the_inherited_environment():
    said = run(params(["sh", "-c", 'echo "$PATH|$EXTRA"'], env={"EXTRA": 7}))
    assert said["stdout"] == os.environ["PATH"] + "|7"


def test_a_missing_program_is_rc_127_with_its_name(tmp_path):
    said = run(params([str(tmp_path / "no-such-helm"), "version"]))
    assert said["rc"] == 127
    assert said["stderr"].startswith("cannot run %s: " % (tmp_path / "no-such-helm"))


def test_a_file_that_is_not_executable_is_rc_126(tmp_path):
    script = tmp_path / "engine"
    script.write_text("#!/bin/sh\necho hi\n")
    said = run(params([str(script)]))
    assert said["rc"] == 126 and "Permission denied" in said["stderr"]


def test_a_program_that_overruns_its_timeout_is_stopped_as_rc_124():
    said = run(params(["sh", "-c", "echo started; sleep 30"], timeout=1))
    assert said["rc"] == 124 and said["stderr"] == "sh did not finish within 1 s"


@pytest.mark.parametrize("argv, env, timeout, named", [
    ([], {}, 60, "argv must name a program"),
    ([""], {}, 60, "argv must name a program"),
    (["true"], {}, 0, "timeout must be a positive number of seconds, not 0"),
    (["true"], {"A=B": "x"}, 60, "env has names that cannot be environment variables: A=B"),
])
def test_arguments_that_name_no_command_are_refused(argv, env, timeout, named):
    with pytest.raises(ProbeError, match=named):
        params(argv, env, timeout)


def _module(tmp_path, args):
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, str(REPO / "plugins/modules/probe.py"), str(args_file)],
                          env=dict(os.environ, PYTHONPATH=str(COLLECTIONS)), capture_output=True, text=True,
                          timeout=60, check=False)
    return json.loads(proc.stdout)


def test_the_module_reports_on_the_host_and_runs_in_check_mode_too(tmp_path):
    said = _module(tmp_path, {"argv": ["sh", "-c", "echo $X; exit 2"], "env": {"X": "y"},
                              "_ansible_check_mode": True})
    assert (said["rc"], said["stdout"], said["changed"]) == (2, "y", False)
    assert not said.get("failed")
    refused = _module(tmp_path, {"argv": []})
    assert refused["failed"] and "argv must name a program" in refused["msg"]


PLAY = """
- hosts: target
  gather_facts: false
  tasks:
    - datalab.notebooks.probe:
        argv: [sh, -c, 'echo "$WHERE"; echo warn >&2; exit 4']
        env: {WHERE: here}
      register: said
    - datalab.notebooks.probe:
        argv: [/nonexistent/helm, version]
      register: missing
    - ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'said': said, 'missing': missing} | to_json }}"
      check_mode: false
    - datalab.notebooks.probe:
        argv: []
"""


@pytest.mark.parametrize("connection", ["local", "elsewhere"])
@pytest.mark.parametrize("check_mode", [False, True])
def test_the_action_runs_the_command_in_process_or_as_a_module(tmp_path, connection, check_mode):
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {"hosts": {"target": {
        "ansible_connection": connection, "ansible_python_interpreter": sys.executable,
        "out": str(tmp_path / "out.json")}}}}))
    env = dict(ansible_run.env(), ANSIBLE_CONNECTION_PLUGINS=str(REPO / "tests/unit/connection_plugins"))
    proc = subprocess.run([str(ansible_run.BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
                           str(tmp_path / "play.yml"), "-vvv"] + (["--check"] if check_mode else []),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    found = json.loads((tmp_path / "out.json").read_text())
    assert (found["said"]["rc"], found["said"]["stdout"], found["said"]["stderr"]) == (4, "here", "warn"), output
    assert found["said"]["changed"] is False and not found["said"].get("failed")
    # Shipped as a module only where the connection is not local (-vvv names the file it puts on the host).
    assert ("AnsiballZ_probe.py" in output) == (connection == "elsewhere"), output
    assert found["missing"]["rc"] == 127 and "cannot run /nonexistent/helm" in found["missing"]["stderr"]
    # Only the arguments that name no command fail the play, with a message that says so.
    assert proc.returncode == 2 and "argv must name a program" in output, output
    assert ansible_run.host_recap(output, "target")["failed"] == 1
