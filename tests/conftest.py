"""Session fixtures shared by every test layer.

`cluster` and `keycloak` reuse a test bed that is already running (started by
`make cluster-up` / `make keycloak-up` or by `make test`) and otherwise start one
and stop it again when the session ends, so a test session leaves no process behind.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.testbed import cluster as _cluster  # noqa: E402
from tools.testbed import keycloak as _keycloak  # noqa: E402


# The real node's fixtures (`real`, `api`, `core`) for every test module that asks for them; a session
# stopped by a signal tears its fixtures down (tests/interrupt.py).
pytest_plugins = ["tests.integration.realpods", "tests.interrupt"]


@pytest.fixture(scope="session")
def cluster():
    """A running test-bed cluster: attributes `kubeconfig`, `nodes`, `version`."""
    info, started = _cluster.ensure_up()
    yield info
    if started and not os.environ.get("DATALAB_KEEP_TESTBED"):
        _cluster.down()


@pytest.fixture(scope="session")
def keycloak():
    """A running test-bed Keycloak: dict with url, username, password, ca_path."""
    info = _keycloak.up()
    yield info
    if info.get("started") and not os.environ.get("DATALAB_KEEP_TESTBED"):
        _keycloak.down()
