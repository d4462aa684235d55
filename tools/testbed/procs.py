"""Start, record, check and stop the test bed's processes.

Every process is started in its own session and its PID is written to
`<state>/pids/<name>.pid` together with its start time, so that `down` stops exactly
what `up` started (never by name) and a PID reused by the OS is not mistaken for ours.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


# Signal handlers that interrupt (tests/interrupt.py) call interrupt(): inside a teardown_shield() block the
# interrupt waits until the block ends, so that a teardown it would cut short (the bridge removed, the record
# of the host's changes not) runs to its end first.
_SHIELD = {"depth": 0, "pending": ""}


class teardown_shield:  # pylint: disable=invalid-name  # used like a function: `with teardown_shield():`
    """A block that an interrupt() does not cut short: the KeyboardInterrupt comes when it ends."""

    def __enter__(self):
        _SHIELD["depth"] += 1
        return self

    def __exit__(self, exc_type, exc, tb):
        _SHIELD["depth"] -= 1
        if _SHIELD["depth"] == 0 and _SHIELD["pending"]:
            name, _SHIELD["pending"] = _SHIELD["pending"], ""
            if exc_type is None:
                raise KeyboardInterrupt(f"stopped by {name}")
        return False


def interrupt(signum: int) -> None:
    """For a signal handler: KeyboardInterrupt now, or when the teardown_shield() block that runs ends."""
    name = signal.Signals(signum).name
    if _SHIELD["depth"]:
        _SHIELD["pending"] = name
        return
    raise KeyboardInterrupt(f"stopped by {name}")


class TestbedError(RuntimeError):
    """A failure with a message meant for a person: printed without a traceback."""

    __test__ = False  # not a pytest class, despite the name


def start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot: with the PID, names one process for good."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def running(pid: int, started: str) -> bool:
    """Whether process `pid` runs and is the one that started at `started` (any, when that is empty): a reused
    PID, or a process that has exited and is not yet reaped, does not count."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z" and (not started or fields[19] == started)


def port_owner_hint(host: str, port: int) -> str:
    return f"{host}:{port}"


def check_port_free(host: str, port: int, component: str) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
    except OSError as exc:
        raise TestbedError(
            f"port {host}:{port} needed by {component} is already in use ({exc.strerror}); "
            f"stop whatever listens there (e.g. `ss -ltnp 'sport = :{port}'`) or a test bed left by "
            f"another state directory") from None
    finally:
        s.close()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Procs:
    def __init__(self, state: Path):
        self.state = state
        self.pid_dir = state / "pids"
        self.log_dir = state / "logs"

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, argv: list[str], env: dict | None = None, cwd: Path | None = None) -> int:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log(name), "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
        (self.pid_dir / f"{name}.pid").write_text(f"{proc.pid} {start_time(proc.pid) or ''}\n")
        return proc.pid

    def recorded(self) -> dict[str, tuple[int, str]]:
        out = {}
        if self.pid_dir.is_dir():
            for f in sorted(self.pid_dir.glob("*.pid")):
                parts = f.read_text().split()
                if parts:
                    out[f.stem] = (int(parts[0]), parts[1] if len(parts) > 1 else "")
        return out

    def alive(self, name: str) -> bool:
        rec = self.recorded().get(name)
        return bool(rec) and running(*rec)

    def status(self) -> dict[str, bool]:
        return {name: self.alive(name) for name in self.recorded()}

    def ensure_alive(self, name: str) -> None:
        if not self.alive(name):
            raise TestbedError(f"{name} exited during start; last lines of {self.log(name)}:\n{tail(self.log(name))}")

    def stop(self, name: str, timeout: float = 15) -> None:
        rec = self.recorded().get(name)
        pidfile = self.pid_dir / f"{name}.pid"
        if rec and self.alive(name):
            pid = rec[0]
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
                try:
                    os.killpg(pid, sig)  # own session: the group holds only what we started
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and self.alive(name):
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass
                    time.sleep(0.1)
                if not self.alive(name):
                    break
        pidfile.unlink(missing_ok=True)

    def stop_all(self, order: list[str] | None = None) -> None:
        names = list(self.recorded())
        for name in (order or []) + [n for n in names if n not in (order or [])]:
            if name in names:
                self.stop(name)


def wait_for(what: str, check, timeout: float, interval: float = 0.5, on_fail=None):
    """Poll `check()` until truthy; `on_fail()` is called each round and may raise (a died process)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if on_fail:
            on_fail()
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - shown if we time out
            last = exc
        time.sleep(interval)
    raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last})" if last else ""))
