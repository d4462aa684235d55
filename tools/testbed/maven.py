"""Jars from Maven Central into the local Maven repository (~/.m2, a registry download cache).

`python -m tools.testbed platform-images` fetches the spark_image role's default jars (the S3A
connector) here, and `inventories/local` builds the executor image from this repository
(`spark_image_maven_repository: file://...`), so the role's own download step runs without a network.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .images.key import file_sha256
from .procs import TestbedError


def repository() -> Path:
    return Path(os.environ.get("DATALAB_M2_REPO") or Path.home() / ".m2" / "repository")


def jar_path(group: str, artifact: str, version: str) -> Path:
    return repository() / Path(*group.split(".")) / artifact / version / f"{artifact}-{version}.jar"


def _sha1(path: Path) -> str:
    return file_sha256(path, "sha1")


def ensure_jar(group: str, artifact: str, version: str, sha1: str) -> Path:
    """The jar in the local repository with the sha1 Maven publishes; fetched with `mvn dependency:get`
    when missing or different."""
    path = jar_path(group, artifact, version)
    if path.is_file() and _sha1(path) == sha1:
        return path
    if not shutil.which("mvn"):
        raise TestbedError(f"mvn is missing: install Debian `maven` to fetch {group}:{artifact}:{version}")
    path.unlink(missing_ok=True)
    proc = subprocess.run(["mvn", "-B", "-q", "dependency:get", f"-Dartifact={group}:{artifact}:{version}",
                           "-Dtransitive=false"], capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not path.is_file():
        raise TestbedError(f"mvn dependency:get {group}:{artifact}:{version} failed (exit {proc.returncode}):\n"
                           f"{(proc.stdout + proc.stderr)[-2000:]}")
    if _sha1(path) != sha1:
        raise TestbedError(f"{path} has sha1 {_sha1(path)}, Maven publishes {sha1}")
    return path
