"""Every role's public surface, read from its files: defaults, argument specs, internal vars, README.

A role's user-facing variables are its defaults; each is an option of an entry point with the same
default, documented (description, type) and mentioned in the role's README. The `main` options carry
the role's prefix (`datalab_` for the shared settings of role common). Internal vars start with
`_<role>_`; role common also publishes `datalab_*` names (docs/CONTRACT.md).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())
PREFIX = {"common": "datalab_"}


class Loader(yaml.SafeLoader):
    """Knows Ansible's !unsafe tag (a plain string here)."""


Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load(path):
    return yaml.load(path.read_text(), Loader=Loader) or {}  # noqa: S506 - a SafeLoader subclass


def specs(role):
    return load(REPO / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]


def test_every_role_is_covered():
    assert ROLES == ["common", "jupyterhub", "keycloak", "minio", "secret_operator", "spark_image"]


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_spec_agree(role):
    defaults = load(REPO / "roles" / role / "defaults" / "main.yml")
    entries = specs(role)
    options = entries["main"]["options"]
    prefix = PREFIX.get(role, role + "_")
    for name, option in options.items():
        assert name.startswith(prefix), name
        assert option.get("description") and option.get("type"), name
        assert name in defaults, f"{name} has no default in defaults/main.yml"
        assert option.get("default") == defaults[name], name
        if "choices" in option:
            values = defaults[name] if option["type"] == "list" else [defaults[name]]
            assert set(values) <= set(option["choices"]), name
    documented = {}
    for entry, spec in entries.items():
        for name, option in (spec.get("options") or {}).items():
            assert option.get("description") and option.get("type"), f"{entry}: {name}"
            if name in options:  # the same variable as main's: same type and default
                assert (option["type"], option.get("default")) == (options[name]["type"], options[name].get("default")), \
                    f"{entry}: {name}"
            documented[name] = option
    for name, value in defaults.items():
        assert name in documented, f"default {name} is no entry point's option"
        assert documented[name].get("default") == value, name
    if "validate" in entries:  # the preflight's entry point checks what main takes
        assert entries["validate"]["options"] == options


@pytest.mark.parametrize("role", ROLES)
def test_internal_vars_are_prefixed(role):
    path = REPO / "roles" / role / "vars" / "main.yml"
    internal = load(path) if path.exists() else {}
    public = ("datalab_",) if role == "common" else ()
    assert all(name.startswith((f"_{role}_",) + public) for name in internal), \
        [n for n in internal if not n.startswith((f"_{role}_",) + public)]


@pytest.mark.parametrize("role", ROLES)
def test_readme_documents_every_variable(role):
    readme = (REPO / "roles" / role / "README.md").read_text()
    missing = [name for name in load(REPO / "roles" / role / "defaults" / "main.yml") if f"`{name}`" not in readme]
    assert not missing, f"roles/{role}/README.md does not mention {missing}"
