"""`make test`: every test layer, cheapest first, on a fresh machine.

Starts the test bed (cluster + Keycloak) once for all layers, or reuses the one
already running, and stops what it started at the end, then checks that no
process it started is left.  Before the first test it prepares what every layer
needs (`tools.e2e_setup`: browser, hub venvs, proxy, jars), so a fresh machine runs
exactly the tests a warm one does.  Prints each layer's time, then the skipped tests
with their reasons, and closes with one line `summary: N passed, N failed, N skipped`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.testbed import cluster, hostpkgs, hoststate, keycloak, node, platform_images  # noqa: E402
from tools.testbed.paths import cluster_dir, keycloak_dir  # noqa: E402
from tools.testbed.procs import Procs, TestbedError, running, start_time  # noqa: E402

BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "artifacts"
JUNIT = ("pytest.xml", "e2e.xml", "own.xml")


# How long a stopped layer may take to end what it started (pytest runs its fixtures' teardown, which stops
# the private test beds of the own-test-bed layer) before it is killed.
GRACE_S = 90


class Stopped(BaseException):
    """SIGTERM, SIGHUP or SIGINT reached the run: it stops the test bed it started before it exits."""


def _stop(signum, frame):  # pylint: disable=unused-argument
    raise Stopped(signal.Signals(signum).name)


def _on_stop_signals(handler) -> None:
    """`_stop` while layers run; SIG_IGN while a layer or the test bed is being stopped, so that another
    signal cannot cut that short."""
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, handler)


def _below(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every process below `pid`, read from /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError):  # ended meanwhile
            continue
        children.setdefault(ppid, []).append((int(entry.name), start_time(int(entry.name)) or ""))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _end_layer(name: str, proc: subprocess.Popen) -> None:
    """SIGTERM to the layer: a pytest layer then tears its fixtures down (tests/interrupt.py). It has GRACE_S
    to exit; then it is killed, and so is every process it had started that is still there (an
    ansible-playbook of molecule, a test's child)."""
    below = _below(proc.pid)
    print(f"\n==> {name}: stopping it ({GRACE_S}s at most to end what it started)", flush=True)
    proc.terminate()
    try:
        proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        print(f"==> {name}: still running after {GRACE_S}s: killed", flush=True)
        proc.kill()
        proc.wait()
    left = [pid for pid, start in below if start and running(pid, start)]
    names = []
    for pid in left:
        try:
            names.append(f"{(Path('/proc') / str(pid) / 'comm').read_text().strip()} ({pid})")
            os.kill(pid, signal.SIGKILL)
        except OSError:  # ended meanwhile
            pass
    if names:
        print(f"==> {name}: killed {len(names)} process(es) it had started and left: {', '.join(names)}", flush=True)


def step(name: str, argv: list[str], env: dict | None = None) -> tuple[bool, float]:
    print(f"\n==> {name}: {' '.join(argv)}", flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **(env or {})})
    try:
        rc = proc.wait()
    except Stopped:
        _on_stop_signals(signal.SIG_IGN)
        _end_layer(name, proc)
        raise
    took = time.monotonic() - t0
    print(f"==> {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {took:.0f}s", flush=True)
    return rc == 0, took


def junit_skips(path: Path) -> list[str]:
    """`test id: reason` of every skipped test in a JUnit file."""
    if not path.exists():
        return []
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None:
            out.append(f"{case.get('classname')}::{case.get('name')}: {skipped.get('message', '').strip()}")
    return out


def junit_counts(path: Path) -> tuple[int, int, int]:
    if not path.exists():
        return 0, 0, 0
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return total - failed - skipped, failed, skipped


def layers() -> list[tuple[str, list[str] | str]]:
    """The layers in order.  Each is one command (or the reason it is skipped); pytest layers write
    JUnit XML for the summary."""
    py = str(BIN / "python")
    out = [("prepare", [py, "-m", "tools.e2e_setup"])]
    if (REPO / "roles").is_dir():
        out.append(("lint", ["make", "-s", "lint"]))
    out.append(("sanity", [py, "-m", "tools.run_sanity"]))
    # own_testbed tests would stop the run's shared test bed; main() does their check around the whole run.
    out.append(("pytest", [str(BIN / "pytest"), "-q", "-m", "not e2e and not own_testbed", f"--junitxml={ARTIFACTS / 'pytest.xml'}",
                           "tests"]))
    out.append(("molecule", platform_images.local_inventory_missing() or [str(BIN / "molecule"), "test", "-s", "local"]))
    out.append(("e2e", [py, "-m", "tools.e2e_setup", "run", "-q", f"--junitxml={ARTIFACTS / 'e2e.xml'}"]))
    return out


def own_testbed_layer() -> list[str]:
    """The tests that start and stop test beds of their own: run once the shared one is gone."""
    return [str(BIN / "pytest"), "-q", "-m", "own_testbed", f"--junitxml={ARTIFACTS / 'own.xml'}", "tests"]


def main() -> int:
    ARTIFACTS.mkdir(exist_ok=True)
    for old in JUNIT:
        (ARTIFACTS / old).unlink(missing_ok=True)
    env = {"DATALAB_KEEP_TESTBED": "1",  # the layers share this run's test bed
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "MOLECULE_EPHEMERAL_DIRECTORY": str(ARTIFACTS / "molecule-local")}
    started_cluster = started_keycloak = found_cluster = False
    host_before = None
    results: list[tuple[str, bool]] = []
    layer_skips: list[str] = []
    times: dict[str, float] = {}
    stopped = False
    # Without this a terminated run would leave its test bed running (and the real node holding the host's
    # only node slot) while .ci/run removes the state directory under it.
    _on_stop_signals(_stop)
    try:
        if node.enabled() and not cluster.running():
            # The host as this run finds it (after installing the node's packages, which are not the
            # test bed's state): compared with the host after `cluster-down` at the end.
            hostpkgs.ensure(node.HOST_PACKAGES, "the test bed's real node")
            host_before = hoststate.snapshot()
        t0 = time.monotonic()
        started_cluster = cluster.ensure_up()[1]
        found_cluster = not started_cluster
        times["test bed cluster"] = time.monotonic() - t0
        print(f"==> test bed cluster {'started' if started_cluster else 'reused'} in {times['test bed cluster']:.0f}s")
        t0 = time.monotonic()
        started_keycloak = bool(keycloak.up().get("started"))
        times["test bed Keycloak"] = time.monotonic() - t0
        print(f"==> test bed Keycloak {'started' if started_keycloak else 'reused'} in "
              f"{times['test bed Keycloak']:.0f}s")
        for name, argv in layers():
            if isinstance(argv, str):
                print(f"\n==> {name}: SKIPPED: {argv}", flush=True)
                layer_skips.append(f"layer {name}: {argv}")
                continue
            ok, times[name] = step(name, argv, env)
            results.append((name, ok))
    except TestbedError as exc:
        print(f"==> test bed error: {exc}", flush=True)
        results.append(("testbed", False))
    except Stopped as exc:
        stopped = True
        print(f"\n==> stopped by {exc}: stopping the test bed this run started", flush=True)
        results.append(("stopped", False))
    finally:
        _on_stop_signals(signal.SIG_IGN)
        if started_keycloak:
            keycloak.down()
        if started_cluster:
            cluster.down()
            if host_before is not None:
                diffs = hoststate.compare(host_before, hoststate.snapshot())
                print("==> host after cluster-down: " + ("as found" if not diffs else
                      "CHANGED:\n" + "\n".join(f"    {d}" for d in diffs)), flush=True)
                results.append(("host as found", not diffs))
            # Tests that start and stop test beds of their own (a killed one reclaimed, up/down
            # leaving the host as found) run once the shared one is gone.
            if not stopped:
                _on_stop_signals(_stop)
                try:
                    ok, times["own test beds"] = step("own test beds", own_testbed_layer(), env)
                    results.append(("own test beds", ok))
                except Stopped as exc:
                    print(f"\n==> stopped by {exc} during the own test beds", flush=True)
                    results.append(("stopped", False))
                _on_stop_signals(signal.SIG_IGN)
        elif found_cluster:
            # A test bed that was running before this run (`make demo`, `make cluster-up`) is left running,
            # and the tests that start their own cannot run beside it.
            reason = "the shared test bed was running before this run and is left running; `make cluster-down` first runs them"
            print(f"\n==> own test beds: SKIPPED: {reason}", flush=True)
            layer_skips.append(f"layer own test beds: {reason}")
        # Only what this run started must be gone: a test bed it found running stays up.
        mine = ([cluster_dir()] if started_cluster else []) + ([keycloak_dir()] if started_keycloak else [])
        leftovers = [f"{n} (pid {p})" for d in mine for n, (p, dummy) in Procs(d).recorded().items() if Procs(d).alive(n)]
        if leftovers:
            print(f"==> processes left by the test bed: {', '.join(leftovers)}")
            results.append(("cleanup", False))
    counts = [junit_counts(ARTIFACTS / f) for f in JUNIT]
    passed, failed, skipped = (sum(c[i] for c in counts) for i in range(3))
    junit_layers = ("pytest", "e2e", "own test beds")
    step_failures = sum(1 for name, ok in results if not ok and name not in junit_layers)
    print("\n" + "\n".join(f"    {name:18} {times[name]:6.0f}s" for name in times if name not in dict(results)))
    print("\n".join(f"    {name:18} {times.get(name, 0):6.0f}s  {'ok' if ok else 'FAILED'}" for name, ok in results))
    skips = layer_skips + [s for f in JUNIT for s in junit_skips(ARTIFACTS / f)]
    print(f"skipped ({len(skips)}):" + "".join(f"\n    {s}" for s in skips))
    print(f"summary: {passed + sum(1 for n, ok in results if ok and n not in junit_layers)} passed, "
          f"{failed + step_failures} failed, {skipped + len(layer_skips)} skipped")
    return 0 if all(ok for dummy, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
