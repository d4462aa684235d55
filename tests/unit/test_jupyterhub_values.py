"""The chart values the jupyterhub role renders, for both authenticators and both TLS providers.

The values are computed by the role itself (entry point `values`, through
tests/unit/playbooks/render_jupyterhub_values.yml) on the controller only: no cluster.
Bad input must be refused there, at role entry, with a message naming the variable.
The profile order is checked the way the hub sees it: the values with every map's keys
sorted (as Helm hands them over), then snippet 04.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLAYBOOK = REPO / "tests" / "unit" / "playbooks" / "render_jupyterhub_values.yml"
PROFILE_ORDER_SNIPPET = REPO / "roles" / "jupyterhub" / "files" / "hub-config" / "04-profile-order.py"
S3A_JARS = ["hadoop-aws-3.3.4.jar", "aws-java-sdk-bundle-1.12.262.jar"]
S3A_PACKAGES = "org.apache.hadoop:hadoop-aws:3.3.4,com.amazonaws:aws-java-sdk-bundle:1.12.262"
CALLBACK = "http://127.0.1.2:31095/hub/oauth_callback"
BASE_VARS = {
    "datalab_namespace": "lab-unit",
    "datalab_hub_node_port": 31095,
    "datalab_keycloak_realm": "demo",
    "datalab_node_selector": {},  # the common role's defaults (the role imports it before rendering)
    "datalab_tolerations": [],
    "datalab_hub_callback_url": CALLBACK,
    "_jupyterhub_oauth_client_checksum": "0123456789abcdef",
    "jupyterhub_admin_users": ["isla.williams"],
}


COMBOS = [(a, t) for a in ("generic-oauth", "native") for t in ("self_signed", "secret_operator")]

# Every case the module checks, rendered by one ansible-playbook run (one host per case).
CASES = {f"{a}-{t}": {"jupyterhub_authenticator": a, "datalab_tls_provider": t} for a, t in COMBOS}
CASES.update({
    "native-no-admins": {"jupyterhub_authenticator": "native", "jupyterhub_admin_users": []},
    "variations": {
        "jupyterhub_profile_cpu_choices": [0.5, 2, "4"],
        "jupyterhub_singleuser_storage_type": "none",
        "jupyterhub_spark_jars": ["/opt/jars/hadoop-aws-3.3.4.jar", "/opt/jars/aws-java-sdk-bundle-1.12.262.jar"],
        "jupyterhub_extra_values": {"ingress": {"enabled": True, "hosts": ["jupyter.example.com"]},
                                    "proxy": {"service": {"type": "ClusterIP"}}},
    },
    "digest-image": {"jupyterhub_profile_images": {
        "spark": "registry.example.com:5000/jupyter/pyspark-notebook:spark-3.5.2@sha256:" + "a" * 64}},
    "declared-order": {
        "jupyterhub_profile_cpu_choices": [4, 1, 0.5, 16],
        "jupyterhub_profile_memory_choices": ["8 GiB", "2 GiB", "16 GiB"],
        "jupyterhub_profile_images": {"spark-3.5.2": "quay.io/jupyter/pyspark-notebook:spark-3.5.2",
                                      "python-3.11.9": "quay.io/jupyter/pyspark-notebook:python-3.11.9",
                                      "all-spark": "quay.io/jupyter/all-spark-notebook:spark-3.5.2"},
    },
    "chart-image-digest": {"jupyterhub_chart_images": {
        "proxy": "registry.example.com:5000/chp:5.2.0@sha256:" + "b" * 64, "hub": ""}},
    "legacy-gb": {"jupyterhub_profile_memory_choices": ["2 GB", "8 GiB", " 16GB "]},
    "jars-packages": {"jupyterhub_spark_jars_source": "packages",
                      "jupyterhub_spark_jars_repositories": ["https://maven.example.com/maven2/"]},
    "jars-none": {"jupyterhub_spark_jars_source": "none", "jupyterhub_spark_jars_packages": [],
                  "jupyterhub_spark_jars": ["/usr/local/spark/jars-extra/hadoop-aws-3.3.4.jar"]},
    "scheduling": {"datalab_node_selector": {"pool.example.com/role": "notebooks"},
                   "datalab_tolerations": [{"key": "pool.example.com/dedicated", "operator": "Equal",
                                            "value": "notebooks", "effect": "NoSchedule"}]},
    "jars-custom-volume-types": {"jupyterhub_executor_allowed_volume_types": ["configMap", "secret", "projected"]},
    "jars-none-custom-volume-types": {"jupyterhub_spark_jars_source": "none",
                                      "jupyterhub_executor_allowed_volume_types": ["configMap", "secret", "projected"]},
})
# The production inventory's hub settings, as that inventory gives them to the role.
PRODUCTION = REPO / "inventories" / "production" / "group_vars" / "notebook_platform"
MIRROR = "registry.example.com/mirror/"
REGISTRY = "registry.example.com/"  # the mirror, and where the spark_image role pushes the executor image


def production_vars():
    import yaml  # noqa: PLC0415 - only this case needs it
    found = {}
    for name in ("spark_image.yml", "jupyterhub.yml"):
        found.update(yaml.safe_load((PRODUCTION / name).read_text()))
    return {**found, "datalab_tls_provider": "secret_operator"}


CASES["production"] = production_vars()
BAD = {
    "bad-cpu-string": ({"jupyterhub_profile_cpu_choices": ["500m"]}, "jupyterhub_profile_cpu_choices"),
    "bad-cpu-mixed": ({"jupyterhub_profile_cpu_choices": [1, "500m"]}, "jupyterhub_profile_cpu_choices"),
    "bad-cpu-zero": ({"jupyterhub_profile_cpu_choices": [0, 2]}, "distinct positive numbers"),
    "bad-memory": ({"jupyterhub_profile_memory_choices": ["4 G"]}, 'written "<N> GiB"'),
    "bad-memory-decimal": ({"jupyterhub_profile_memory_choices": ["4 MB"]}, 'written "<N> GiB"'),
    "bad-image-untagged": ({"jupyterhub_profile_images": {"spark": "quay.io/jupyter/pyspark-notebook"}},
                           "WITH a tag"),
    "bad-chart-image-untagged": ({"jupyterhub_chart_images": {"hub": "registry.example.com/mirror/jupyterhub/k8s-hub"}},
                                 "jupyterhub_chart_images maps"),
    "bad-chart-image-key": ({"jupyterhub_chart_images": {"hubb": "registry.example.com/k8s-hub:4.4.0"}}, "hubb"),
    "bad-chart-image-ref": ({"jupyterhub_chart_images": {"proxy": "Registry.example.com/CHP:5.2.0 x"}},
                            "not a valid image reference"),
    "bad-image-ref": ({"jupyterhub_profile_images": {"spark": "Quay.io/Jupyter:x y"}}, "not a valid image reference"),
    "bad-executor-image": ({"jupyterhub_spark_executor_image": "spark executor"}, "jupyterhub_spark_executor_image"),
    "bad-authenticator": ({"jupyterhub_authenticator": "ldap"}, "jupyterhub_authenticator"),
    "bad-secret-name": ({"jupyterhub_executor_allowed_secrets": ["Keycloak_Admin"]},
                        "jupyterhub_executor_allowed_secrets"),
    "bad-volume-type": ({"jupyterhub_executor_allowed_volume_types": ["hostpath"]},
                        "jupyterhub_executor_allowed_volume_types"),
    "bad-s3-endpoint": ({"jupyterhub_s3_endpoint": "minio:9000"}, "jupyterhub_s3_endpoint"),
    "bad-jars-source": ({"jupyterhub_spark_jars_source": "maven"}, "jupyterhub_spark_jars_source"),
    "bad-jars-coordinates": ({"jupyterhub_spark_jars_packages": ["hadoop-aws-3.3.4.jar"]},
                             "group:artifact:version"),
    "bad-jars-empty": ({"jupyterhub_spark_jars_packages": []}, "jupyterhub_spark_jars_packages"),
}
CASES.update({name: overrides for name, (overrides, _expected) in BAD.items()})
# "fatal: [host]: FAILED! => {...}", or "failed: [host] (item=...) => {...}" inside a loop
FATAL = re.compile(r"^(?:fatal|failed): \[([^\]\s]+)[^\]]*\].*? => (\{.*)$", re.M)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """{case: {"values": dict or None, "failure": str or None}} for every case of CASES."""
    work = tmp_path_factory.mktemp("render")
    hosts = {name: {**BASE_VARS, "datalab_tls_provider": "self_signed", **overrides}
             for name, overrides in CASES.items()}
    inventory = work / "inventory.json"
    inventory.write_text(json.dumps({"all": {"hosts": hosts}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), "--forks", "8", str(PLAYBOOK),
                           "-e", f"render_output_dir={work}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    output = proc.stdout + proc.stderr
    failures = {}
    for m in FATAL.finditer(output):
        try:
            failures.setdefault(m.group(1), json.loads(m.group(2)).get("msg", m.group(2)))
        except ValueError:
            failures.setdefault(m.group(1), m.group(2))
    found = {}
    for name in CASES:
        out = work / f"{name}.json"
        policy = work / f"{name}.policy.json"
        found[name] = {"values": json.loads(out.read_text()) if out.exists() else None,
                       "policy_volume_types": json.loads(policy.read_text()) if policy.exists() else None,
                       "failure": failures.get(name), "output": output}
    return found


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def values_of(results, name):
    result = results[name]
    assert result["values"] is not None, f"case {name} failed: {result['failure']}\n{result['output'][-3000:]}"
    return result["values"]


@pytest.fixture(scope="module")
def rendered(results):
    def get(authenticator, tls):
        return values_of(results, f"{authenticator}-{tls}")
    return get


# --- common to every combination ------------------------------------------------------------------

@pytest.mark.parametrize("authenticator, tls", COMBOS)
def test_proxy_and_chart_features(rendered, authenticator, tls):
    v = rendered(authenticator, tls)
    assert v["proxy"]["service"]["type"] == "NodePort"
    assert v["proxy"]["service"]["nodePorts"]["http"] == 31095
    assert v["prePuller"]["hook"]["enabled"] is False
    assert v["prePuller"]["continuous"]["enabled"] is False
    assert v["scheduling"]["userScheduler"]["enabled"] is False


@pytest.mark.parametrize("authenticator, tls", COMBOS)
def test_user_servers(rendered, authenticator, tls):
    su = rendered(authenticator, tls)["singleuser"]
    assert su["serviceAccountName"] == "spark"
    assert su["networkPolicy"]["enabled"] is False
    assert "cmd" in su and su["cmd"] is None
    assert su["extraEnv"]["NAMESPACE"] == {"valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    assert su["extraEnv"]["S3_ENDPOINT"] == "http://minio:9000/"
    assert su["extraEnv"]["S3_CREDENTIALS_PATH"] == "/minio-s3-credentials"
    assert su["extraEnv"]["SPARK_SERVICE_ACCOUNT"] == "spark"
    assert su["extraEnv"]["SPARK_EXECUTOR_IMAGE"]
    assert su["image"] == {"name": "quay.io/jupyter/pyspark-notebook", "tag": "spark-3.5.2"}
    volumes = {vol["name"]: vol for vol in su["storage"]["extraVolumes"]}
    mounts = {m["name"]: m for m in su["storage"]["extraVolumeMounts"]}
    assert volumes["s3-credentials"]["secret"]["secretName"] == "minio-s3-credentials"
    assert mounts["s3-credentials"]["mountPath"] == "/minio-s3-credentials"
    assert volumes["notebooks"]["configMap"]["name"] == "jupyterhub-notebooks"
    assert mounts["notebooks"]["mountPath"] == su["extraEnv"]["DATALAB_NOTEBOOK_DIR"]
    assert mounts["datalab-ca"]["mountPath"] + "/ca.crt" == su["extraEnv"]["DATALAB_CA_FILE"]
    # either provider: the CA's ConfigMap (self-signed, or the secret-operator's TrustStore output)
    assert volumes["datalab-ca"] == {"name": "datalab-ca", "configMap": {
        "name": "datalab-ca", "optional": authenticator != "generic-oauth"}}


@pytest.mark.parametrize("authenticator, tls", COMBOS)
def test_s3a_jars_come_from_the_executor_image(rendered, authenticator, tls):
    """Default: no Ivy, no internet - an init container copies the executor image's jars for the driver."""
    su = rendered(authenticator, tls)["singleuser"]
    env = su["extraEnv"]
    assert env["SPARK_JARS"].split(",") == [f"/opt/datalab/jars/{jar}" for jar in S3A_JARS]
    assert env["SPARK_JARS_PACKAGES"] == ""
    assert env["SPARK_JARS_REPOSITORIES"] == ""
    [init] = su["initContainers"]
    assert init["name"] == "spark-jars"
    assert init["image"] == env["SPARK_EXECUTOR_IMAGE"] == "datalab/spark-executor:3.5.2-python3.11"
    # argv, no shell: the jars where the spark_image role bakes them, into the shared volume
    assert init["command"] == ["cp", "-v", *[f"/opt/spark/jars/{jar}" for jar in S3A_JARS], "/opt/datalab/jars/"]
    assert init["volumeMounts"] == [{"name": "spark-jars", "mountPath": "/opt/datalab/jars"}]
    security = init["securityContext"]
    assert security["runAsNonRoot"] is True and security["allowPrivilegeEscalation"] is False
    assert security["runAsUser"] == su["uid"] and security["runAsGroup"] == su["fsGid"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    volumes = {vol["name"]: vol for vol in su["storage"]["extraVolumes"]}
    mounts = {m["name"]: m for m in su["storage"]["extraVolumeMounts"]}
    assert volumes["spark-jars"] == {"name": "spark-jars", "emptyDir": {}}
    assert mounts["spark-jars"] == {"name": "spark-jars", "mountPath": "/opt/datalab/jars", "readOnly": True}


@pytest.mark.parametrize("authenticator, tls", COMBOS)
def test_profiles(rendered, authenticator, tls):
    [profile] = rendered(authenticator, tls)["singleuser"]["profileList"]
    options = profile["profile_options"]
    cpu = options["cpu"]["choices"]
    assert set(cpu) == {"1", "2", "4", "8", "16", "32"}
    for name, choice in cpu.items():
        override = choice["kubespawner_override"]
        # KubeSpawner refuses strings here: they must be numbers.
        assert is_int(override["cpu_guarantee"]) and override["cpu_guarantee"] == int(name)
        assert override["cpu_limit"] == override["cpu_guarantee"]
    memory = options["memory"]["choices"]
    assert set(memory) == {f"{n} GiB" for n in (1, 2, 4, 8, 16, 32, 64, 128)}
    assert memory["4 GiB"]["kubespawner_override"] == {"mem_guarantee": "4G", "mem_limit": "4G"}
    assert all(choice["display_name"] == name for name, choice in memory.items())
    images = options["image"]["choices"]
    assert images["spark-3.5.2"]["kubespawner_override"] == {"image": "quay.io/jupyter/pyspark-notebook:spark-3.5.2"}
    assert images["python-3.11.9"]["kubespawner_override"]["image"].endswith(":python-3.11.9")
    assert [name for name, c in cpu.items() if c["default"]] == ["1"]
    assert [name for name, c in images.items() if c["default"]] == ["spark-3.5.2"]


@pytest.mark.parametrize("authenticator, tls", COMBOS)
def test_snippets_and_labels(rendered, authenticator, tls):
    v = rendered(authenticator, tls)
    expected = ["01-security-context", "02-spark-driver-service", "04-profile-order"]
    if authenticator == "generic-oauth":
        expected.insert(2, "03-keycloak-endpoints")
    assert sorted(v["hub"]["extraConfig"]) == expected
    labels = json.loads(v["hub"]["extraEnv"]["DATALAB_DRIVER_SERVICE_LABELS"])
    assert labels["app.kubernetes.io/instance"] == "lab-unit"
    assert labels["app.kubernetes.io/part-of"] == "datalab-notebooks"
    assert labels["app.kubernetes.io/managed-by"] == "datalab.notebooks"
    assert labels["app.kubernetes.io/name"] == "spark-driver"
    for section in (v["hub"]["labels"], v["proxy"]["labels"], v["proxy"]["service"]["labels"],
                    v["singleuser"]["extraLabels"]):
        assert section["app.kubernetes.io/part-of"] == "datalab-notebooks"


def helm_sorted(values):
    """The values as the hub receives them from Helm: every map's keys sorted, lists kept."""
    return json.loads(json.dumps(values, sort_keys=True))


class Section(dict):
    """One section of the hub's config `c`: attribute access onto a dict."""

    def __getattr__(self, name):
        return self[name]

    def __setattr__(self, name, value):
        self[name] = value


def order_as_the_hub_sees_it(values, monkeypatch):
    """Snippet 04 run on the Helm-sorted profile list, with the hub's environment from the values."""
    monkeypatch.setenv("DATALAB_PROFILE_ORDER", values["hub"]["extraEnv"]["DATALAB_PROFILE_ORDER"])
    c = types.SimpleNamespace(KubeSpawner=Section(profile_list=helm_sorted(values)["singleuser"]["profileList"]))
    exec(compile(PROFILE_ORDER_SNIPPET.read_text(), "04-profile-order", "exec"), {"c": c})  # noqa: S102
    [profile] = c.KubeSpawner.profile_list
    return {name: list(option["choices"]) for name, option in profile["profile_options"].items()}


def test_helm_sorting_alone_scrambles_the_profile(results):
    """What snippet 04 is for: without it the form shows CPU, Image, Memory and "1", "16", "2" ..."""
    [profile] = helm_sorted(values_of(results, "generic-oauth-self_signed"))["singleuser"]["profileList"]
    assert list(profile["profile_options"]) == ["cpu", "image", "memory"]
    assert list(profile["profile_options"]["cpu"]["choices"])[:3] == ["1", "16", "2"]


@pytest.mark.parametrize("authenticator, tls", COMBOS)
def test_profile_order_survives_helm_key_sorting(rendered, authenticator, tls, monkeypatch):
    order = order_as_the_hub_sees_it(rendered(authenticator, tls), monkeypatch)
    assert list(order) == ["cpu", "memory", "image"]
    assert order["cpu"] == ["1", "2", "4", "8", "16", "32"]
    assert order["memory"] == [f"{n} GiB" for n in (1, 2, 4, 8, 16, 32, 64, 128)]
    assert order["image"] == ["spark-3.5.2", "python-3.11.9"]


def test_profile_order_is_the_inventory_order(results, monkeypatch):
    values = values_of(results, "declared-order")
    order = order_as_the_hub_sees_it(values, monkeypatch)
    assert order == {"cpu": ["4", "1", "0.5", "16"], "memory": ["8 GiB", "2 GiB", "16 GiB"],
                     "image": ["spark-3.5.2", "python-3.11.9", "all-spark"]}
    assert list(order) == ["cpu", "memory", "image"]
    options = values["singleuser"]["profileList"][0]["profile_options"]
    # the first listed stays the preselected one
    assert [k for k, v in options["cpu"]["choices"].items() if v["default"]] == ["4"]
    assert [k for k, v in options["memory"]["choices"].items() if v["default"]] == ["8 GiB"]
    assert [k for k, v in options["image"]["choices"].items() if v["default"]] == ["spark-3.5.2"]


# --- where the driver gets the S3A connector -------------------------------------------------------

def test_s3a_jars_from_packages_is_the_explicit_opt_in(results):
    su = values_of(results, "jars-packages")["singleuser"]
    env = su["extraEnv"]
    assert env["SPARK_JARS"] == ""
    assert env["SPARK_JARS_PACKAGES"] == S3A_PACKAGES
    assert env["SPARK_JARS_REPOSITORIES"] == "https://maven.example.com/maven2/"
    assert "initContainers" not in su
    assert "spark-jars" not in {vol["name"] for vol in su["storage"]["extraVolumes"]}


def test_no_s3a_jars_from_the_role(results):
    su = values_of(results, "jars-none")["singleuser"]
    env = su["extraEnv"]
    assert env["SPARK_JARS"] == "/usr/local/spark/jars-extra/hadoop-aws-3.3.4.jar"
    assert env["SPARK_JARS_PACKAGES"] == "" and env["SPARK_JARS_REPOSITORIES"] == ""
    assert "initContainers" not in su
    assert "spark-jars" not in {m["name"] for m in su["storage"]["extraVolumeMounts"]}


def test_the_admission_policy_admits_the_jars_volume(results):
    """User servers run as ServiceAccount spark: their emptyDir must stay allowed."""
    assert "emptyDir" in results["generic-oauth-self_signed"]["policy_volume_types"]
    assert results["jars-custom-volume-types"]["policy_volume_types"] == ["configMap", "emptyDir", "projected",
                                                                          "secret"]
    assert results["jars-none-custom-volume-types"]["policy_volume_types"] == ["configMap", "projected", "secret"]


# --- Keycloak login ------------------------------------------------------------------------------

@pytest.mark.parametrize("tls", ["self_signed", "secret_operator"])
def test_generic_oauth(rendered, tls):
    v = rendered("generic-oauth", tls)
    config = v["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "generic-oauth"
    assert config["Authenticator"] == {"allow_all": True, "admin_users": ["isla.williams"]}
    g = config["GenericOAuthenticator"]
    assert g["username_claim"] == "preferred_username"
    assert g["scope"] == ["openid"]
    assert g["validate_server_cert"] is True
    ca_file = g["http_request_kwargs"]["ca_certs"]
    mounts = {m["name"]: m for m in v["hub"]["extraVolumeMounts"]}
    assert ca_file == mounts["datalab-ca"]["mountPath"] + "/ca.crt"
    volumes = {vol["name"]: vol for vol in v["hub"]["extraVolumes"]}
    assert volumes["datalab-ca"]["configMap"] == {"name": "datalab-ca", "optional": False}
    env = v["hub"]["extraEnv"]
    address = {"name": "keycloak-address"}
    assert env["KEYCLOAK_NODEPORT_URL"]["valueFrom"]["configMapKeyRef"] == dict(address, key="keycloakAddress")
    assert env["KEYCLOAK_NODE_IP"]["valueFrom"]["configMapKeyRef"] == dict(address, key="keycloakNodeIp")
    client_secret = {"name": "jupyterhub-oauth-client", "key": "client-secret"}
    assert env["OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == client_secret
    assert env["OAUTH_CLIENT_ID"]["valueFrom"]["secretKeyRef"]["name"] == "jupyterhub-oauth-client"
    assert env["OAUTH_CALLBACK_URL"] == CALLBACK
    assert env["KEYCLOAK_REALM"] == "demo"
    assert v["hub"]["annotations"]["datalab.notebooks/oauth-client-checksum"] == "0123456789abcdef"


def test_client_secret_is_not_in_the_values(rendered):
    text = json.dumps(rendered("generic-oauth", "self_signed")["hub"]["config"])
    assert "client_secret" not in text
    assert "client_id" not in text


# --- Native Authenticator --------------------------------------------------------------------------

@pytest.mark.parametrize("tls", ["self_signed", "secret_operator"])
def test_native(rendered, tls):
    v = rendered("native", tls)
    config = v["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "nativeauthenticator.NativeAuthenticator"
    assert config["NativeAuthenticator"] == {"open_signup": True}
    assert config["Authenticator"]["allow_all"] is True
    assert "GenericOAuthenticator" not in config
    assert not any(k.startswith(("KEYCLOAK", "OAUTH")) for k in v["hub"]["extraEnv"])
    assert "extraVolumes" not in v["hub"]


def test_native_admin_defaults_to_admin(results):
    v = values_of(results, "native-no-admins")
    assert v["hub"]["config"]["Authenticator"]["admin_users"] == ["admin"]


# --- variations ----------------------------------------------------------------------------------

def test_fractional_cpus_extra_values_and_storage(results):
    v = values_of(results, "variations")
    cpu = v["singleuser"]["profileList"][0]["profile_options"]["cpu"]["choices"]
    assert cpu["0.5"]["kubespawner_override"]["cpu_limit"] == 0.5
    assert is_int(cpu["2"]["kubespawner_override"]["cpu_limit"])
    assert is_int(cpu["4"]["kubespawner_override"]["cpu_limit"])
    assert v["singleuser"]["storage"]["type"] == "none"
    env = v["singleuser"]["extraEnv"]
    # more jars come after the connector copied from the executor image
    assert env["SPARK_JARS"].split(",") == [f"/opt/datalab/jars/{jar}" for jar in S3A_JARS] + [
        "/opt/jars/hadoop-aws-3.3.4.jar", "/opt/jars/aws-java-sdk-bundle-1.12.262.jar"]
    assert env["SPARK_JARS_PACKAGES"] == ""
    assert v["ingress"]["hosts"] == ["jupyter.example.com"]
    # merged recursively: the generated keys next to the overridden one stay
    assert v["proxy"]["service"]["type"] == "ClusterIP"
    assert v["proxy"]["service"]["nodePorts"]["http"] == 31095


def test_digest_pinned_default_image(results):
    v = values_of(results, "digest-image")
    ref = CASES["digest-image"]["jupyterhub_profile_images"]["spark"]
    image = v["singleuser"]["image"]
    assert image["name"] == "registry.example.com:5000/jupyter/pyspark-notebook"
    assert f"{image['name']}:{image['tag']}" == ref


def test_node_selector_and_tolerations_reach_every_pod_the_chart_makes(results, rendered):
    values = values_of(results, "scheduling")
    selector = {"pool.example.com/role": "notebooks"}
    toleration = [{"key": "pool.example.com/dedicated", "operator": "Equal", "value": "notebooks",
                   "effect": "NoSchedule"}]
    assert values["hub"]["nodeSelector"] == selector and values["hub"]["tolerations"] == toleration
    assert values["proxy"]["chp"] == {"nodeSelector": selector, "tolerations": toleration}
    assert values["singleuser"]["nodeSelector"] == selector
    assert values["singleuser"]["extraTolerations"] == toleration
    # Unset, the chart's own defaults apply: nothing is written.
    plain = rendered("generic-oauth", "self_signed")
    assert "nodeSelector" not in plain["hub"] and "chp" not in plain["proxy"]
    assert "extraTolerations" not in plain["singleuser"]


# --- refused at role entry -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_refused(results, name):
    overrides, expected = BAD[name]
    result = results[name]
    assert result["values"] is None, f"accepted: {overrides}"
    assert result["failure"] and expected in result["failure"], result["failure"] or result["output"][-3000:]


def test_string_cpu_is_refused_by_the_argument_spec(results):
    failure = results["bad-cpu-string"]["failure"]
    assert "argument" in failure.lower() or "arg spec" in failure.lower(), failure
    assert "jupyterhub_profile_cpu_choices" in failure and "float" in failure, failure


def _volumes_anywhere(values):
    """Every volume the values give a pod: the hub's, the user servers' and any a chart key could add."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("extraVolumes", "volumes") and isinstance(value, list):
                    found.extend(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(values)
    return found


@pytest.mark.parametrize("authenticator, tls", COMBOS)
def test_no_pod_asks_the_secret_operator_for_a_certificate(rendered, authenticator, tls):
    """The CA comes from a ConfigMap (with secret_operator: what the TrustStore datalab-ca makes), never from
    an autoTls ephemeral volume: that would give the pod a one-day certificate and the commons-operator's
    restarter annotation, and user servers would be evicted within a day."""
    v = rendered(authenticator, tls)
    volumes = _volumes_anywhere(v)
    assert volumes, "no volumes found at all: the walk is wrong"
    assert [vol["name"] for vol in volumes if "ephemeral" in vol or "csi" in vol] == []
    text = json.dumps(v)
    assert "secrets.stackable.tech" not in text and "autoTls" not in text
    ca_volumes = [vol for vol in volumes if vol["name"] == "datalab-ca"]
    assert len(ca_volumes) == (2 if authenticator == "generic-oauth" else 1)  # hub (OAuth only) + singleuser
    assert all(vol["configMap"]["name"] == "datalab-ca" for vol in ca_volumes)


def test_memory_choices_written_gb_are_shown_as_the_gib_they_are(results):
    """KubeSpawner's "2G" is 2 GiB: "2 GB" (the old spelling) is accepted for compatibility, shown as "2 GiB",
    and the run warns to write GiB."""
    v = values_of(results, "legacy-gb")
    options = v["singleuser"]["profileList"][0]["profile_options"]
    memory = options["memory"]["choices"]
    assert {name: (c["display_name"], c["kubespawner_override"]["mem_limit"]) for name, c in memory.items()} == {
        "2 GiB": ("2 GiB", "2G"), "8 GiB": ("8 GiB", "8G"), "16 GiB": ("16 GiB", "16G")}
    order = json.loads(v["hub"]["extraEnv"]["DATALAB_PROFILE_ORDER"])[0]["options"]
    assert dict(order)["memory"] == ["2 GiB", "8 GiB", "16 GiB"]
    output = results["legacy-gb"]["output"]
    warning = [line for line in output.splitlines() if "are written" in line and "KubeSpawner gives GiB" in line]
    assert warning and "['2 GB', ' 16GB ']" in warning[0], output[-3000:]


def image_references(values):
    """Every image the values name: {path: reference}, from chart image blocks (name + tag), containers'
    `image` strings and the profiles' kubespawner_override."""
    found = {}

    def walk(node, path):
        if isinstance(node, dict):
            image = node.get("image")
            if isinstance(image, dict) and "name" in image:
                found[path + ".image"] = "%s:%s" % (image["name"], image.get("tag", ""))
            elif isinstance(image, str):
                found[path + ".image"] = image
            for key, value in node.items():
                if key != "image":
                    walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")
    walk(values, "")
    return found


def test_production_values_take_every_image_from_the_mirror(results):
    """inventories/production: the hub, proxy, network tools, secret sync, pre-puller, pause and user-scheduler
    images of the chart, the notebook images and the executor image all come from the internal registry; the hub
    database and the home volumes get the inventory's StorageClass."""
    v = values_of(results, "production")
    images = image_references(v)
    expected_blocks = {".hub.image", ".proxy.chp.image", ".proxy.traefik.image", ".proxy.secretSync.image",
                       ".singleuser.networkTools.image", ".prePuller.hook.image", ".prePuller.pause.image",
                       ".scheduling.userPlaceholder.image", ".scheduling.userScheduler.image", ".singleuser.image"}
    assert expected_blocks <= set(images), sorted(images)
    not_mirrored = {path: ref for path, ref in images.items() if not ref.startswith(REGISTRY)}
    assert not not_mirrored
    assert v["hub"]["image"] == {"name": MIRROR + "jupyterhub/k8s-hub", "tag": "4.4.0"}
    assert v["scheduling"]["userPlaceholder"]["image"] == v["prePuller"]["pause"]["image"] == {
        "name": MIRROR + "k8s/pause", "tag": "3.10.1"}
    assert v["hub"]["db"]["pvc"]["storageClassName"] == "fast-ssd"
    assert v["singleuser"]["storage"]["dynamic"]["storageClass"] == "fast-ssd"


def test_chart_images_default_to_the_chart_and_keep_digests(results):
    default = values_of(results, "generic-oauth-self_signed")
    assert "image" not in default["hub"] and "chp" not in default["proxy"]
    assert "storageClassName" not in default["hub"]["db"]["pvc"] and "dynamic" not in default["singleuser"]["storage"]
    digest = "sha256:" + "b" * 64
    v = values_of(results, "chart-image-digest")
    assert v["proxy"]["chp"]["image"] == {"name": "registry.example.com:5000/chp", "tag": "5.2.0@" + digest}
