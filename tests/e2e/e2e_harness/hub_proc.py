"""JupyterHub (+ configurable-http-proxy) as a local process, configured from the role's values.

`start()` writes the spec read by hub_config.py, resolves hub.extraEnv from the cluster,
writes hub.extraVolumes' files to a scratch dir, and runs `jupyterhub -f hub_config.py`
from the chosen hub venv.  The environment is the container's: only what the chart and
the values give the hub, plus PATH/HOME and the kubeconfig (KubeSpawner's API access).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tools.testbed.paths import state_dir
from tools.testbed.procs import Procs, check_port_free, tail

from .platform import HarnessError, Platform, materialize_volumes, resolve_env, translate

HUB_CONFIG = Path(__file__).with_name("hub_config.py")
POD_CONNECT_IP = "127.0.0.1"  # where the single-user stand-in listens (KubeSpawner's default port 8888)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Hub:
    name: str
    url: str  # public URL (the proxy), e.g. http://127.0.1.2:31095
    state: Path
    values: dict
    env: dict
    local: dict

    @property
    def procs(self) -> Procs:
        return Procs(self.state)

    @property
    def log_path(self) -> Path:
        return self.procs.log("jupyterhub")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.procs.alive("jupyterhub")

    def stop(self) -> None:
        self.procs.stop("jupyterhub")


def start_clean(procs: Procs, name: str, argv: list[str], env: dict, cwd: Path) -> int:
    """Like Procs.start (same PID record, own session) but with exactly `env`: the hub must
    not inherit the test process's variables (KUBECONFIG, proxies, ...)."""
    procs.pid_dir.mkdir(parents=True, exist_ok=True)
    procs.log_dir.mkdir(parents=True, exist_ok=True)
    with open(procs.log(name), "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, start_new_session=True)
    started = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    (procs.pid_dir / f"{name}.pid").write_text(f"{proc.pid} {started}\n")
    return proc.pid


def local_overrides(bind_host: str, bind_port: int, chp: str) -> dict:
    """The only settings that do not come from the role's values (see test_hub.py::LOCAL_OVERRIDES)."""
    return {
        "bind_url": f"http://{bind_host}:{bind_port}",
        "hub_bind_url": f"http://127.0.0.1:{free_port()}",
        "proxy_api_url": f"http://127.0.0.1:{free_port()}",
        "proxy_command": [chp],
        "pod_connect_ip": POD_CONNECT_IP,
    }


def start(p: Platform, *, name: str, values: dict, venv: str, chp: str, bind_host: str, bind_port: int,
          env_patch: dict | None = None, release: str = "jupyterhub", timeout: float = 90) -> Hub:
    """Start a hub from `values` (the stand-in chart's record, possibly with one value flipped by a test)."""
    state = state_dir() / "e2e" / f"hub-{p.namespace}-{name}"
    procs = Procs(state)
    procs.stop("jupyterhub")
    if state.exists():
        shutil.rmtree(state)
    (state / "run").mkdir(parents=True)
    check_port_free(bind_host, bind_port, f"the e2e hub {name}")
    hub_values = values.get("hub", {})
    paths = materialize_volumes(p, hub_values.get("extraVolumes"), hub_values.get("extraVolumeMounts"),
                                state / "mounts")
    env = {k: translate(v, paths) for k, v in resolve_env(p, hub_values.get("extraEnv")).items()}
    env.update(env_patch or {})
    local = local_overrides(bind_host, bind_port, chp)
    spec = {"values": values, "namespace": p.namespace, "release": release, "paths": paths, "local": local}
    spec_path = state / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    spec_path.chmod(0o600)
    proc_env = {
        **env,
        "PATH": f"{Path(venv) / 'bin'}:{os.path.dirname(shutil.which('node') or '/usr/bin/node')}:/usr/bin:/bin",
        "HOME": str(state / "run"),
        "LANG": "C.UTF-8",
        "POD_NAMESPACE": p.namespace,
        "KUBECONFIG": p.kubeconfig,
        "DATALAB_E2E_HUB_SPEC": str(spec_path),
    }
    start_clean(procs, "jupyterhub", [str(Path(venv) / "bin" / "jupyterhub"), "-f", str(HUB_CONFIG)],
                proc_env, state / "run")
    hub = Hub(name=name, url=f"http://{bind_host}:{bind_port}", state=state, values=copy.deepcopy(values),
              env=env, local=local)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not hub.alive():
            raise HarnessError(f"hub {name} exited during start; last lines of {hub.log_path}:\n"
                               f"{tail(hub.log_path, 40)}")
        try:
            with urllib.request.urlopen(f"{hub.url}/hub/health", timeout=3) as resp:
                if resp.status == 200:
                    return hub
        except OSError:
            pass
        time.sleep(0.5)
    hub.stop()
    raise HarnessError(f"hub {name} did not answer {hub.url}/hub/health within {timeout:.0f}s; "
                       f"last lines of {hub.log_path}:\n{tail(hub.log_path, 40)}")
