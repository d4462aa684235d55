"""`make test` (tools/run_tests.py) stopped by a signal stops the layer that runs and the test bed it started.

The test bed's start and stop are replaced by stand-ins that print what they are asked, and the layers are
real child processes that sleep: what is checked is run_tests' own wiring (the signal reaches main(), the
running layer gets SIGTERM and time to end, what it started is killed, the teardown runs, the own-test-bed
layer does not start, the summary is printed, the exit code says the run failed). The real teardown was
checked by hand on a real test bed (see docs/testbed.md). tests/interrupt.py, which makes a pytest layer tear
its fixtures down on that SIGTERM, is checked on a real pytest session.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tools.testbed.procs import running

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from tools import run_tests as rt

    tmp = Path({tmp!r})
    rt.ARTIFACTS = tmp / "artifacts"
    rt.node.enabled = lambda: False
    rt.cluster.ensure_up = lambda: ({{}}, True)
    rt.cluster.down = lambda: print("STAND-IN cluster down", flush=True)
    rt.keycloak.up = lambda: {{"started": True}}
    def keycloak_down():
        print("STAND-IN keycloak down", flush=True)
        if {again}:  # a second signal while the test bed is being stopped
            os.kill(os.getpid(), signal.SIGTERM)
    rt.keycloak.down = keycloak_down
    rt.cluster_dir = lambda: tmp / "cluster"
    rt.keycloak_dir = lambda: tmp / "keycloak"
    rt.GRACE_S = 3
    rt.layers = lambda: [("slow", [sys.executable, "-c", {layer!r}])]
    rt.own_testbed_layer = lambda: [sys.executable, "-c", {own!r}]
    threading.Timer(2.0, os.kill, (os.getpid(), signal.{sig})).start()
    sys.exit(rt.main())
""")
SLEEP = "import time; time.sleep(120)"
QUICK = "pass"
# A layer that starts a child of its own (its pid in a file), and on SIGTERM says so and takes a moment to end.
PARENT = textwrap.dedent("""
    import signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    open({pidfile!r}, "w").write(str(child.pid))
    def teardown(signum, frame):
        print("LAYER tears down", flush=True)
        time.sleep(0.5)
        sys.exit(2)
    signal.signal(signal.SIGTERM, teardown)
    time.sleep(120)
""")
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"


def run(tmp_path, sig="SIGTERM", again=False, layer=SLEEP, own=QUICK):
    t0 = time.monotonic()
    script = SCRIPT.format(repo=str(REPO), tmp=str(tmp_path), sig=sig, again=again, layer=layer, own=own)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    return proc, proc.stdout + proc.stderr, time.monotonic() - t0


@pytest.mark.parametrize("sig,again", [("SIGTERM", False), ("SIGHUP", False), ("SIGINT", False), ("SIGTERM", True)],
                         ids=["SIGTERM", "SIGHUP", "SIGINT", "SIGTERM-twice"])
def test_a_signal_stops_the_test_bed_the_run_started(tmp_path, sig, again):
    proc, out, took = run(tmp_path, sig, again)
    assert proc.returncode == 1, out
    assert f"==> stopped by {sig}: stopping the test bed this run started" in out, out
    assert "STAND-IN keycloak down" in out and "STAND-IN cluster down" in out, out
    assert out.index("STAND-IN keycloak down") < out.index("STAND-IN cluster down"), out
    assert "==> own test beds" not in out, out
    assert "stopped                 0s  FAILED" in out, out
    assert "summary: 0 passed, 1 failed, 0 skipped" in out, out
    assert took < 30, f"the sleeping layer was not stopped: {took:.0f}s"


def test_the_stopped_layer_ends_and_what_it_started_is_killed(tmp_path):
    pidfile = tmp_path / "child.pid"
    proc, out, dummy = run(tmp_path, layer=PARENT.format(pidfile=str(pidfile)))
    assert proc.returncode == 1, out
    assert "LAYER tears down" in out, out  # SIGTERM reached the layer, which had the time to end
    assert "==> slow: still running" not in out, out
    assert "==> slow: killed 1 process(es) it had started and left: python" in out, out
    assert not running(int(pidfile.read_text()), ""), "the layer's child outlived the run"
    assert out.index("LAYER tears down") < out.index("STAND-IN keycloak down"), out


def test_a_layer_that_does_not_end_is_killed_after_the_grace(tmp_path):
    proc, out, took = run(tmp_path, layer=STUBBORN)
    assert proc.returncode == 1, out
    assert "==> slow: still running after 3s: killed" in out, out
    assert "STAND-IN cluster down" in out, out
    assert took < 30, out


def test_a_signal_during_the_own_test_beds_ends_with_the_summary(tmp_path):
    # The first layer passes at once; the signal (after 2 s) comes while the own-test-bed layer runs.
    proc, out, took = run(tmp_path, layer=QUICK, own=SLEEP)
    assert proc.returncode == 1, out
    assert "STAND-IN cluster down" in out, out
    assert out.index("STAND-IN cluster down") < out.index("==> own test beds:"), out
    assert "==> stopped by SIGTERM during the own test beds" in out, out
    assert "summary: 1 passed, 1 failed, 0 skipped" in out, out
    assert took < 30, out


SESSION = textwrap.dedent("""
    import os, signal, time
    import pytest

    @pytest.fixture(scope="session")
    def bed():
        yield
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal, during the teardown: ignored
        time.sleep(0.2)
        open({marker!r}, "w").write("torn down")

    def test_waits(bed):
        open({started!r}, "w").write("started")
        time.sleep({wait})
""")


def session(tmp_path, source: str, sig=None) -> tuple[int, str]:
    """A pytest session of the test file `source` with tests/interrupt.py; with `sig`, that signal is sent to
    it once the test has written the file `started` in tmp_path. Returns its exit code and output."""
    (tmp_path / "test_session.py").write_text(source)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "tests.interrupt", "-p", "no:cacheprovider",
                             "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path / "test_session.py")],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if sig:
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(getattr(signal, sig))
    out = proc.communicate(timeout=60)[0]
    return proc.returncode, out


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_a_pytest_session_stopped_by_a_signal_tears_its_fixtures_down(tmp_path, sig):
    marker = tmp_path / "torn-down"
    rc, out = session(tmp_path, SESSION.format(marker=str(marker), started=str(tmp_path / "started"), wait=60), sig)
    assert marker.exists(), f"the session fixture was not torn down:\n{out}"
    assert rc == 2, out  # interrupted, as by Ctrl-C
    assert f"stopped by {sig}" in out, out


SHIELDED = textwrap.dedent("""
    import time
    from tools.testbed.procs import teardown_shield

    def test_stops_a_test_bed():
        with teardown_shield():
            open({started!r}, "w").write("started")
            time.sleep(1.5)
            open({marker!r}, "w").write("stopped to the end")
        open({marker!r}, "a").write(", and then went on")
""")


def test_a_signal_during_a_test_beds_stop_interrupts_when_the_stop_is_done(tmp_path):
    marker = tmp_path / "done"
    rc, out = session(tmp_path, SHIELDED.format(marker=str(marker), started=str(tmp_path / "started")), "SIGTERM")
    assert marker.read_text() == "stopped to the end", out  # not cut short, and interrupted right after
    assert rc == 2, out
    assert "stopped by SIGTERM" in out, out


def test_a_signal_during_the_sessions_teardown_does_not_cut_it_short(tmp_path):
    # The test passes; the first signal comes from the fixture's own teardown.
    marker = tmp_path / "torn-down"
    rc, out = session(tmp_path, SESSION.format(marker=str(marker), started=str(tmp_path / "started"), wait=0))
    assert marker.exists(), out
    assert rc == 0, out
