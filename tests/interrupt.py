"""A stopped test session still stops what its fixtures started (pytest plugin, loaded by tests/conftest.py).

Python ends on SIGTERM or SIGHUP at once: a session stopped so (by `make test` when it is stopped itself, by
a CI job's timeout) would leave its fixtures' test beds running, with the real node's bridge and rules. Here
the first SIGTERM, SIGHUP or SIGINT interrupts the session as Ctrl-C does: pytest stops the tests and runs
every fixture's teardown. Later ones are ignored, so that they cannot cut that teardown short (a second
Ctrl-C does not stop it either: SIGQUIT or SIGKILL do). A signal that comes while the session is tearing down
already is ignored in the same way; one that comes while a test bed is being stopped (`cluster.down()`, a
test's `with teardown_shield():` block) interrupts when that stop is done.
"""
from __future__ import annotations

import signal
import threading

import pytest

from tools.testbed.procs import interrupt

SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_state = {"tearing_down": False}


def _interrupt_once(signum, frame):  # pylint: disable=unused-argument
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if not _state["tearing_down"]:
        interrupt(signum)  # at once, or at the end of a test bed's teardown that runs (teardown_shield)


def pytest_configure(config):  # pylint: disable=unused-argument
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            signal.signal(sig, _interrupt_once)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):  # pylint: disable=unused-argument
    if nextitem is None:  # the last test: the session's fixtures are torn down with it
        _state["tearing_down"] = True


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):  # pylint: disable=unused-argument
    _state["tearing_down"] = True
