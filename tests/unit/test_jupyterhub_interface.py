"""Contracts of the jupyterhub and spark_image roles that need no cluster (every role's argument specs,
defaults and README: test_role_interfaces.py): the two roles name the same jars, the notebook is a clean notebook that
reads its settings from the environment, and the inventories install the real chart."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "roles" / "jupyterhub" / "files" / "notebooks" / "process-s3.ipynb"


class Loader(yaml.SafeLoader):
    """Knows Ansible's !unsafe tag (a plain string here)."""


Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load(path):
    return yaml.load(path.read_text(), Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def test_the_hub_copies_the_jars_the_executor_image_bakes():
    """jupyterhub_spark_jars_source executor_image copies <artifact>-<version>.jar from the image's
    /opt/spark/jars: the two roles' defaults must name the same jars, and the Dockerfile put them there."""
    hub = load(REPO / "roles" / "jupyterhub" / "defaults" / "main.yml")
    image = load(REPO / "roles" / "spark_image" / "defaults" / "main.yml")
    assert hub["jupyterhub_spark_jars_source"] == "executor_image"
    assert hub["jupyterhub_spark_jars_packages"] == [
        f"{jar['group']}:{jar['artifact']}:{jar['version']}" for jar in image["spark_image_jars"]]
    assert hub["jupyterhub_spark_executor_image"] == f"{image['spark_image_name']}:{image['spark_image_tag']}"
    dockerfile = (REPO / "roles" / "spark_image" / "templates" / "Dockerfile.j2").read_text()
    assert "{% for jar in spark_image_jars %} jars/{{ jar.artifact }}-{{ jar.version }}.jar{% endfor %} " \
        "/opt/spark/jars/" in dockerfile


def test_notebook_is_clean_and_configurable():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    for cell in nb["cells"]:
        assert cell.get("id"), "cells need ids (nbformat 4.5)"
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "stored outputs"
    for i, source in enumerate(code):
        ast.parse(source, filename=f"cell {i}")
    text = "\n".join(code)
    for variable in ("SPARK_MASTER", "NAMESPACE", "S3_ENDPOINT", "S3_CREDENTIALS_PATH", "SPARK_JARS",
                     "SPARK_JARS_PACKAGES", "SPARK_EXECUTOR_IMAGE", "KUBERNETES_SERVICE_HOST"):
        assert f'"{variable}"' in text, variable
    for step in ("spark.driver.port", "spark.driver.blockManager.port", "spark.kubernetes.driver.pod.name",
                 "spark.kubernetes.authenticate.executor.serviceAccountName", "fs.s3a.path.style.access",
                 "SimpleAWSCredentialsProvider", "S3FileSystem", "/rewritten/", "/parquet/", "/agg/",
                 "toPandas", "createDataFrame"):
        assert step in text, step
    for download in ("urlopen", "requests.", "wget", "curl", "pip install", "!pip", "%pip", "github.com"):
        assert download not in text, f"the notebook downloads something ({download})"


def test_the_local_inventory_installs_the_real_chart_onto_the_real_node():
    group_vars = REPO / "inventories" / "local" / "group_vars" / "notebook_platform"
    local = load(group_vars / "jupyterhub.yml")
    assert "standins" not in json.dumps(local)
    assert local["jupyterhub_chart_ref"].strip().endswith("~ '/jupyterhub-4.4.0.tgz' }}")
    assert "DATALAB_UPSTREAM_CHARTS" in local["jupyterhub_chart_ref"]
    assert local["jupyterhub_chart_repo_url"] == "" and local["jupyterhub_chart_version"] == "4.4.0"
    from tools.testbed import node

    main = load(group_vars / "main.yml")
    assert main["datalab_node_selector"] == node.REAL_NODE_SELECTOR  # the real node's label and taint
    assert main["datalab_tolerations"] == [node.REAL_NODE_TOLERATION]
    keycloak = load(group_vars / "keycloak.yml")
    assert not any(k.startswith("keycloak_admin_") for k in keycloak), "the realm goes to the install's own Keycloak"


@pytest.mark.parametrize("inventory", ["kind", "production"])
def test_real_inventories_use_the_real_chart(inventory):
    path = REPO / "inventories" / inventory / "group_vars" / "notebook_platform" / "jupyterhub.yml"
    values = load(path) or {}
    assert "standins" not in json.dumps(values)
    assert values.get("jupyterhub_chart_version", "4.4.0").startswith("4.")
