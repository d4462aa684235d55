"""The test bed's messages for the faults a person meets: no Go, a busy port, a dying
component, a corrupt cache entry.  Real processes and sockets, no mocks."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from tools.testbed import build, paths
from tools.testbed import cluster as _cluster
from tools.testbed.procs import Procs, TestbedError, check_port_free

pytestmark = pytest.mark.integration
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_missing_go_toolchain_names_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TestbedError, match=r"Go toolchain .* install Go"):
        build.go()


def test_busy_port_names_port_and_component():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(TestbedError, match=rf"port 127\.0\.0\.1:{port} needed by etcd is already in use"):
            check_port_free("127.0.0.1", port, "etcd")


def test_second_cluster_on_busy_ports_fails_before_starting_anything(cluster, tmp_path):
    """A second state directory while the shared cluster runs: clear port message, nothing started."""
    env = {**os.environ, "DATALAB_STATE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "tools.testbed", "cluster-up"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1
    assert "needed by etcd is already in use" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "cluster" / "pids").exists() or not list((tmp_path / "cluster" / "pids").iterdir())


def test_component_dying_during_start_shows_its_last_log_lines(tmp_path):
    procs = Procs(tmp_path)
    procs.start("flaky", ["sh", "-c", "echo 'listen tcp: bind: permission denied'; exit 3"])
    with pytest.raises(TestbedError) as err:
        for dummy in range(50):
            procs.ensure_alive("flaky")
            time.sleep(0.1)
    assert "flaky exited during start" in str(err.value)
    assert "permission denied" in str(err.value)


def test_stop_only_touches_recorded_processes(tmp_path):
    procs = Procs(tmp_path)
    ours = procs.start("sleeper", ["sleep", "60"])
    other = subprocess.Popen(["sleep", "60"])  # same name, not ours
    try:
        procs.stop("sleeper")
        assert not procs.alive("sleeper")
        assert other.poll() is None
        try:  # gone, or a zombie waiting for this test process (its parent) to reap it
            assert open(f"/proc/{ours}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            pass
    finally:
        other.kill()
        other.wait()


def test_corrupt_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    """A truncated kwok binary fails its --version check and only that entry is rebuilt."""
    real = {name: b.path for name, b in build.BINARIES.items()}
    if not all(build.works(b) for b in build.BINARIES.values()):
        pytest.skip("needs the built test bed cache (run `make cluster-up` once)")
    monkeypatch.setenv("DATALAB_CACHE", str(tmp_path))
    for name, path in real.items():
        dest = build.BINARIES[name].path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if name == "kwok":
            dest.write_bytes(b"\x7fELF truncated")
            dest.chmod(0o755)
        else:
            dest.symlink_to(path)
    assert not build.works(build.BINARIES["kwok"])
    build.ensure_binaries()
    assert build.works(build.BINARIES["kwok"])
    assert build.BINARIES["helm"].path.is_symlink()  # untouched: not rebuilt


def test_status_reports_running_components(cluster):
    st = _cluster.status()
    assert all(s.startswith("running") for s in st.values()), st


def test_cluster_env_prints_only_the_export_line(cluster):
    out = subprocess.run(["make", "-s", "cluster-env"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [f"export KUBECONFIG={cluster.kubeconfig}"]


def test_second_cluster_up_is_a_noop(cluster):
    before = Procs(paths.cluster_dir()).recorded()
    out = subprocess.run(["make", "-s", "cluster-up"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "already running" in out.stderr
    assert Procs(paths.cluster_dir()).recorded() == before
