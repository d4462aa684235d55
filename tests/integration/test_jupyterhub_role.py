"""The jupyterhub role on the test bed's real API server, with the real Z2JH 4.4.0 chart on the simulated nodes.

An install of its own (namespace dl-jh-<id>, a free NodePort) is converged with
`playbooks/jupyterhub.yml`. What the keycloak role would have written first (Secret
jupyterhub-oauth-client, ConfigMaps keycloak-address and datalab-ca) is created by the
test, so the role is checked against the contract alone. Then:
- the objects, their labels, the values the chart received (`helm get values`) and the NodePort;
- a second run and a `--check --diff` run report changed=0;
- the ValidatingAdmissionPolicy, evaluated by the real API server: an executor-like pod
  and a user server as KubeSpawner builds it from the values the chart received (with the
  init container and emptyDir that bring the S3A jars) are admitted, pods that use Secret
  keycloak-admin (volume, projected, env) or a hostPath are denied with a message naming
  what is not allowed;
- a rotated client secret changes the hub pod's annotation (so the hub restarts);
- a CPU choice "500m" is refused at role entry, before anything is applied.
Only loopback is contacted (the API server).
"""
from __future__ import annotations

import base64
import json
import shutil
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.ansible_run import changed_tasks, host_recap, run_playbook
from tests.node_ports import free_node_ports
from tests.realplatform import helm_values, upstream_chart

CHART = upstream_chart()
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not CHART.is_file(), reason=f"{CHART} is not on this machine (DATALAB_UPSTREAM_CHARTS)")]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NOTEBOOK = REPO / "roles" / "jupyterhub" / "files" / "notebooks" / "process-s3.ipynb"
LABELS = ("app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
          "app.kubernetes.io/name", "app.kubernetes.io/instance")


def playbook(inventory, *args):
    return run_playbook(inventory, "playbooks/jupyterhub.yml", *args, timeout=900)


def write_inventory(path, host, hostvars):
    path.write_text(yaml.safe_dump({"notebook_platform": {"hosts": {host: hostvars}, "vars": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    return path


def ignore_missing(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture(scope="module")
def api_client(cluster):
    return config.new_client_from_config(config_file=cluster.kubeconfig)


@pytest.fixture(scope="module")
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture(scope="module")
def install(cluster, api_client, core, tmp_path_factory):
    uid = uuid.uuid4().hex[:6]
    tmp = tmp_path_factory.mktemp("jupyterhub-role")
    ns, host = f"dl-jh-{uid}", f"jh-{uid}"
    port = free_node_ports(core, 1)[0]
    node_ip = cluster.nodes[0]["ExternalIP"] if cluster.nodes else "127.0.1.2"

    # What the keycloak role writes before the hub (docs/CONTRACT.md).
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "jupyterhub-oauth-client"}, "stringData": {
        "client-id": "jupyterhub", "client-secret": "first-secret-" + uid}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "keycloak-address"}, "data": {
        "keycloakAddress": f"{node_ip}:31093", "keycloakNodeIp": node_ip}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "datalab-ca"}, "data": {"ca.crt": "not checked"}})

    hostvars = {
        "datalab_namespace": ns, "datalab_kubeconfig": cluster.kubeconfig, "datalab_helm_binary": cluster.helm,
        "datalab_tls_provider": "self_signed", "datalab_hub_node_port": port,
        "jupyterhub_chart_ref": str(CHART), "jupyterhub_chart_repo_url": "",
        "jupyterhub_chart_version": "4.4.0", "jupyterhub_helm_timeout": "3m0s",
        "jupyterhub_admin_users": ["isla.williams"],
    }
    inventory = write_inventory(tmp / "hosts.yml", host, hostvars)
    rc, out = playbook(inventory)
    (tmp / "first-run.log").write_text(out)
    info = {"ns": ns, "host": host, "port": port, "node_ip": node_ip, "inventory": inventory, "tmp": tmp,
            "rc": rc, "log": out, "hostvars": hostvars, "policy": f"datalab-{ns}-spark-pods"}
    yield info

    admission = client.AdmissionregistrationV1Api(api_client)
    ignore_missing(admission.delete_validating_admission_policy_binding, info["policy"])
    ignore_missing(admission.delete_validating_admission_policy, info["policy"])
    ignore_missing(core.delete_namespace, ns)


def test_converges(install):
    assert install["rc"] == 0, install["log"][-4000:]


def test_second_run_changes_nothing(install):
    assert install["rc"] == 0
    rc, out = playbook(install["inventory"])
    assert rc == 0, out[-4000:]
    assert host_recap(out, install["host"])["changed"] == 0, changed_tasks(out)


def test_the_same_chart_at_another_path_starts_no_helm(install):
    """The release record names a local chart by its content, not its path: another checkout (or a moved
    copy of the same chart file) finds the release current and leaves Helm alone."""
    assert install["rc"] == 0
    moved = install["tmp"] / "elsewhere" / CHART.name
    moved.parent.mkdir(exist_ok=True)
    (shutil.copytree if CHART.is_dir() else shutil.copy)(CHART, moved)
    rc, out = playbook(install["inventory"], "-e", json.dumps({"jupyterhub_chart_ref": str(moved)}))
    assert rc == 0, out[-4000:]
    assert host_recap(out, install["host"])["changed"] == 0, changed_tasks(out)
    install_task = out.split("TASK [datalab.notebooks.jupyterhub : Install the JupyterHub chart]", 1)[1]
    said = install_task.split("\n", 1)[1].split("TASK [", 1)[0].strip()
    assert said.startswith("skipping:"), install_task[:2000]


def test_check_diff_changes_nothing(install):
    assert install["rc"] == 0
    rc, out = playbook(install["inventory"], "--check", "--diff")
    assert rc == 0, out[-4000:]
    assert host_recap(out, install["host"])["changed"] == 0, changed_tasks(out)


def test_objects_and_labels(install, api_client, core):
    assert install["rc"] == 0
    ns = install["ns"]
    rbac = client.RbacAuthorizationV1Api(api_client)
    admission = client.AdmissionregistrationV1Api(api_client)
    objects = {
        "ServiceAccount spark": core.read_namespaced_service_account("spark", ns),
        "Role spark": rbac.read_namespaced_role("spark", ns),
        "RoleBinding spark": rbac.read_namespaced_role_binding("spark", ns),
        "ConfigMap jupyterhub-notebooks": core.read_namespaced_config_map("jupyterhub-notebooks", ns),
        "ValidatingAdmissionPolicy": admission.read_validating_admission_policy(install["policy"]),
        "ValidatingAdmissionPolicyBinding": admission.read_validating_admission_policy_binding(install["policy"]),
    }
    for what, obj in objects.items():
        labels = obj.metadata.labels or {}
        missing = [k for k in LABELS if k not in labels]
        assert not missing, f"{what} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == ns
    role = objects["Role spark"]
    assert set(role.rules[0].resources) == {"pods", "services", "configmaps", "persistentvolumeclaims"}
    binding = objects["RoleBinding spark"]
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [("ServiceAccount", "spark", ns)]
    notebook = objects["ConfigMap jupyterhub-notebooks"].data["process-s3.ipynb"]
    assert json.loads(notebook) == json.loads(NOTEBOOK.read_text())


def test_objects_the_chart_made_carry_the_install_labels(install, api_client, core):
    """The role's post-renderer labels every object of the release; selectors and pod labels stay the chart's."""
    ns = install["ns"]
    apps = client.AppsV1Api(api_client)
    made = [d for d in apps.list_namespaced_deployment(ns).items if d.metadata.name in ("hub", "proxy")]
    made += [s for s in core.list_namespaced_service(ns).items if s.metadata.name == "proxy-public"]
    made += [c for c in core.list_namespaced_config_map(ns).items if c.metadata.name == "hub"]
    assert len(made) == 4, [o.metadata.name for o in made]
    for obj in made:
        annotations = obj.metadata.annotations or {}
        assert annotations.get("meta.helm.sh/release-name") == "jupyterhub", obj.metadata.name
        labels = obj.metadata.labels or {}
        # managed-by is Helm's: Helm sets it on every object of a release, after any post-renderer.
        assert {k: labels.get(k) for k in LABELS} == {
            "app.kubernetes.io/part-of": "datalab-notebooks", "app.kubernetes.io/managed-by": "Helm",
            "app.kubernetes.io/name": "jupyterhub", "app.kubernetes.io/instance": ns}, obj.metadata.name
    hub = [d for d in made if d.metadata.name == "hub"][0]
    assert hub.spec.selector.match_labels.get("app.kubernetes.io/instance", "jupyterhub") == "jupyterhub"
    assert hub.spec.template.metadata.labels["app.kubernetes.io/instance"] == "jupyterhub"
    # One selector finds the whole install, the chart's objects included.
    selector = "app.kubernetes.io/instance=%s,app.kubernetes.io/part-of=datalab-notebooks" % ns
    found = {d.metadata.name for d in apps.list_namespaced_deployment(ns, label_selector=selector).items}
    assert {"hub", "proxy"} <= found


def test_chart_received_the_values(install, api_client, core, cluster):
    assert install["rc"] == 0
    ns = install["ns"]
    values = helm_values(cluster, ns)
    assert values["proxy"]["service"]["nodePorts"]["http"] == install["port"]
    assert values["singleuser"]["serviceAccountName"] == "spark"
    assert values["singleuser"]["extraEnv"]["NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    env = values["hub"]["extraEnv"]
    assert env["OAUTH_CALLBACK_URL"] == f"http://{install['node_ip']}:{install['port']}/hub/oauth_callback"
    assert env["OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "jupyterhub-oauth-client"
    assert "first-secret" not in json.dumps(values)
    assert values["hub"]["config"]["GenericOAuthenticator"]["http_request_kwargs"]["ca_certs"] == \
        "/etc/datalab/ca/ca.crt"

    svc = core.read_namespaced_service("proxy-public", ns)
    assert svc.spec.type == "NodePort"
    assert [p.node_port for p in svc.spec.ports] == [install["port"]]
    apps = client.AppsV1Api(api_client)
    for name in ("hub", "proxy"):
        status = apps.read_namespaced_deployment(name, ns).status
        assert status.available_replicas == 1, f"Deployment {name} not available"


# --- executor isolation -------------------------------------------------------------------------

def pod(name, service_account="spark", volumes=(), env=(), env_from=()):
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{"name": "executor", "image": "datalab/spark-executor:3.5.2-python3.11",
                            "env": list(env), "envFrom": list(env_from),
                            "volumeMounts": [{"name": v["name"], "mountPath": f"/mnt/{v['name']}"} for v in volumes]}],
            "volumes": list(volumes),
        },
    }


def admit(core, ns, manifest):
    """None if the API server admits `manifest` (dry run), else the denial message."""
    try:
        core.create_namespaced_pod(ns, manifest, dry_run="All")
        return None
    except ApiException as exc:
        assert exc.status in (400, 403, 422), exc
        return json.loads(exc.body)["message"]


def test_user_server_with_the_jars_init_container_is_admitted(install, core, cluster):
    """The user pod from the recorded values: home claim, the values' volumes, env and init containers."""
    assert install["rc"] == 0
    values = helm_values(cluster, install["ns"])
    su = values["singleuser"]
    [init] = su["initContainers"]
    assert init["image"] == su["extraEnv"]["SPARK_EXECUTOR_IMAGE"]
    assert su["extraEnv"]["SPARK_JARS"].startswith("/opt/datalab/jars/") and not su["extraEnv"]["SPARK_JARS_PACKAGES"]
    env = [{"name": k, **({"value": v} if isinstance(v, str) else v)} for k, v in su["extraEnv"].items()]
    home = {"name": "home", "persistentVolumeClaim": {"claimName": "claim-policy-check"}}
    manifest = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jupyter-policy-check"},
        "spec": {
            "serviceAccountName": "spark",
            "initContainers": su["initContainers"],
            "containers": [{"name": "notebook", "image": f"{su['image']['name']}:{su['image']['tag']}", "env": env,
                            "volumeMounts": [{"name": "home", "mountPath": "/home/jovyan"}]
                            + su["storage"]["extraVolumeMounts"]}],
            "volumes": [home] + su["storage"]["extraVolumes"],
        },
    }
    assert {"name": "spark-jars", "emptyDir": {}} in manifest["spec"]["volumes"]
    assert admit(core, install["ns"], manifest) is None


def test_executor_like_pod_is_admitted(install, core):
    assert install["rc"] == 0
    manifest = pod("spark-exec-1", volumes=[
        {"name": "s3", "secret": {"secretName": "minio-s3-credentials"}},
        {"name": "spark-local-dir-1", "emptyDir": {}},
        {"name": "spark-conf-volume-exec", "configMap": {"name": "spark-exec-conf"}},
    ], env=[{"name": "SPARK_USER", "value": "jovyan"}])
    assert admit(core, install["ns"], manifest) is None


@pytest.mark.parametrize("case", ["volume", "projected", "env", "envFrom"])
def test_pod_using_the_keycloak_admin_secret_is_denied(install, core, case):
    assert install["rc"] == 0
    kwargs = {
        "volume": {"volumes": [{"name": "kc", "secret": {"secretName": "keycloak-admin"}}]},
        "projected": {"volumes": [{"name": "kc", "projected": {"sources": [
            {"secret": {"name": "minio-s3-credentials"}}, {"secret": {"name": "keycloak-admin"}}]}}]},
        "env": {"env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "keycloak-admin", "key": "password"}}}]},
        "envFrom": {"env_from": [{"secretRef": {"name": "keycloak-admin"}}]},
    }[case]
    message = admit(core, install["ns"], pod(f"steal-{case.lower()}", **kwargs))
    assert message is not None, "admitted"
    assert "Secret keycloak-admin" in message, message
    assert install["policy"] in message


def test_host_path_is_denied(install, core):
    assert install["rc"] == 0
    message = admit(core, install["ns"], pod("hostpath", volumes=[{"name": "root", "hostPath": {"path": "/"}}]))
    assert message is not None and "volume root" in message, message


def test_spark_account_cannot_start_pods_as_another_account(install, cluster):
    assert install["rc"] == 0
    as_spark = config.new_client_from_config(config_file=cluster.kubeconfig)
    as_spark.set_default_header("Impersonate-User", f"system:serviceaccount:{install['ns']}:spark")
    message = admit(client.CoreV1Api(as_spark), install["ns"], pod("escalate", service_account="default"))
    assert message is not None and "must run as ServiceAccount spark" in message, message


def _as_spark(install, cluster):
    api = config.new_client_from_config(config_file=cluster.kubeconfig)
    api.set_default_header("Impersonate-User", f"system:serviceaccount:{install['ns']}:spark")
    return client.CoreV1Api(api)


def test_executor_like_pod_created_by_the_spark_account_is_admitted(install, cluster):
    """What a notebook's driver creates (as ServiceAccount spark): the executor's volumes and Secret."""
    assert install["rc"] == 0
    manifest = pod("spark-exec-2", volumes=[
        {"name": "s3", "secret": {"secretName": "minio-s3-credentials"}},
        {"name": "spark-local-dir-1", "emptyDir": {}},
    ])
    assert admit(_as_spark(install, cluster), install["ns"], manifest) is None


@pytest.mark.parametrize("case, named", [
    ("privileged", "privileged container executor"),
    ("hostNetwork", "hostNetwork"),
    ("hostPID", "hostPID"),
    ("ephemeral", "ephemeral volume cert"),
])
def test_spark_account_cannot_create_host_access(install, cluster, case, named):
    """A notebook user holds the spark account's token: what it creates may not reach the host, nor ask
    the secret-operator for a certificate (an ephemeral volume), whatever the volume types allow."""
    assert install["rc"] == 0
    manifest = pod(f"escape-{case.lower()}")
    spec = manifest["spec"]
    if case == "privileged":
        spec["containers"][0]["securityContext"] = {"privileged": True}
    elif case == "ephemeral":
        spec["volumes"] = [{"name": "cert", "ephemeral": {"volumeClaimTemplate": {
            "metadata": {"annotations": {"secrets.stackable.tech/class": "tls",
                                         "secrets.stackable.tech/scope": "service=keycloak"}},
            "spec": {"storageClassName": "secrets.stackable.tech", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1"}}}}}}]
    else:
        spec[case] = True
    message = admit(_as_spark(install, cluster), install["ns"], manifest)
    assert message is not None, "admitted"
    assert f"pods created by ServiceAccount spark in namespace {install['ns']} may not use {named}" in message, message
    assert install["policy"] in message


def test_other_accounts_are_not_restricted(install, core):
    assert install["rc"] == 0
    manifest = pod("admin-tool", service_account="default",
                   volumes=[{"name": "kc", "secret": {"secretName": "keycloak-admin"}}])
    assert admit(core, install["ns"], manifest) is None


# --- day 2 and bad input ----------------------------------------------------------------------------

def test_rotated_client_secret_restarts_the_hub(install, api_client, core):
    assert install["rc"] == 0
    ns = install["ns"]
    apps = client.AppsV1Api(api_client)
    key = "datalab.notebooks/oauth-client-checksum"
    before = apps.read_namespaced_deployment("hub", ns).spec.template.metadata.annotations[key]
    core.patch_namespaced_secret("jupyterhub-oauth-client", ns, {"data": {
        "client-secret": base64.b64encode(b"rotated-secret").decode()}})
    rc, out = playbook(install["inventory"])
    assert rc == 0, out[-4000:]
    assert any("Install the JupyterHub chart" in t for t in changed_tasks(out)), changed_tasks(out)
    after = apps.read_namespaced_deployment("hub", ns).spec.template.metadata.annotations[key]
    assert after != before
    assert "rotated-secret" not in out


def test_cpu_quantity_string_is_refused_before_anything_is_applied(install, core, api_client, tmp_path):
    ns = install["ns"] + "-x"
    inventory = write_inventory(tmp_path / "hosts.yml", install["host"] + "-x",
                                dict(install["hostvars"], datalab_namespace=ns))
    rc, out = playbook(inventory, "-e", json.dumps({"jupyterhub_profile_cpu_choices": [1, "500m"]}))
    assert rc != 0
    assert "jupyterhub_profile_cpu_choices" in out and "float" in out, out[-3000:]
    with pytest.raises(ApiException) as err:
        core.read_namespace(ns)
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        client.AdmissionregistrationV1Api(api_client).read_validating_admission_policy(f"datalab-{ns}-spark-pods")
    assert err.value.status == 404


def test_a_failing_chart_install_stops_with_helms_message_and_the_release_state(install, tmp_path):
    """The rescue around the chart install recovers only a pending release; any other failure stops the run.
    (A chart path that does not exist never gets here: the preflight refuses it. A directory that is not a
    chart passes the preflight and fails in Helm.)"""
    broken = tmp_path / "not-a-chart"
    broken.mkdir()
    rc, out = playbook(install["inventory"], "-e", json.dumps({"jupyterhub_chart_ref": str(broken)}))
    assert rc != 0
    stop = "TASK [datalab.notebooks.jupyterhub : Stop unless an interrupted run left the release pending"
    assert stop in out, out[-3000:]
    message = out[out.index(stop):]
    assert "Chart.yaml file is missing" in message and "(release jupyterhub: deployed)" in message, message[:3000]
    assert "Undo the interrupted operation" not in out
    # The release was left as it was.
    rc, out = playbook(install["inventory"])
    assert rc == 0 and host_recap(out, install["host"])["changed"] == 0, changed_tasks(out)
