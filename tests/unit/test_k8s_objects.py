"""The terms of the lookup datalab.notebooks.k8s_objects (its reads run in every role test)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible.errors import AnsibleLookupError  # noqa: E402

from ansible_collections.datalab.notebooks.plugins.lookup.k8s_objects import object_list  # noqa: E402

SECRET = {"api_version": "v1", "kind": "Secret", "name": "keycloak-admin"}
CONFIGMAP = {"api_version": "v1", "kind": "ConfigMap", "name": "keycloak-address"}


def test_one_list_or_separate_terms_name_the_same_objects():
    assert object_list([[SECRET, CONFIGMAP]]) == [SECRET, CONFIGMAP]
    assert object_list([SECRET, CONFIGMAP]) == [SECRET, CONFIGMAP]
    assert object_list([[]]) == []


@pytest.mark.parametrize("bad, named", [
    ({"api_version": "v1", "kind": "Secret"}, "name"),
    ({"kind": "Secret", "name": "x"}, "api_version"),
    ({"api_version": "v1", "kind": "", "name": "x"}, "kind"),
    ("Secret/x", "api_version, kind, name"),
])
def test_an_incomplete_object_is_refused_with_what_it_lacks(bad, named):
    with pytest.raises(AnsibleLookupError, match="object 2 .* lacks %s$" % named):
        object_list([[SECRET, bad]])
