"""The cached Keycloak distribution is built once, with the options the starts use, and its
integrity record catches what would make a start fail: other build options, a damaged file.
Each case works on a copy of the real cache and ends with a real server (or a built tree)."""
from __future__ import annotations

import json
import shutil
import socket

import pytest

from tools.testbed import keycloak as kc
from tools.testbed.procs import Procs

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def cache_copy(keycloak, tmp_path, monkeypatch):
    """A private DATALAB_CACHE holding a copy of the built distribution (the shared one stays as it is)."""
    built = kc.dist_dir()
    assert kc.dist_problem(built) is None
    monkeypatch.setenv("DATALAB_CACHE", str(tmp_path / "cache"))
    copy = kc.dist_dir()
    shutil.copytree(built, copy, symlinks=True)
    assert kc.dist_problem(copy) is None
    return copy


def test_shared_distribution_is_built_with_the_start_options(keycloak):
    record = json.loads((kc.dist_dir() / ".datalab-complete").read_text())
    assert record["build_options"] == list(kc.BUILD_OPTIONS)
    assert "lib/quarkus/build-system.properties" in record["files"]


def test_changed_build_options_rebuild_and_the_next_start_answers(cache_copy, tmp_path):
    marker = cache_copy / ".datalab-complete"
    record = json.loads(marker.read_text())
    record["build_options"] = ["--db=postgres"]
    marker.write_text(json.dumps(record))
    assert "built with ['--db=postgres']" in kc.dist_problem(cache_copy)

    state = tmp_path / "instance"
    state.mkdir()
    ca_crt, store, store_pw = kc._pki(state)  # pylint: disable=protected-access
    spec = kc.Launch(state=state, host="127.0.0.1", port=_free_port(), management_port=_free_port(),
                     keystore=store, keystore_password=store_pw, admin_user="admin", admin_password="rebuild-test",
                     ca_pem=ca_crt.read_text())
    try:
        kc.launch(spec, timeout=240)
    finally:
        Procs(state).stop(kc.NAME)
    assert kc.dist_problem(cache_copy) is None
    assert json.loads(marker.read_text())["build_options"] == list(kc.BUILD_OPTIONS)


def test_damaged_file_is_detected_and_rebuilt(cache_copy):
    victim = cache_copy / "lib" / "quarkus" / "build-system.properties"
    victim.write_text("damaged")
    assert kc.dist_problem(cache_copy) == "lib/quarkus/build-system.properties has changed size since it was built"
    assert kc.ensure_dist() == cache_copy
    assert kc.dist_problem(cache_copy) is None
    assert victim.read_text() != "damaged"


def test_never_built_tree_is_not_taken_for_a_built_one(cache_copy):
    (cache_copy / ".datalab-complete").unlink()
    assert kc.dist_problem(cache_copy) == "not unpacked and built yet"
