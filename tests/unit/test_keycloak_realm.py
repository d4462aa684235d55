"""Unit tests for the realm diff/reconcile logic (plugins/module_utils/keycloak_realm*.py, keycloak_compare.py).

No Keycloak: the importer is driven by a fake admin client that answers from a canned realm and
records every write.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".collections"
if (COLLECTIONS / "ansible_collections" / "datalab" / "notebooks").exists() and str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.datalab.notebooks.plugins.module_utils import keycloak_compare as kc  # noqa: E402
from ansible_collections.datalab.notebooks.plugins.module_utils import keycloak_realm as kr  # noqa: E402
from ansible_collections.datalab.notebooks.plugins.module_utils import keycloak_realm_rep as krep  # noqa: E402
from ansible_collections.datalab.notebooks.plugins.module_utils import keycloak_realm_sync as ksync  # noqa: E402
from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_admin import (  # noqa: E402
    AdminVerbs, KeycloakAdmin, KeycloakError)

DEMO = REPO / "tests" / "fixtures" / "realm-demo.json"


# --- comparison helpers ---------------------------------------------------------------------------

@pytest.mark.parametrize("desired,current", [
    ({"a": 1}, {"a": 1, "b": 2}),                      # extra keys in Keycloak are fine
    (["x", "y"], ["y", "x"]),                           # string lists are sets
    ({"attributes": {"k": "true"}}, {"attributes": {"k": True}}),
    ({"n": 300}, {"n": "300"}),
    ({"l": []}, {}),                                    # empty and missing are the same
    ({"m": None}, {"m": "anything"}),                   # null in the file: no opinion
    ([{"name": "a", "v": 1}, {"name": "b"}], [{"name": "b", "x": 0}, {"name": "a", "v": 1}]),
])
def test_same_true(desired, current):
    assert kc.same(desired, current)


@pytest.mark.parametrize("desired,current", [
    ({"a": 1}, {"a": 2}),
    (["x"], ["x", "y"]),
    ({"a": "x"}, {}),
    ([{"name": "a"}], [{"name": "b"}]),
    ({"a": {"b": 1}}, {"a": [1]}),
    (True, "false"),
])
def test_same_false(desired, current):
    assert not kc.same(desired, current)


def test_field_delta_narrows_to_what_differs():
    desired = {"email": "a@x", "attributes": {"department": ["risk"], "site": ["ams"]}, "id": "ignored"}
    current = {"email": "a@x", "attributes": {"department": ["compliance"], "site": ["ams"]}, "id": "other"}
    before, after = kc.field_delta(desired, current, ignore=("id",))
    assert before == {"attributes": {"department": ["compliance"]}}
    assert after == {"attributes": {"department": ["risk"]}}


def test_mask_hides_secrets_but_not_data():
    rep = {"clientId": "hub", "secret": "s3cr3t", "attributes": {"value": "visible"},
           "credentials": [{"type": "password", "value": "pw", "temporary": False}],
           "smtpServer": {"password": "mail", "host": "smtp"}}
    masked = kc.mask(rep)
    text = json.dumps(masked)
    for secret in ("s3cr3t", '"pw"', '"mail"'):
        assert secret not in text
    assert masked["attributes"]["value"] == "visible"
    assert masked["credentials"][0]["type"] == "password"
    assert masked["smtpServer"]["host"] == "smtp"
    assert rep["secret"] == "s3cr3t"  # the input is not modified


def test_multi_and_single_attrs():
    assert kc.multi_attrs({"a": "x", "b": ["1", 2], "c": True, "d": None}) == {
        "a": ["x"], "b": ["1", "2"], "c": ["true"], "d": []}
    assert kc.single_attrs({"a": False, "b": 3, "c": None}) == {"a": "false", "b": "3"}


def test_walk_groups_gives_paths_parents_first():
    groups = [{"name": "A", "subGroups": [{"name": "B", "subGroups": [{"name": "C"}]}]}, {"name": "D"}]
    assert [(p, parent) for p, _g, parent in kc.walk_groups(groups)] == [
        ("/A", ""), ("/A/B", "/A"), ("/A/B/C", "/A/B"), ("/D", "")]


# --- input validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data,fragment", [
    ([], "must be a JSON object"),
    ({}, "no 'realm' name"),
    ({"realm": "x", "users": [{"email": "a@b"}]}, "users[0] must be an object with a 'username'"),
    ({"realm": "x", "groups": [{"name": "a", "subGroups": [{}]}]}, "groups[0].subGroups[0]"),
    ({"realm": "x", "roles": []}, "roles must be an object"),
    ({"realm": "x", "clients": {"clientId": "a"}}, "clients must be a list"),
    ({"realm": "x", "users": [{"username": "u", "groups": "/A"}]}, "groups must be a list"),
])
def test_load_realm_rejects_bad_input(data, fragment):
    with pytest.raises(krep.RealmError) as exc:
        krep.load_realm(data)
    assert fragment in str(exc.value)
    assert "\n" not in str(exc.value)


def test_load_realm_applies_name_override_without_touching_input():
    data = {"realm": "a"}
    assert krep.load_realm(data, "b")["realm"] == "b"
    assert data["realm"] == "a"


def test_read_realm_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(krep.RealmError, match="is not valid JSON"):
        krep.read_realm_file(str(bad))
    with pytest.raises(krep.RealmError, match="cannot read src"):
        krep.read_realm_file(str(tmp_path / "missing.json"))


def test_demo_fixture_is_valid():
    rep = krep.load_realm(krep.read_realm_file(str(DEMO)))
    assert rep["realm"] == "demo"
    assert len(rep["users"]) == 7
    assert all(u["email"] == u["username"] + "@knab.com" for u in rep["users"])
    assert krep.count_groups(rep["groups"]) == 5
    assert krep.user_profile_config(rep)["unmanagedAttributePolicy"] == "ENABLED"
    client = rep["clients"][0]
    assert client["redirectUris"] == ["http://127.0.1.3:31095/hub/oauth_callback"]
    assert client["publicClient"] is False and client["secret"]


def test_creation_payload_drops_unmanaged_types():
    rep = {"realm": "r", "users": [{"username": "u", "attributes": {"a": "1"}}], "clients": [{"clientId": "c"}]}
    body = krep.creation_payload(rep, ("realm", "users"))
    assert "clients" not in body
    assert body["users"][0]["attributes"] == {"a": ["1"]}


# --- the importer against a fake Keycloak -----------------------------------------------------------------

PROFILE = {"attributes": [{"name": n} for n in ("username", "email", "firstName", "lastName")],
           "groups": [{"name": "user-metadata"}]}


class FakeApi(AdminVerbs):
    """Answers reads from a canned realm and records writes, with KeycloakAdmin's interface (its verbs
    are the client's own, on top of this request())."""

    def __init__(self, export=None, users=(), members=None, role_users=None, secrets=None, profile=None):
        self.export = export
        self.users = list(users)
        self.members = members or {}          # group id -> [user]
        self.role_users = role_users or {}    # role name -> [user]
        self.secrets = secrets or {}          # client uuid -> secret
        self.profile = profile or {}
        self.writes = []
        self.requests = 0

    def clone(self):
        """Another connection to the same fake Keycloak (the importer reads on several at once)."""
        other = copy.copy(self)
        other.requests = 0
        return other

    def close(self):
        pass

    def request(self, method, path, query=None, body=None, missing_ok=False):
        self.requests += 1
        if method == "GET":
            return self._get(path, query or {})
        if method == "POST" and path.endswith("/partial-export"):
            return copy.deepcopy(self.export)
        self.writes.append((method, path, copy.deepcopy(body)))
        if method == "POST" and not path.endswith(("partialImport", "composites")) and "role-mappings" not in path:
            return {"id": "new-%d" % len(self.writes)}
        return None

    def _get(self, path, query):
        if path == "/r":
            return None if self.export is None else {"realm": "r"}
        if path == "/r/users/profile":
            return copy.deepcopy(self.profile)
        if path == "/r/users/count":
            return len(self.users)
        if path.endswith("/client-secret"):
            return {"type": "secret", "value": self.secrets.get(path.split("/")[3])}
        if path == "/r/users":
            items = copy.deepcopy(self.users)
        elif "/groups/" in path and path.endswith("/members"):
            items = self.members.get(path.split("/")[3], [])
        elif "/roles/" in path and path.endswith("/users"):
            items = self.role_users.get(path.split("/")[-2], [])
        else:
            raise AssertionError("unexpected GET " + path)
        first = int(query.get("first", 0))
        return items[first:first + int(query.get("max", len(items)))]

    paged = KeycloakAdmin.paged


def _export():
    return {
        "realm": "r", "enabled": True, "displayName": "R",
        "roles": {"realm": [{"id": "role-admin", "name": "admin", "attributes": {}},
                            {"id": "role-default", "name": "default-roles-r", "composite": True,
                             "composites": {"realm": ["offline_access"]}}],
                  "client": {"hub": []}},
        "groups": [{"id": "g-a", "name": "A", "path": "/A", "attributes": {}, "realmRoles": [], "clientRoles": {},
                    "subGroups": [{"id": "g-ab", "name": "B", "path": "/A/B", "subGroups": [],
                                   "realmRoles": [], "clientRoles": {}}]},
                   {"id": "g-m", "name": "M", "path": "/M", "subGroups": [], "realmRoles": [], "clientRoles": {}}],
        "clients": [{"id": "c-hub", "clientId": "hub", "publicClient": False, "secret": kc.SECRET_MASK,
                     "redirectUris": ["http://a/cb"], "attributes": {"pkce.code.challenge.method": "S256"},
                     "defaultClientScopes": ["profile"]}],
        "clientScopes": [{"id": "s-profile", "name": "profile", "protocol": "openid-connect"}],
    }


def _desired(**changes):
    rep = {
        "realm": "r", "enabled": True, "displayName": "R",
        "roles": {"realm": [{"name": "admin"}]},
        "groups": [{"name": "A", "subGroups": [{"name": "B"}]}, {"name": "M"}],
        "clients": [{"clientId": "hub", "publicClient": False, "secret": "hub-secret",
                     "redirectUris": ["http://a/cb"]}],
        "users": [{"username": "Dan", "email": "dan@x", "enabled": True, "attributes": {"dept": "risk"},
                   "groups": ["/A/B"], "realmRoles": ["admin"],
                   "credentials": [{"type": "password", "value": "pw"}]}],
    }
    rep.update(changes)
    return rep


def _fake(**kw):
    # Dan's attribute is not declared: the realm keeps it as an unmanaged attribute.
    kw.setdefault("profile", dict(PROFILE, unmanagedAttributePolicy="ADMIN_EDIT"))
    users = [{"id": "u-dan", "username": "dan", "email": "dan@x", "enabled": True,
              "attributes": {"dept": ["risk"]}, "userProfileMetadata": {"big": True}}]
    return FakeApi(export=_export(), users=users, members={"g-ab": [{"id": "u-dan"}]},
                   role_users={"admin": [{"id": "u-dan"}]}, secrets={"c-hub": "hub-secret"}, **kw)


def _new_realm():
    rep = _desired()
    del rep["users"][0]["attributes"]
    return rep


def test_missing_realm_is_created_with_one_post():
    api = FakeApi(export=None)
    res = kr.RealmImporter(api, _new_realm(), diff=True).run()
    assert [(m, p) for m, p, _body in api.writes] == [("POST", "")]
    assert res.counts["created"]["users"] == 1 and res.counts["created"]["groups"] == 3
    assert res.changed
    assert "pw" not in json.dumps(res.as_dict()["diff"])
    assert "hub-secret" not in json.dumps(res.as_dict())


def test_missing_realm_in_check_mode_writes_nothing():
    api = FakeApi(export=None)
    res = kr.RealmImporter(api, _new_realm(), check_mode=True).run()
    assert api.writes == [] and res.changed


def test_matching_realm_is_unchanged_and_writes_nothing():
    api = _fake()
    res = kr.RealmImporter(api, _desired()).run()
    assert api.writes == []
    assert not res.changed
    assert res.counts["unchanged"] == {"realm": 1, "roles": 1, "groups": 3, "client_scopes": 0, "clients": 1,
                                       "users": 1}


def test_user_attribute_and_membership_change():
    rep = _desired()
    rep["users"][0]["attributes"] = {"dept": ["compliance"]}
    rep["users"][0]["groups"] = ["/M"]
    api = _fake()
    res = kr.RealmImporter(api, rep, diff=True).run()
    assert res.changes == ["updated users/dan (attributes, groups)"]
    writes = [(m, p) for m, p, _body in api.writes]
    assert writes == [("PUT", "/r/users/u-dan"), ("PUT", "/r/users/u-dan/groups/g-m"),
                      ("DELETE", "/r/users/u-dan/groups/g-ab")]
    put = api.writes[0][2]
    assert put["attributes"] == {"dept": ["compliance"]} and "userProfileMetadata" not in put
    (diff,) = res.as_dict()["diff"]
    assert diff["before"] == {"attributes": {"dept": ["risk"]}, "groups": ["/A/B"]}
    assert diff["after"] == {"attributes": {"dept": ["compliance"]}, "groups": ["/M"]}


def test_check_mode_reports_changes_without_writes():
    rep = _desired()
    rep["clients"][0]["redirectUris"] = ["http://b/cb"]
    api = _fake()
    res = kr.RealmImporter(api, rep, check_mode=True).run()
    assert res.changes == ["updated clients/hub (redirectUris)"]
    assert api.writes == []


def test_client_update_never_sends_the_masked_secret():
    rep = _desired()
    rep["clients"][0]["redirectUris"] = ["http://b/cb"]
    api = _fake()
    kr.RealmImporter(api, rep).run()
    ((method, path, body),) = api.writes
    assert (method, path) == ("PUT", "/r/clients/c-hub")
    assert "secret" not in body
    assert body["attributes"] == {"pkce.code.challenge.method": "S256"}  # kept from Keycloak


def test_changed_client_secret_is_set_and_masked_in_diff():
    rep = _desired()
    api = _fake()
    api.secrets["c-hub"] = "old"
    res = kr.RealmImporter(api, rep, diff=True).run()
    ((method, path, body),) = api.writes
    assert body["secret"] == "hub-secret"
    assert "hub-secret" not in json.dumps(res.as_dict())
    assert res.changes == ["updated clients/hub (secret)"]


def test_default_client_scopes_are_made_exact():
    rep = _desired()
    rep["clients"][0]["defaultClientScopes"] = []
    api = _fake()
    res = kr.RealmImporter(api, rep).run()
    assert [(m, p) for m, p, _body in api.writes] == [("DELETE", "/r/clients/c-hub/default-client-scopes/s-profile")]
    assert res.changes == ["updated clients/hub (defaultClientScopes)"]


def test_missing_users_are_created_by_partial_import_in_batches(monkeypatch):
    monkeypatch.setattr(ksync, "USER_BATCH", 2)
    rep = _desired(users=[{"username": "u%d" % i} for i in range(5)])
    api = _fake()
    res = kr.RealmImporter(api, rep).run()
    imports = [b for m, p, b in api.writes if p == "/r/partialImport"]
    assert [len(b["users"]) for b in imports] == [2, 2, 1]
    assert res.counts["created"]["users"] == 5


def test_realm_default_role_is_never_removed_from_a_user():
    rep = _desired()
    api = _fake()
    api.role_users["default-roles-r"] = [{"id": "u-dan"}]
    rep["users"][0]["realmRoles"] = ["admin"]
    res = kr.RealmImporter(api, rep).run()
    assert api.writes == [] and not res.changed


def test_user_realm_role_added_and_removed():
    rep = _desired()
    rep["roles"]["realm"].append({"name": "viewer"})
    rep["users"][0]["realmRoles"] = ["viewer"]
    api = _fake()
    api.export["roles"]["realm"].append({"id": "role-viewer", "name": "viewer"})
    res = kr.RealmImporter(api, rep, diff=True).run()
    writes = [(m, p, [r["name"] for r in b]) for m, p, b in api.writes]
    assert writes == [("POST", "/r/users/u-dan/role-mappings/realm", ["viewer"]),
                      ("DELETE", "/r/users/u-dan/role-mappings/realm", ["admin"])]
    assert res.changes == ["updated users/dan (realmRoles)"]


def test_prune_deletes_only_what_the_file_lacks_and_keeps_builtins():
    api = _fake()
    api.export["clients"].append({"id": "c-acc", "clientId": "account"})
    api.export["clients"].append({"id": "c-old", "clientId": "old-app"})
    api.users.append({"id": "u-old", "username": "old"})
    api.users.append({"id": "u-sa", "username": "service-account-hub"})
    rep = _desired(groups=[{"name": "A"}, {"name": "M"}])
    del rep["users"][0]["groups"]
    res = kr.RealmImporter(api, rep, prune=True).run()
    deletes = sorted(p for m, p, _body in api.writes if m == "DELETE")
    assert deletes == ["/r/clients/c-old", "/r/groups/g-ab", "/r/users/u-old"]
    assert res.counts["deleted"]["clients"] == 1


def test_manage_limits_what_is_touched():
    rep = _desired()
    rep["clients"][0]["redirectUris"] = ["http://b/cb"]
    rep["users"][0]["email"] = "other@x"
    api = _fake()
    res = kr.RealmImporter(api, rep, manage=("users",)).run()
    assert res.changes == ["updated users/dan (email)"]


def test_unknown_group_reference_is_a_clear_error():
    rep = _desired()
    rep["users"][0]["groups"] = ["/Nope"]
    with pytest.raises(krep.RealmError, match="group /Nope, which neither the realm nor the file defines"):
        kr.RealmImporter(_fake(), rep).run()


def test_update_passwords_resets_and_masks():
    api = _fake()
    res = kr.RealmImporter(api, _desired(), update_passwords=True, diff=True).run()
    ((method, path, body),) = api.writes
    assert path == "/r/users/u-dan/reset-password" and body["value"] == "pw"
    assert '"pw"' not in json.dumps(res.as_dict())


# --- users' attributes and the declarative user profile -------------------------------------------------

def test_undeclared_attributes_against_default_and_given_profile():
    users = [{"username": "a", "attributes": {"dept": "x", "email": "a@x", "empty": []}},
             {"username": "b", "attributes": {"dept": ["y"]}}]
    assert krep.undeclared_attributes(users, None) == {"dept": ["a", "b"]}
    declared = {"attributes": PROFILE["attributes"] + [{"name": "dept"}]}
    assert krep.undeclared_attributes(users, declared) == {}


def test_unmanaged_policy_fail_names_attributes_users_and_option():
    users = [{"username": "u%d" % i, "attributes": {"dept": "x"}} for i in range(5)]
    with pytest.raises(krep.RealmError) as exc:
        krep.unmanaged_policy(users, PROFILE, "fail", "r")
    msg = str(exc.value)
    assert "dept (users u0, u1, u2 and 2 more)" in msg and "unmanaged_attributes=admin_edit" in msg
    assert "\n" not in msg


def test_unmanaged_policy_choices_and_writable_profiles():
    users = [{"username": "a", "attributes": {"dept": "x"}}]
    assert krep.unmanaged_policy(users, PROFILE, "admin_edit", "r") == "ADMIN_EDIT"
    assert krep.unmanaged_policy(users, None, "enabled", "r") == "ENABLED"
    assert krep.unmanaged_policy(users, dict(PROFILE, unmanagedAttributePolicy="ADMIN_EDIT"), "fail", "r") is None
    assert krep.unmanaged_policy([{"username": "a"}], PROFILE, "fail", "r") is None
    # the server's ADMIN_VIEW is replaced on request; the file's own ADMIN_VIEW is not
    assert krep.unmanaged_policy(users, dict(PROFILE, unmanagedAttributePolicy="ADMIN_VIEW"), "enabled", "r") \
        == "ENABLED"
    with pytest.raises(krep.RealmError, match="the file's profile sets unmanagedAttributePolicy ADMIN_VIEW"):
        krep.unmanaged_policy(users, dict(PROFILE, unmanagedAttributePolicy="ADMIN_VIEW"), "enabled", "r",
                              from_file=True)


def test_undeclared_attributes_fail_before_any_write():
    api = _fake(profile=PROFILE)
    rep = _desired(displayName="Other")
    with pytest.raises(krep.RealmError, match="dept \\(users Dan\\)"):
        kr.RealmImporter(api, rep).run()
    assert api.writes == []


def test_undeclared_attributes_set_the_policy_before_users_and_converge():
    api = _fake(profile=PROFILE)
    res = kr.RealmImporter(api, _desired(), unmanaged_attributes="admin_edit", diff=True).run()
    assert [(m, p) for m, p, _body in api.writes] == [("PUT", "/r/users/profile")]
    assert api.writes[0][2] == dict(PROFILE, unmanagedAttributePolicy="ADMIN_EDIT")
    assert res.changes == ["updated realm/r (userProfile)"]
    api = _fake(profile=dict(PROFILE, unmanagedAttributePolicy="ADMIN_EDIT"))
    res = kr.RealmImporter(api, _desired(), unmanaged_attributes="admin_edit").run()
    assert api.writes == [] and not res.changed


def test_policy_is_set_even_when_only_users_are_managed():
    api = _fake(profile=PROFILE)
    res = kr.RealmImporter(api, _desired(), manage=("users",), unmanaged_attributes="enabled").run()
    assert [(m, p) for m, p, _body in api.writes] == [("PUT", "/r/users/profile")]
    assert res.counts["updated"]["realm"] == 1 and res.counts["unchanged"]["users"] == 1


def test_profile_in_the_file_is_applied_with_the_chosen_policy_and_then_unchanged():
    declared = {"attributes": PROFILE["attributes"] + [{"name": "dept"}]}
    rep = _desired(components={krep.USER_PROFILE_PROVIDER: [{"config": {krep.USER_PROFILE_KEY: [json.dumps(declared)]}}]})
    api = _fake(profile=PROFILE)
    res = kr.RealmImporter(api, rep).run()   # dept is declared: no policy needed
    assert api.writes == [("PUT", "/r/users/profile", declared)]
    assert res.changes == ["updated realm/r (userProfile)"]
    api = _fake(profile=declared)
    assert not kr.RealmImporter(api, rep).run().changed and api.writes == []


def test_new_realm_with_undeclared_attributes():
    with pytest.raises(krep.RealmError, match="does not declare: dept"):
        kr.RealmImporter(FakeApi(export=None), _desired()).run()
    api = FakeApi(export=None, profile=PROFILE)
    res = kr.RealmImporter(api, _desired(), unmanaged_attributes="admin_edit").run()
    assert [(m, p) for m, p, _body in api.writes] == [("POST", ""), ("PUT", "/r/users/profile")]
    assert api.writes[1][2]["unmanagedAttributePolicy"] == "ADMIN_EDIT"
    assert res.counts["created"]["realm"] == 1


# --- state: absent ----------------------------------------------------------------------------------------

def test_delete_existing_realm_and_missing_realm_is_unchanged():
    api = _fake()
    res = kr.RealmImporter(api, {"realm": "r"}, diff=True).delete()
    assert api.writes == [("DELETE", "/r", None)]
    assert res.changes == ["deleted realm/r"] and res.counts["deleted"]["realm"] == 1 and res.changed
    api = FakeApi(export=None)
    res = kr.RealmImporter(api, {"realm": "r"}).delete()
    assert api.writes == [] and not res.changed


def test_delete_in_check_mode_writes_nothing():
    api = _fake()
    res = kr.RealmImporter(api, {"realm": "r"}, check_mode=True).delete()
    assert api.writes == [] and res.changed


def test_a_client_scope_the_realm_lacks_is_a_data_error():
    rep = _desired()
    rep["clients"][0]["defaultClientScopes"] = ["profile", "nope"]
    with pytest.raises(krep.RealmError, match="client hub lists default client scope 'nope'"):
        kr.RealmImporter(_fake(), rep).run()


def test_connection_spec_matches_the_doc_fragment():
    import yaml
    from ansible_collections.datalab.notebooks.plugins.doc_fragments.keycloak import ModuleDocFragment
    from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_admin import CONNECTION_ARG_SPEC

    options = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    assert set(options) == set(CONNECTION_ARG_SPEC)
    for name, spec in CONNECTION_ARG_SPEC.items():
        assert (options[name]["type"], options[name].get("default"), options[name].get("required", False)) == \
            (spec["type"], spec.get("default"), spec.get("required", False)), name


# --- the HTTP client's input checks (no network) ---------------------------------------------------------

def test_admin_client_rejects_bad_url_and_missing_credentials():
    with pytest.raises(KeycloakError, match="url must look like"):
        KeycloakAdmin("keycloak:8443", username="a", password="b")
    with pytest.raises(KeycloakError, match="no credentials"):
        KeycloakAdmin("https://127.0.0.1:1")


# --- the HTTP client against a stub server on loopback -----------------------------------------------------

class _Stub:
    """A tiny plain-HTTP stand-in for Keycloak whose answers a test scripts."""

    def __init__(self):
        import http.server
        import threading

        stub = self
        self.script = []     # (status, body) answered in order for /admin/... requests
        self.tokens = 0
        self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status, body):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                stub.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
                if self.path.endswith("/protocol/openid-connect/token"):
                    stub.tokens += 1
                    if b"password=wrong" in body:
                        return self._answer(401, {"error": "invalid_grant", "error_description": "Invalid user credentials"})
                    return self._answer(200, {"access_token": "tok%d" % stub.tokens, "expires_in": 60})
                status, answer = stub.script.pop(0) if stub.script else (200, [])
                return self._answer(status, answer)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    s = _Stub()
    yield s
    s.close()


def _client(stub, **kw):
    kw.setdefault("password", "pw")
    return KeycloakAdmin(stub.url, username="admin", sleep=lambda s: None, **kw)


def test_client_retries_5xx_then_succeeds(stub):
    stub.script = [(503, {"error": "starting"}), (502, None), (200, {"realm": "r"})]
    assert _client(stub).get("/r") == {"realm": "r"}


def test_client_gives_up_after_retries_with_one_line(stub):
    stub.script = [(500, {"errorMessage": "boom"})] * 6
    with pytest.raises(KeycloakError) as exc:
        _client(stub).get("/r")
    assert str(exc.value) == "Keycloak rejected GET /admin/realms/r: HTTP 500: boom"


def test_client_logs_in_again_on_401(stub):
    stub.script = [(401, None), (200, {"ok": True})]
    api = _client(stub)
    assert api.get("/r") == {"ok": True}
    auth = [a for m, p, a, b in stub.seen if p.startswith("/admin/")]
    assert auth == ["Bearer tok1", "Bearer tok2"]


def test_client_renews_an_expiring_token(stub):
    api = _client(stub)
    api.get("/r")
    api._expires = 1  # pylint: disable=protected-access
    api.get("/r")
    assert stub.tokens == 2


def test_client_wrong_password_message(stub):
    with pytest.raises(KeycloakError) as exc:
        _client(stub, password="wrong").login()
    msg = str(exc.value)
    assert "Invalid user credentials" in msg and "check auth_username and auth_password" in msg
    assert "wrong" not in msg.replace("Invalid", "")


def test_client_unreachable_message():
    with socket_free_port() as port:
        pass
    api = KeycloakAdmin("http://127.0.0.1:%d" % port, username="a", password="b", sleep=lambda s: None)
    with pytest.raises(KeycloakError, match=r"cannot reach Keycloak at http://127.0.0.1:\d+ .*check url"):
        api.login()


def test_client_fixed_token_is_not_refreshed(stub):
    stub.script = [(401, None)]
    api = KeycloakAdmin(stub.url, token="given", sleep=lambda s: None)
    with pytest.raises(KeycloakError, match="rejected the given token"):
        api.get("/r")
    assert stub.tokens == 0


class socket_free_port:  # pylint: disable=invalid-name
    """A loopback port nobody listens on (bound, then released)."""

    def __enter__(self):
        import socket
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()
