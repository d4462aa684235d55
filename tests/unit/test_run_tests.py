"""`make test` (tools/run_tests.py) stopped by a signal stops the test bed it started.

The test bed's start and stop are replaced by stand-ins that print what they are asked, and the one layer
is a real child process that sleeps: what is checked is run_tests' own wiring (the signal reaches main(),
the running layer is killed, the teardown runs, the own-test-bed layer does not start, the exit code says
the run failed).  The real teardown was checked by hand on a real test bed (see docs/testbed.md).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

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
    rt.layers = lambda: [("slow", [sys.executable, "-c", "import time; time.sleep(120)"])]
    threading.Timer(2.0, os.kill, (os.getpid(), signal.{sig})).start()
    sys.exit(rt.main())
""")


@pytest.mark.parametrize("sig,again", [("SIGTERM", False), ("SIGHUP", False), ("SIGTERM", True)],
                         ids=["SIGTERM", "SIGHUP", "SIGTERM-twice"])
def test_a_signal_stops_the_test_bed_the_run_started(tmp_path, sig, again):
    t0 = time.monotonic()
    script = SCRIPT.format(repo=str(REPO), tmp=str(tmp_path), sig=sig, again=again)
    proc = subprocess.run([sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=60, check=False)
    took = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert f"==> stopped by {sig}: stopping the test bed this run started" in out, out
    assert "STAND-IN keycloak down" in out and "STAND-IN cluster down" in out, out
    assert out.index("STAND-IN keycloak down") < out.index("STAND-IN cluster down"), out
    assert "==> own test beds" not in out, out
    assert "stopped                 0s  FAILED" in out, out
    assert took < 30, f"the sleeping layer was not stopped: {took:.0f}s"
