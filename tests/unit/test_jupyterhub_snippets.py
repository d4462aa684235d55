"""The jupyterhub role's hub.extraConfig snippets, run against a minimal `c` and a fake spawner.

These check the snippets' own logic only (what they set, what they send to the API);
running them inside a real JupyterHub with KubeSpawner 7.0 and 7.1 is the e2e tests' job.
The driver-Service hook is given a spawner that offers only what the snippet may use
(`api`, `log` and the timeouts): a `get_service_manifest` of either KubeSpawner signature
raises, so a hook that relied on it would fail here.
"""
from __future__ import annotations

import asyncio
import importlib
import json
import logging
from pathlib import Path

import pytest

SNIPPETS = Path(__file__).resolve().parents[2] / "roles" / "jupyterhub" / "files" / "hub-config"


class Section(dict):
    """One section of a traitlets Config: attribute access onto a dict."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    def __setattr__(self, name, value):
        self[name] = value


class Config(dict):
    """Enough of traitlets' Config for the snippets: sections appear on first access."""

    def __getattr__(self, name):
        if name not in self:
            self[name] = Section()
        return self[name]


def run_snippet(name, c=None, environ=None, monkeypatch=None):
    c = c if c is not None else Config()
    if environ is not None:
        assert monkeypatch is not None
        for key in ("KEYCLOAK_NODEPORT_URL", "KEYCLOAK_SERVICE_URL", "KEYCLOAK_NODE_IP", "KEYCLOAK_REALM", "OAUTH_CLIENT_ID",
                    "OAUTH_CLIENT_SECRET", "OAUTH_CALLBACK_URL", "DATALAB_HUB_NODE_PORT",
                    "DATALAB_DRIVER_SERVICE_LABELS", "DATALAB_PROFILE_ORDER"):
            monkeypatch.delenv(key, raising=False)
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
    namespace = {"c": c, "__name__": f"hub.extraConfig.{name}"}
    exec(compile((SNIPPETS / f"{name}.py").read_text(), name, "exec"), namespace)  # noqa: S102 - as the chart does
    return c, namespace


def test_snippets_are_the_files_the_role_ships():
    names = sorted(p.stem for p in SNIPPETS.glob("*.py"))
    assert names == ["01-security-context", "02-spark-driver-service", "03-keycloak-endpoints", "04-profile-order"]


# --- 01 security context ---------------------------------------------------------------------

def test_security_context_sets_restricted_defaults():
    c, _ns = run_snippet("01-security-context")
    assert c.KubeSpawner.pod_security_context == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert c.KubeSpawner.container_security_context == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def test_security_context_keeps_what_hub_config_already_sets():
    c = Config()
    c.KubeSpawner.container_security_context = {"readOnlyRootFilesystem": True, "runAsNonRoot": False}
    run_snippet("01-security-context", c)
    csc = c.KubeSpawner.container_security_context
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["runAsNonRoot"] is False  # explicit configuration wins
    assert csc["capabilities"] == {"drop": ["ALL"]}


def test_security_context_keys_are_camel_case_as_kubespawner_requires():
    c, _ns = run_snippet("01-security-context")
    for trait in ("pod_security_context", "container_security_context"):
        assert all("_" not in key for key in c.KubeSpawner[trait]), trait


# --- 02 Spark driver Service -------------------------------------------------------------------

POD = {
    "metadata": {
        "name": "jupyter-isla-2ewilliams",
        "namespace": "datalab-a",
        "uid": "0f3c6d1e-aaaa-bbbb-cccc-000000000001",
        "labels": {
            "app": "jupyterhub",
            "app.kubernetes.io/name": "jupyterhub",
            "app.kubernetes.io/instance": "jupyterhub",
            "release": "jupyterhub",
            "component": "singleuser-server",
            "hub.jupyter.org/username": "isla-2ewilliams",
            "hub.jupyter.org/servername": "",
            "hub.jupyter.org/network-access-hub": "true",
            "app.kubernetes.io/part-of": "datalab-notebooks",
        },
    }
}
LABELS = {"app.kubernetes.io/part-of": "datalab-notebooks", "app.kubernetes.io/managed-by": "datalab.notebooks",
          "app.kubernetes.io/instance": "datalab-a", "app.kubernetes.io/name": "spark-driver"}


class ApiError(Exception):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status = status


class FakeApiClient:
    @staticmethod
    def sanitize_for_serialization(obj):
        return json.loads(json.dumps(obj))


class FakeCoreV1:
    """The part of kubernetes_asyncio's CoreV1Api the hook uses, with an in-memory store."""

    def __init__(self, existing=None, fail_create=None):
        self.api_client = FakeApiClient()
        self.services = dict(existing or {})
        self.calls = []
        self.fail_create = list(fail_create or [])

    async def create_namespaced_service(self, namespace, body):
        self.calls.append(("create", namespace, body["metadata"]["name"]))
        if self.fail_create:
            raise ApiError(self.fail_create.pop(0))
        key = (namespace, body["metadata"]["name"])
        if key in self.services:
            raise ApiError(409)
        self.services[key] = json.loads(json.dumps(body))
        return self.services[key]

    async def read_namespaced_service(self, name, namespace):
        self.calls.append(("read", namespace, name))
        if (namespace, name) not in self.services:
            raise ApiError(404)
        return self.services[(namespace, name)]

    async def delete_namespaced_service(self, name, namespace):
        self.calls.append(("delete", namespace, name))
        if self.services.pop((namespace, name), None) is None:
            raise ApiError(404)
        return {"status": "Success"}


class Spawner:
    """What the snippet may use of a KubeSpawner; the version-specific helpers raise."""

    k8s_api_request_timeout = 3
    k8s_api_request_retry_timeout = 5

    def __init__(self, api):
        self.api = api
        self.log = logging.getLogger("fake-spawner")

    def get_service_manifest(self, *args, **kwargs):  # both 7.0 (owner) and 7.1 (owner, port)
        raise AssertionError("the hook must not depend on KubeSpawner.get_service_manifest")

    async def _ensure_not_exists(self, *args, **kwargs):
        raise AssertionError("the hook must not use KubeSpawner's private helpers")

    async def _make_create_resource_request(self, *args, **kwargs):
        raise AssertionError("the hook must not use KubeSpawner's private helpers")


@pytest.fixture()
def driver(monkeypatch):
    c, ns = run_snippet("02-spark-driver-service", environ={"DATALAB_DRIVER_SERVICE_LABELS": json.dumps(LABELS)},
                        monkeypatch=monkeypatch)
    return c, ns


def test_hook_is_registered(driver):
    c, ns = driver
    assert c.KubeSpawner.after_pod_created_hook is ns["datalab_spark_driver_service_hook"]
    assert asyncio.iscoroutinefunction(c.KubeSpawner.after_pod_created_hook)


def test_service_manifest_is_headless_owned_by_the_pod(driver):
    _c, ns = driver
    svc = ns["datalab_spark_driver_service"](POD, LABELS)
    assert svc["metadata"]["name"] == POD["metadata"]["name"]
    assert svc["metadata"]["namespace"] == "datalab-a"
    assert svc["spec"]["clusterIP"] == "None"
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {"spark-ui": (4040, 4040), "spark-driver": (2222, 2222), "spark-block-manager": (7777, 7777)}
    [owner] = svc["metadata"]["ownerReferences"]
    assert owner == {"apiVersion": "v1", "kind": "Pod", "name": POD["metadata"]["name"],
                     "uid": POD["metadata"]["uid"], "blockOwnerDeletion": False}
    # The selector singles out this user's server and nothing that varies per spawn.
    assert svc["spec"]["selector"] == {k: POD["metadata"]["labels"][k] for k in (
        "app", "app.kubernetes.io/name", "app.kubernetes.io/instance", "release", "component",
        "hub.jupyter.org/username", "hub.jupyter.org/servername")}
    for key, value in LABELS.items():
        assert svc["metadata"]["labels"][key] == value
    assert svc["metadata"]["labels"]["hub.jupyter.org/username"] == "isla-2ewilliams"


def test_service_manifest_refuses_a_pod_without_labels(driver):
    _c, ns = driver
    pod = {"metadata": dict(POD["metadata"], labels={})}
    with pytest.raises(ValueError, match="no labels"):
        ns["datalab_spark_driver_service"](pod)


def test_hook_creates_the_service(driver):
    c, _ns = driver
    api = FakeCoreV1()
    asyncio.run(c.KubeSpawner.after_pod_created_hook(Spawner(api), POD))
    svc = api.services[("datalab-a", POD["metadata"]["name"])]
    assert svc["metadata"]["ownerReferences"][0]["uid"] == POD["metadata"]["uid"]
    assert svc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "datalab-notebooks"
    assert [call[0] for call in api.calls] == ["create"]


def test_hook_keeps_an_equivalent_service(driver):
    c, ns = driver
    existing = ns["datalab_spark_driver_service"](POD, LABELS)
    existing["spec"]["clusterIPs"] = ["None"]  # fields the API server adds do not matter
    api = FakeCoreV1({("datalab-a", POD["metadata"]["name"]): existing})
    result = asyncio.run(ns["datalab_ensure_service"](api, ns["datalab_spark_driver_service"](POD, LABELS),
                                                      logging.getLogger("t")))
    assert result == "unchanged"
    assert [call[0] for call in api.calls] == ["create", "read"]


def test_hook_replaces_a_service_left_by_an_earlier_pod(driver):
    c, ns = driver
    stale = ns["datalab_spark_driver_service"]({"metadata": dict(POD["metadata"], uid="old-uid")}, LABELS)
    api = FakeCoreV1({("datalab-a", POD["metadata"]["name"]): stale})
    result = asyncio.run(ns["datalab_ensure_service"](api, ns["datalab_spark_driver_service"](POD, LABELS),
                                                      logging.getLogger("t"), interval=0))
    assert result == "replaced"
    assert [call[0] for call in api.calls] == ["create", "read", "delete", "create"]
    assert api.services[("datalab-a", POD["metadata"]["name"])]["metadata"]["ownerReferences"][0]["uid"] == \
        POD["metadata"]["uid"]


def test_hook_replaces_a_service_of_another_shape(driver):
    _c, ns = driver
    other = ns["datalab_spark_driver_service"](POD, LABELS)
    other["spec"]["ports"] = other["spec"]["ports"][:1]
    api = FakeCoreV1({("datalab-a", POD["metadata"]["name"]): other})
    result = asyncio.run(ns["datalab_ensure_service"](api, ns["datalab_spark_driver_service"](POD, LABELS),
                                                      logging.getLogger("t"), interval=0))
    assert result == "replaced"
    assert len(api.services[("datalab-a", POD["metadata"]["name"])]["spec"]["ports"]) == 3


def test_hook_survives_a_service_deleted_between_create_and_read(driver):
    _c, ns = driver
    api = FakeCoreV1(fail_create=[409])  # conflict reported, but the object is gone when read
    result = asyncio.run(ns["datalab_ensure_service"](api, ns["datalab_spark_driver_service"](POD, LABELS),
                                                      logging.getLogger("t"), interval=0))
    assert result == "created"
    assert [call[0] for call in api.calls] == ["create", "read", "create"]


def test_hook_raises_other_api_errors_so_the_spawn_fails_visibly(driver):
    c, _ns = driver
    api = FakeCoreV1(fail_create=[403])
    with pytest.raises(ApiError) as err:
        asyncio.run(c.KubeSpawner.after_pod_created_hook(Spawner(api), POD))
    assert err.value.status == 403


def test_hook_gives_up_after_its_timeout(driver):
    _c, ns = driver
    api = FakeCoreV1(fail_create=[409] * 1000)
    api.services[("datalab-a", POD["metadata"]["name"])] = {"metadata": {"ownerReferences": []}, "spec": {}}

    async def never_gone(name, namespace):  # a Service that cannot be deleted
        api.calls.append(("delete", namespace, name))

    api.delete_namespaced_service = never_gone
    with pytest.raises(TimeoutError, match="could not be created"):
        asyncio.run(ns["datalab_ensure_service"](api, ns["datalab_spark_driver_service"](POD, LABELS),
                                                 logging.getLogger("t"), timeout=0.05, interval=0.01))


# --- 03 Keycloak endpoints ---------------------------------------------------------------------

OAUTH_ENV = {
    "KEYCLOAK_NODEPORT_URL": "127.0.1.2:31093",
    "KEYCLOAK_NODE_IP": "127.0.1.2",
    "KEYCLOAK_REALM": "demo-a",
    "OAUTH_CLIENT_ID": "jupyterhub",
    "OAUTH_CLIENT_SECRET": "s3cr3t-from-the-secret",
    "OAUTH_CALLBACK_URL": "http://127.0.1.2:31095/hub/oauth_callback",
}


def test_endpoints_and_callback_are_assigned(monkeypatch):
    c, _ns = run_snippet("03-keycloak-endpoints", environ=OAUTH_ENV, monkeypatch=monkeypatch)
    g = c.GenericOAuthenticator
    base = "https://127.0.1.2:31093/realms/demo-a/protocol/openid-connect"
    assert g.authorize_url == f"{base}/auth"
    assert g.token_url == f"{base}/token"
    assert g.userdata_url == f"{base}/userinfo"
    assert g.oauth_callback_url == "http://127.0.1.2:31095/hub/oauth_callback"
    assert g.client_id == "jupyterhub"
    assert g.client_secret == "s3cr3t-from-the-secret"


def test_the_hubs_own_calls_go_to_the_service_name_and_the_browser_to_the_node(monkeypatch):
    """Keycloak's Service name stays valid when Keycloak moves to another node; the node address is for the
    browser only."""
    env = dict(OAUTH_ENV, KEYCLOAK_SERVICE_URL="https://keycloak.dl-a.svc.cluster.local:8443/")
    c, _ns = run_snippet("03-keycloak-endpoints", environ=env, monkeypatch=monkeypatch)
    g = c.GenericOAuthenticator
    assert g.authorize_url == "https://127.0.1.2:31093/realms/demo-a/protocol/openid-connect/auth"
    service = "https://keycloak.dl-a.svc.cluster.local:8443/realms/demo-a/protocol/openid-connect"
    assert (g.token_url, g.userdata_url) == (f"{service}/token", f"{service}/userinfo")


def test_callback_falls_back_to_the_node_address(monkeypatch):
    env = dict(OAUTH_ENV, OAUTH_CALLBACK_URL="", DATALAB_HUB_NODE_PORT="31195")
    c, _ns = run_snippet("03-keycloak-endpoints", environ=env, monkeypatch=monkeypatch)
    assert c.GenericOAuthenticator.oauth_callback_url == "http://127.0.1.2:31195/hub/oauth_callback"


def test_public_keycloak_address_and_default_realm(monkeypatch):
    env = dict(OAUTH_ENV, KEYCLOAK_NODEPORT_URL="keycloak.example.com", KEYCLOAK_REALM="")
    c, _ns = run_snippet("03-keycloak-endpoints", environ=env, monkeypatch=monkeypatch)
    assert c.GenericOAuthenticator.token_url == "https://keycloak.example.com/realms/demo/protocol/openid-connect/token"


@pytest.mark.parametrize("missing, message", [
    ("KEYCLOAK_NODEPORT_URL", "keycloak-address"),
    ("OAUTH_CLIENT_SECRET", "jupyterhub-oauth-client"),
])
def test_missing_settings_stop_the_hub_with_a_reason(monkeypatch, missing, message):
    env = dict(OAUTH_ENV, **{missing: ""})
    with pytest.raises(RuntimeError, match=message):
        run_snippet("03-keycloak-endpoints", environ=env, monkeypatch=monkeypatch)


def test_the_secret_is_not_left_in_the_config_namespace(monkeypatch):
    _c, ns = run_snippet("03-keycloak-endpoints", environ=OAUTH_ENV, monkeypatch=monkeypatch)
    assert "datalab_oauth" not in ns


# --- 04 profile order ----------------------------------------------------------------------------

def test_profile_choices_are_put_back_in_numeric_order(monkeypatch):
    """Without DATALAB_PROFILE_ORDER (or for options it does not name): numeric order where it exists."""
    monkeypatch.delenv("DATALAB_PROFILE_ORDER", raising=False)
    c = Config()
    sorted_by_helm = {k: {"display_name": k} for k in sorted(["1", "16", "2", "32", "4", "8", "0.5"])}
    memory = {k: {"display_name": k} for k in sorted(["1 GiB", "128 GiB", "16 GiB", "2 GiB", "4 GiB"])}
    images = {k: {"display_name": k} for k in ["python-3.11.9", "spark-3.5.2"]}
    c.KubeSpawner.profile_list = [{"display_name": "p", "profile_options": {
        "cpu": {"choices": sorted_by_helm}, "memory": {"choices": memory}, "image": {"choices": images}}}]
    run_snippet("04-profile-order", c)
    options = c.KubeSpawner.profile_list[0]["profile_options"]
    assert list(options["cpu"]["choices"]) == ["0.5", "1", "2", "4", "8", "16", "32"]
    assert list(options["memory"]["choices"]) == ["1 GiB", "2 GiB", "4 GiB", "16 GiB", "128 GiB"]
    assert list(options["image"]["choices"]) == ["python-3.11.9", "spark-3.5.2"]


def helm_sorted_profile():
    """The role's profile as the hub receives it from Helm: every map's keys sorted."""
    profile = {"display_name": "Spark notebook", "profile_options": {
        "cpu": {"display_name": "CPU", "choices": {k: {"display_name": k} for k in ["1", "2", "4", "16"]}},
        "memory": {"display_name": "Memory", "choices": {k: {"display_name": k} for k in ["8 GiB", "2 GiB", "16 GiB"]}},
        "image": {"display_name": "Image", "choices": {k: {"display_name": k} for k in ["spark-3.5.2", "python-3.11.9"]}},
    }}
    return json.loads(json.dumps(profile, sort_keys=True))


ORDER = [{"display_name": "Spark notebook", "options": [
    ["cpu", ["4", "1", "2", "16"]], ["memory", ["2 GiB", "8 GiB", "16 GiB"]], ["image", ["spark-3.5.2", "python-3.11.9"]]]}]


def test_profile_options_and_choices_are_put_back_in_the_rendered_order(monkeypatch):
    profile = helm_sorted_profile()
    assert list(profile["profile_options"]) == ["cpu", "image", "memory"]  # what Helm does to them
    c = Config()
    c.KubeSpawner.profile_list = [profile]
    run_snippet("04-profile-order", c, environ={"DATALAB_PROFILE_ORDER": json.dumps(ORDER)}, monkeypatch=monkeypatch)
    options = c.KubeSpawner.profile_list[0]["profile_options"]
    assert list(options) == ["cpu", "memory", "image"]
    assert list(options["cpu"]["choices"]) == ["4", "1", "2", "16"]
    assert list(options["memory"]["choices"]) == ["2 GiB", "8 GiB", "16 GiB"]
    assert list(options["image"]["choices"]) == ["spark-3.5.2", "python-3.11.9"]
    assert options["cpu"]["display_name"] == "CPU"


def test_what_the_order_does_not_name_follows(monkeypatch):
    """An option or choice added through jupyterhub_extra_values, and a profile of its own."""
    profile = helm_sorted_profile()
    profile["profile_options"]["cpu"]["choices"]["0.5"] = {"display_name": "0.5"}
    profile["profile_options"]["gpu"] = {"display_name": "GPU", "choices": {"10": {}, "2": {}, "1": {}}}
    other = {"display_name": "Other", "profile_options": {
        "memory": {"choices": {"16 GiB": {}, "2 GiB": {}}}, "cpu": {"choices": {"8": {}, "16": {}}}}}
    c = Config()
    c.KubeSpawner.profile_list = [json.loads(json.dumps(profile, sort_keys=True)), other]
    run_snippet("04-profile-order", c, environ={"DATALAB_PROFILE_ORDER": json.dumps(ORDER)}, monkeypatch=monkeypatch)
    options = c.KubeSpawner.profile_list[0]["profile_options"]
    assert list(options) == ["cpu", "memory", "image", "gpu"]
    assert list(options["cpu"]["choices"]) == ["4", "1", "2", "16", "0.5"]
    assert list(options["gpu"]["choices"]) == ["1", "2", "10"]
    other_options = c.KubeSpawner.profile_list[1]["profile_options"]
    assert list(other_options) == ["memory", "cpu"]  # not named: left as they came
    assert list(other_options["memory"]["choices"]) == ["2 GiB", "16 GiB"]
    assert list(other_options["cpu"]["choices"]) == ["8", "16"]


def test_profile_order_leaves_an_unset_or_callable_profile_list_alone():
    c, _ns = run_snippet("04-profile-order")
    assert "profile_list" not in c.KubeSpawner

    def dynamic(spawner):
        return []

    c = Config()
    c.KubeSpawner.profile_list = dynamic
    run_snippet("04-profile-order", c)
    assert c.KubeSpawner.profile_list is dynamic


def test_snippets_run_with_real_traitlets_config(monkeypatch):
    traitlets_config = importlib.import_module("traitlets.config")
    c = traitlets_config.Config()
    c.KubeSpawner.profile_list = [helm_sorted_profile()]
    for name in ("01-security-context", "02-spark-driver-service"):
        run_snippet(name, c, environ={}, monkeypatch=monkeypatch)
    run_snippet("03-keycloak-endpoints", c, environ=OAUTH_ENV, monkeypatch=monkeypatch)
    run_snippet("04-profile-order", c, environ={"DATALAB_PROFILE_ORDER": json.dumps(ORDER)}, monkeypatch=monkeypatch)
    assert list(c.KubeSpawner.profile_list[0]["profile_options"]) == ["cpu", "memory", "image"]
    assert c.GenericOAuthenticator.oauth_callback_url == OAUTH_ENV["OAUTH_CALLBACK_URL"]
    assert c.KubeSpawner.container_security_context["runAsNonRoot"] is True
