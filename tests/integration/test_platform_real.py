"""The platform for real: `site.yml` installs Keycloak, MinIO and the real Zero-to-JupyterHub 4.4.0 chart
on the test bed's real node, with the images built on this machine, and people log in through the
install's own Keycloak pod.

One install with an inventory of its own (a namespace, NodePorts the API server reports free, the
real node's selector and toleration through `datalab_node_selector` / `datalab_tolerations`). The
realm goes to the install's Keycloak through its NodePort on the node address (10.88.0.1, the test
bed's bridge), with the CA the role issued; the hub reaches the same address from its pod. Nothing
here is a stand-in: every pod of the install runs, and its readiness probes pass.

Skips (with the reason) where the real node is off or the chart is not on this machine
(DATALAB_UPSTREAM_CHARTS, default ../shared/upstream-charts).
"""
from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.ansible_run import changed_tasks, recap, run_playbook
from tests.integration.test_testbed import _until
from tests.realplatform import (ADMIN, HOST, MEMBER, NOTEBOOK_IMAGE, REALM, SPAWN_OPTIONS, ca_file, import_images, login,
                                spawn, upstream_chart, write_inventory, assert_contains)
from tests.realplatform import session as http_session
from tools.testbed import images as images_api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def install(cluster, real, core, tmp_path_factory):
    if not upstream_chart().exists():
        pytest.skip(f"{upstream_chart()} is not on this machine (DATALAB_UPSTREAM_CHARTS)")
    import_images(real)
    work = tmp_path_factory.mktemp("platform-real")
    info = write_inventory(work / "hosts.yml", cluster, real, core, f"dl-real-{uuid.uuid4().hex[:6]}")
    t0 = time.monotonic()
    rc, out = run_playbook(info["inventory"], "site.yml", timeout=1500)
    info.update(rc=rc, out=out, seconds=time.monotonic() - t0, real=real, work=work)
    try:
        yield info
    finally:
        core.delete_namespace(info["ns"], grace_period_seconds=0)
        _until(lambda: _gone(core, info["ns"]), 180, f"namespace {info['ns']} to go")


def _gone(core, ns):
    try:
        core.read_namespace(ns)
    except Exception:  # noqa: BLE001 - 404: gone
        return True
    return False


def _converged(install):
    assert install["rc"] == 0, install["out"][-6000:]
    return install


def test_site_converges_with_every_pod_running_and_ready_on_the_real_node(install, core):
    _converged(install)
    pods = core.list_namespaced_pod(install["ns"]).items
    names = sorted(p.metadata.name.rsplit("-", 2)[0] if p.metadata.owner_references else p.metadata.name
                   for p in pods)
    assert {"keycloak", "minio", "hub", "proxy"} <= set(names), names
    for pod in pods:
        assert pod.spec.node_name == install["real"]["name"], (pod.metadata.name, pod.spec.node_name)
        if pod.status.phase == "Succeeded":  # the bucket Job
            continue
        assert pod.status.phase == "Running", (pod.metadata.name, pod.status.phase)
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        assert conditions.get("Ready") == "True", (pod.metadata.name, conditions)
        # every container really started (the readiness probes of Keycloak, MinIO, hub and proxy passed)
        assert all(s.ready and s.state.running for s in pod.status.container_statuses), pod.metadata.name


def test_a_rerun_changes_nothing(install):
    _converged(install)
    rc, out = run_playbook(install["inventory"], "site.yml", timeout=1500)
    assert rc == 0, out[-4000:]
    assert recap(out)[HOST]["changed"] == 0, changed_tasks(out)


def _rerun(install) -> str:
    rc, out = run_playbook(install["inventory"], "site.yml", timeout=1500)
    assert rc == 0, out[-4000:]
    return out


def _stamped(out: str) -> bool:
    """Whether the run found its converge stamp holding and skipped every role (playbooks/preflight.yml)."""
    return "Nothing changed since the full run of" in out and "datalab.notebooks.keycloak :" not in out


def _stamp(core, install) -> dict:
    data = core.read_namespaced_secret("datalab-converge-stamp", install["ns"]).data["stamp.json"]
    return json.loads(base64.b64decode(data))


def test_a_rerun_finds_its_stamp_and_skips_every_role(install, core):
    _converged(install)
    out = _rerun(install)
    assert _stamped(out), out[-4000:]
    assert recap(out)[HOST]["changed"] == 0, changed_tasks(out)
    assert "JupyterHub: http://" in out  # the summary is printed all the same
    stamp = _stamp(core, install)
    assert len(stamp["realms"]) == 1 and stamp["renew_at"] > time.time()
    assert any(o.startswith("apps/v1/Deployment %s/keycloak " % install["ns"]) for o in stamp["objects"])


def test_what_a_rerun_repairs_breaks_the_stamp_and_is_repaired(install, core, tmp_path):
    """Drift in the cluster, in Keycloak and on the controller: each makes the next run a full one, which repairs
    it (as a run without the stamp would), and the run after that finds its new stamp again."""
    _converged(install)
    ns = install["ns"]
    assert _stamped(_rerun(install))

    # An object of the install changed by hand.
    client.AppsV1Api(core.api_client).patch_namespaced_deployment(
        "keycloak", ns, {"metadata": {"labels": {"app.kubernetes.io/part-of": None}}})
    out = _rerun(install)
    said = [line for line in out.splitlines() if "Every role runs: objects of the install changed:" in line]
    assert said and f"Deployment {ns}/keycloak" in said[0], out[-4000:]
    labels = client.AppsV1Api(core.api_client).read_namespaced_deployment("keycloak", ns).metadata.labels
    assert labels["app.kubernetes.io/part-of"] == "datalab-notebooks"
    assert _stamped(_rerun(install))

    # The realm changed in Keycloak (a group deleted through the admin API).
    ca = ca_file(core, ns, tmp_path)
    admin = {k: base64.b64decode(v).decode() for k, v in core.read_namespaced_secret("keycloak-admin", ns).data.items()}
    base = install["keycloak"].split("/realms/")[0]
    s = http_session(ca)
    token = s.post(f"{base}/realms/master/protocol/openid-connect/token", timeout=30, data={
        "grant_type": "password", "client_id": "admin-cli", "username": admin["username"],
        "password": admin["password"]}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    groups = s.get(f"{base}/admin/realms/{REALM}/groups", headers=headers, timeout=30).json()
    assert s.delete(f"{base}/admin/realms/{REALM}/groups/{groups[0]['id']}", headers=headers, timeout=30).status_code == 204
    out = _rerun(install)
    assert f"Every role runs: the realm {REALM} in Keycloak differs" in out, out[-4000:]
    after = s.get(f"{base}/admin/realms/{REALM}/groups", headers=headers, timeout=30).json()
    assert sorted(g["name"] for g in after) == sorted(g["name"] for g in groups)
    assert _stamped(_rerun(install))

    # The CA file the keycloak role keeps on the controller, removed.
    ca_kept, = [path for path in _stamp(core, install)["files"] if path.endswith("/keycloak-ca.crt")]
    Path(ca_kept).unlink()
    out = _rerun(install)
    assert f"Every role runs: the file {ca_kept} changed" in out, out[-4000:]
    assert Path(ca_kept).read_text().strip() == core.read_namespaced_config_map("datalab-ca", ns).data["ca.crt"].strip()
    assert _stamped(_rerun(install))

    # Switched off, every role checks everything again.
    rc, out = run_playbook(install["inventory"], "site.yml", "-e", "datalab_converge_stamp=false", timeout=1500)
    assert rc == 0 and "datalab.notebooks.keycloak :" in out and recap(out)[HOST]["changed"] == 0, out[-4000:]


def test_demo_users_log_in_through_the_installs_keycloak(install, core, tmp_path):
    _converged(install)
    ca = ca_file(core, install["ns"], tmp_path)
    hub = install["hub"]
    session, home = login(install, ca, ADMIN, ADMIN)
    assert home.status_code == 200 and home.url == f"{hub}/hub/home", (home.status_code, home.url)
    assert session.get(f"{hub}/hub/admin", timeout=30).status_code == 200
    session, home = login(install, ca, MEMBER, MEMBER)
    assert home.url == f"{hub}/hub/home", home.url
    assert session.get(f"{hub}/hub/admin", timeout=30, allow_redirects=False).status_code == 403


def test_a_wrong_password_stays_on_keycloak(install, core, tmp_path):
    _converged(install)
    ca = ca_file(core, install["ns"], tmp_path)
    dummy, page = login(install, ca, MEMBER, "not-the-password")
    assert page.url.startswith(install["keycloak"])
    assert "Invalid username or password" in page.text


def test_the_hub_runs_the_values_the_role_rendered(install, cluster):
    """No stand-in in between: the configuration mounted in the hub pod holds every value the role
    gave Helm (the chart's own defaults fill the rest)."""
    _converged(install)
    ns = install["ns"]
    given = json.loads(subprocess.run([cluster.helm, "--kubeconfig", cluster.kubeconfig, "get", "values",
                                       "jupyterhub", "-n", ns, "-o", "json"],
                                      capture_output=True, text=True, check=True).stdout)
    mounted = yaml.safe_load(subprocess.run(
        ["kubectl", "--kubeconfig", cluster.kubeconfig, "-n", ns, "exec", "deploy/hub", "--",
         "cat", "/usr/local/etc/jupyterhub/secret/values.yaml"],
        capture_output=True, text=True, check=True).stdout)

    assert given["hub"]["config"]["JupyterHub"]["authenticator_class"] == "generic-oauth"
    assert_contains(mounted, given)


def test_a_profile_spawns_a_real_notebook_server_that_answers_through_the_proxy(install, core, real, tmp_path):
    """The spawn form's choices reach a notebook pod that runs on the real node with that CPU, memory
    and image; its Jupyter server answers through the hub's proxy with the user's token; the per-user
    Spark driver Service exists with its ports; stopping the server removes both."""
    _converged(install)
    import_images(real, [NOTEBOOK_IMAGE])
    api, server, dummy = spawn(install, ca_file(core, install["ns"], tmp_path), MEMBER)
    hub = install["hub"]
    assert server["user_options"] == {"profile": server["profile"], **SPAWN_OPTIONS}
    (pod,) = core.list_namespaced_pod(install["ns"], label_selector="component=singleuser-server").items
    assert pod.spec.node_name == real["name"]
    (container,) = [c for c in pod.spec.containers if c.name == "notebook"]
    assert container.image == images_api.ensure(NOTEBOOK_IMAGE).refs[0]
    # "2 GiB" is the second memory choice (the first, 1 GiB, is the default): KubeSpawner's G is 2**30 bytes
    assert container.resources.limits == {"cpu": "1", "memory": str(2 * 2**30)}, container.resources.limits
    assert container.resources.requests == {"cpu": "1", "memory": str(2 * 2**30)}, container.resources.requests
    status = api.get(f"{hub}/user/{MEMBER}/api/status", timeout=30)
    assert status.status_code == 200 and "started" in status.json(), status.text[:300]
    service = core.read_namespaced_service(pod.metadata.name, install["ns"])
    assert sorted((p.name, p.port) for p in service.spec.ports) == [
        ("spark-block-manager", 7777), ("spark-driver", 2222), ("spark-ui", 4040)]
    assert service.spec.cluster_ip == "None"

    stopped = api.delete(f"{hub}/hub/api/users/{MEMBER}/server", timeout=60)
    assert stopped.status_code in (202, 204), stopped.text[:300]
    _until(lambda: not core.list_namespaced_pod(install["ns"], field_selector=f"metadata.name={pod.metadata.name}").items,
           180, "the notebook pod to go")
    _until(lambda: not core.list_namespaced_service(
        install["ns"], field_selector=f"metadata.name={pod.metadata.name}").items, 60, "the driver Service to go")
