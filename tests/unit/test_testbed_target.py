"""Which cluster `make demo` picks (tools/testbed/target.py)."""
import shutil

from tools.testbed import target


def test_user_kubeconfig_wins():
    got = target.select({"KUBECONFIG": "/home/me/.kube/prod"})
    assert got["DATALAB_TARGET"] == "kubeconfig"
    assert got["KUBECONFIG"] == "/home/me/.kube/prod"
    assert got["DATALAB_INVENTORY"] == "inventories/kind"


def test_inventory_can_be_chosen_with_own_kubeconfig():
    got = target.select({"KUBECONFIG": "/k", "DATALAB_INVENTORY": "inventories/production"})
    assert got["DATALAB_INVENTORY"] == "inventories/production"


def test_without_kind_or_docker_engine_the_test_bed_is_used():
    # On the build machines the docker CLI may exist but no engine answers `docker info`.
    if shutil.which("kind") and target.docker_works():
        import pytest
        pytest.skip("this machine has kind and a working Docker: Kind would be chosen")
    got = target.select({})
    assert got["DATALAB_TARGET"] == "testbed"
    assert got["DATALAB_INVENTORY"] == "inventories/local"
    assert got["KUBECONFIG"].endswith("/cluster/kubeconfig")
