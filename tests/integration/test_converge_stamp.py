"""The action plugin datalab.notebooks.converge_stamp against the test bed's real API server.

Each run is a real ansible-playbook (JSON callback) on localhost, as site.yml uses it: a check at the start of a
run returns the input digest, a later run records the stamp with it, and the next check holds or names what
changed: an object of the install (labelled with its instance), a contributed file, the output of a probe
command, the time of a renewal, the input, an unreadable stamp. A check only reads.
tests/integration/test_platform_real.py shows the same on the real platform, with the realm in Keycloak.
"""
from __future__ import annotations

import base64
import sys
import time
import uuid

import pytest
from kubernetes import client, config

from tests.ansible_run import localhost_task

pytestmark = pytest.mark.integration

STAMP = "datalab-converge-stamp"


@pytest.fixture()
def ns(cluster):
    api = config.new_client_from_config(config_file=cluster.kubeconfig)
    core = client.CoreV1Api(api)
    name = "stamp-" + uuid.uuid4().hex[:6]
    core.create_namespace({"metadata": {"name": name, "labels": {"app.kubernetes.io/instance": name}}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "settings", "labels": {
        "app.kubernetes.io/instance": name, "app.kubernetes.io/name": "demo"}}, "data": {"greeting": "hello"}})
    yield {"name": name, "core": core, "kubeconfig": cluster.kubeconfig}
    core.delete_namespace(name)


def _run(ns, tmp_path, state, checks=None, extra_vars=None, stamp_input=""):
    task = {"name": "stamp", "datalab.notebooks.converge_stamp": {
        "state": state, "namespace": ns["name"], "instance": ns["name"], "kubeconfig": ns["kubeconfig"],
        "input": stamp_input, "checks": checks or {}}, "ignore_errors": True}
    play = {"hosts": "localhost", "gather_facts": False,
            "vars": dict({"ansible_python_interpreter": sys.executable, "keycloak_node_port": 31093},
                         **(extra_vars or {})),
            "tasks": [task]}
    return localhost_task(tmp_path, play)


def _full_run(ns, tmp_path, checks=None, **kwargs):
    """What site.yml does: a check at its start, the stamp at its end."""
    checked = _run(ns, tmp_path, "check", **kwargs)
    assert checked.get("failed") is not True, checked
    written = _run(ns, tmp_path, "present", checks=checks, stamp_input=checked["input"], **kwargs)
    assert written.get("failed") is not True, written
    return checked, written


def _stamp_exists(ns):
    return any(s.metadata.name == STAMP for s in ns["core"].list_namespaced_secret(ns["name"]).items)


def test_a_stamp_holds_until_an_object_of_the_install_changes(ns, tmp_path):
    first, written = _full_run(ns, tmp_path)
    assert first["hit"] is False and first["reason"] == "there is no stamp of a full run that ended well"
    assert written["written"] is True and written["changed"] is False
    secret = ns["core"].read_namespaced_secret(STAMP, ns["name"])
    assert secret.metadata.labels["app.kubernetes.io/instance"] == ns["name"]
    assert _run(ns, tmp_path, "check")["hit"] is True

    # An object of another install may change: not this install's.
    ns["core"].create_namespaced_config_map(ns["name"], {"metadata": {"name": "theirs", "labels": {
        "app.kubernetes.io/instance": "someone-else"}}})
    assert _run(ns, tmp_path, "check")["hit"] is True

    # A label removed by hand: the check names the object, and only reads (site.yml removes the stamp later).
    ns["core"].patch_namespaced_config_map("settings", ns["name"], {"metadata": {"labels": {"app.kubernetes.io/name": None}}})
    missed = _run(ns, tmp_path, "check")
    assert missed["hit"] is False
    assert missed["reason"] == f"objects of the install changed: ConfigMap {ns['name']}/settings"
    assert _stamp_exists(ns)

    _full_run(ns, tmp_path)
    assert _run(ns, tmp_path, "check")["hit"] is True
    ns["core"].delete_namespaced_config_map("settings", ns["name"])
    assert _run(ns, tmp_path, "check")["reason"] == f"objects of the install changed: ConfigMap {ns['name']}/settings"


def test_the_input_counts(ns, tmp_path):
    _full_run(ns, tmp_path)
    missed = _run(ns, tmp_path, "check", extra_vars={"keycloak_node_port": 31094})
    assert missed["hit"] is False and "variables" in missed["reason"]


def test_contributed_files_probes_and_renewal_are_checked(ns, tmp_path):
    data, shown = tmp_path / "demo.csv", tmp_path / "shown.txt"
    data.write_text("a,b\n")
    shown.write_text("build-hash-1\n")
    checks = {"minio": {"files": {str(data): "{{ lookup('datalab.notebooks.path_digest', '%s') }}" % data}},
              "spark_image": {"probes": [{"argv": ["cat", str(shown)], "env": {"LC_ALL": "C"}}]},
              "keycloak": {"renew_at": time.time() + 3600}}
    _full_run(ns, tmp_path, checks=checks)
    assert _run(ns, tmp_path, "check")["hit"] is True

    data.write_text("a,b\n1,2\n")
    assert _run(ns, tmp_path, "check")["reason"] == f"the file {data} changed"
    _full_run(ns, tmp_path, checks=checks)
    data.unlink()
    assert _run(ns, tmp_path, "check")["reason"] == f"the file {data} changed"

    data.write_text("a,b\n")
    _full_run(ns, tmp_path, checks=checks)
    shown.write_text("build-hash-2\n")
    assert _run(ns, tmp_path, "check")["reason"] == f"`cat {shown}` shows something else"

    _full_run(ns, tmp_path, checks=dict(checks, keycloak={"renew_at": time.time() - 1}))
    assert _run(ns, tmp_path, "check")["reason"] == "a certificate is due for renewal"


def test_an_unreadable_stamp_misses_and_is_replaced(ns, tmp_path):
    _full_run(ns, tmp_path)
    ns["core"].patch_namespaced_secret(STAMP, ns["name"], {"data": {"stamp.json": base64.b64encode(b"{not json").decode()}})
    missed = _run(ns, tmp_path, "check")
    assert missed["hit"] is False and "unreadable" in missed["reason"]
    _full_run(ns, tmp_path)
    assert _run(ns, tmp_path, "check")["hit"] is True


def test_a_role_that_cannot_be_stamped_leaves_no_stamp(ns, tmp_path):
    _full_run(ns, tmp_path)
    checked = _run(ns, tmp_path, "check")
    written = _run(ns, tmp_path, "present", stamp_input=checked["input"],
                   checks={"secret_operator": {"stampable": "shared operators"}})
    assert written["written"] is False and written["reason"] == "secret_operator: shared operators"
    assert not _stamp_exists(ns)


def test_absent_removes_and_bad_arguments_fail_with_a_message(ns, tmp_path):
    _full_run(ns, tmp_path)
    assert _run(ns, tmp_path, "absent")["removed"] is True
    assert _run(ns, tmp_path, "absent")["removed"] is False
    no_input = _run(ns, tmp_path, "present")
    assert no_input["failed"] is True and "needs the input digest" in no_input["msg"]
    unknown = _run(ns, tmp_path, "present", stamp_input="x", checks={"keycloak": {"file": {}}})
    assert unknown["failed"] is True and unknown["msg"] == "converge_stamp: the checks of keycloak have unknown keys: file"
    assert not _stamp_exists(ns)
