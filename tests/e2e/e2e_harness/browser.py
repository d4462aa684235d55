"""Debian Chromium driven by playwright, trusting the platform CA the way a person's browser would.

The CA goes into the NSS database of a HOME that belongs to the test (`certutil`), never
through an "ignore certificate errors" switch; the browser is /usr/bin/chromium, never
one that playwright downloads.  Each context gets a fresh user-data dir.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def make_home(root: Path, ca_pem: str | None, nickname: str = "datalab-platform-ca") -> Path:
    """A HOME whose NSS database trusts `ca_pem` for TLS servers (none when `ca_pem` is None)."""
    home = root
    nssdb = home / ".pki" / "nssdb"
    if nssdb.exists():
        shutil.rmtree(nssdb)
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True, capture_output=True)
    if ca_pem:
        ca = home / "platform-ca.crt"
        ca.write_text(ca_pem)
        subprocess.run(["certutil", "-A", "-d", f"sql:{nssdb}", "-t", "C,,", "-n", nickname, "-i", str(ca)],
                       check=True, capture_output=True)
    return home


class Browser:
    """One playwright driver; `context()` opens Chromium with a fresh profile and the given HOME."""

    def __init__(self, artifacts: Path):
        from playwright.sync_api import sync_playwright

        self.artifacts = artifacts
        self._pw = sync_playwright().start()
        self._dirs: list[str] = []
        self._contexts = []

    def context(self, home: Path, viewport=(1280, 800)):
        profile = tempfile.mkdtemp(prefix="chromium-profile-")
        self._dirs.append(profile)
        env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "en_US.UTF-8",
               "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
        ctx = self._pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, env=env,
            viewport={"width": viewport[0], "height": viewport[1]}, locale="en-US")
        ctx.set_default_timeout(30_000)
        self._contexts.append(ctx)
        return ctx

    def close(self) -> None:
        for ctx in self._contexts:
            try:
                ctx.close()
            except Exception:  # noqa: BLE001 - already closed by a test
                pass
        self._pw.stop()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)
