"""Where the test bed keeps its cache (binaries) and its state (a running cluster).

Both live outside the repository so that every clone on a machine shares one
build and one running cluster.  Override with DATALAB_CACHE / DATALAB_STATE.
"""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    base = os.environ.get("DATALAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "datalab-notebooks")
    return Path(base)


def state_dir() -> Path:
    base = os.environ.get("DATALAB_STATE") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "datalab-notebooks")
    return Path(base)


def cluster_dir() -> Path:
    return state_dir() / "cluster"


def keycloak_dir() -> Path:
    return state_dir() / "keycloak"
