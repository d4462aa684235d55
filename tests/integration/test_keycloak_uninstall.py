"""The keycloak role's uninstall entry point on purge, against the test bed's cluster and real Keycloak.

Only the role's own part runs (a playbook with `tasks_from: uninstall`): the address comes from
ConfigMap keycloak-address, the admin login from Secret keycloak-admin and the CA from ConfigMap
datalab-ca, as an install leaves them, so the CA lookup shared with the realm import is exercised.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from kubernetes import client, config

from tests.ansible_run import changed_tasks, host_recap, run_playbook
from tests.keycloak_admin import KeycloakAdmin

REPO = Path(__file__).resolve().parents[2]
if str(REPO / ".collections") not in sys.path:
    sys.path.insert(0, str(REPO / ".collections"))

from ansible_collections.datalab.notebooks.plugins.module_utils import keycloak_admin  # noqa: E402

pytestmark = pytest.mark.integration

HOST = "lab"
DELETE_TASK = "TASK [datalab.notebooks.keycloak : Delete the realm %s]"


@pytest.fixture(scope="module")
def purge(cluster, keycloak, tmp_path_factory):
    """A namespace holding what an install publishes, a realm in Keycloak, and a playbook for the purge."""
    uid = uuid.uuid4().hex[:6]
    ns, realm = "datalab-kcun-" + uid, "demo-kcun-" + uid
    tmp = tmp_path_factory.mktemp("keycloak-uninstall")
    core = client.CoreV1Api(config.new_client_from_config(config_file=cluster.kubeconfig))
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "keycloak-address"},
                                           "data": {"keycloakAddress": urlsplit(keycloak["url"]).netloc}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "datalab-ca"},
                                           "data": {"ca.crt": Path(keycloak["ca_path"]).read_text()}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "keycloak-admin"},
                                       "stringData": {"username": keycloak["username"],
                                                      "password": keycloak["password"]}})
    hostvars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                "datalab_kubeconfig": cluster.kubeconfig, "datalab_context": "", "datalab_namespace": ns,
                "datalab_keycloak_realm": realm, "datalab_tls_provider": "self_signed",
                "datalab_uninstall_purge": True}
    inventory = tmp / "hosts.json"
    inventory.write_text(json.dumps({"all": {"hosts": {HOST: hostvars}}}))
    playbook = tmp / "purge.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  module_defaults:\n    group/kubernetes.core.k8s:\n"
        "      kubeconfig: \"{{ datalab_kubeconfig }}\"\n  tasks:\n"
        # As playbooks/uninstall.yml: the common role's public vars (datalab_k8s_auth) are in the play.
        "    - ansible.builtin.import_role:\n        name: datalab.notebooks.common\n        tasks_from: validate\n"
        "    - ansible.builtin.import_role:\n        name: datalab.notebooks.keycloak\n        tasks_from: uninstall\n")
    kc = KeycloakAdmin(keycloak)
    kc.delete("/" + realm)
    info = {"ns": ns, "realm": realm, "kc": kc, "inventory": inventory, "playbook": str(playbook), "core": core,
            "cache": tmp / "cache", "password": keycloak["password"]}
    yield info
    kc.delete("/" + realm)
    core.delete_namespace(ns)


def run(purge, *args):
    """The purge playbook, with the controller's cache (where the role forgets its CA copy) in tmp."""
    os.environ["XDG_CACHE_HOME"] = str(purge["cache"])
    try:
        return run_playbook(purge["inventory"], purge["playbook"], *args, timeout=600)
    finally:
        del os.environ["XDG_CACHE_HOME"]


def test_purge_deletes_the_realm_with_the_module_and_rerun_is_unchanged(purge, keycloak):
    realm, kc = purge["realm"], purge["kc"]
    api = keycloak_admin.KeycloakAdmin(keycloak["url"], username=keycloak["username"], password=keycloak["password"],
                                       ca_path=keycloak["ca_path"])
    api.post("", {"realm": realm, "enabled": True})
    api.close()
    assert kc.realm_exists(realm)

    rc, out = run(purge, "--check", "--diff")
    assert rc == 0 and host_recap(out, HOST)["changed"] == 1, out
    assert changed_tasks(out) == [DELETE_TASK % realm]
    assert kc.realm_exists(realm), "check mode deletes nothing"

    rc, out = run(purge, "-vv")
    assert rc == 0 and changed_tasks(out) == [DELETE_TASK % realm], out
    assert not kc.realm_exists(realm)
    assert purge["password"] not in out

    rc, out = run(purge)
    assert rc == 0 and host_recap(out, HOST)["changed"] == 0, out


def test_purge_with_refused_credentials_fails_with_the_reason(purge):
    core, ns = purge["core"], purge["ns"]
    core.patch_namespaced_secret("keycloak-admin", ns, {"data": {"password": base64.b64encode(b"wrong").decode()}})
    rc, out = run(purge)
    assert rc != 0 and host_recap(out, HOST)["failed"] == 1, out
    assert "refused to delete realm %s" % purge["realm"] in out and "check auth_username and auth_password" in out
    assert purge["password"] not in out
