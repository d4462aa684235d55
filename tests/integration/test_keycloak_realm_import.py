"""keycloak_realm_import against the test bed's real Keycloak (HTTPS, test CA).

The module runs as Ansible runs it: `ansible localhost -m datalab.notebooks.keycloak_realm_import`
with the checkout linked as the collection (`make setup`).  Reads and clean-ups go through the
collection's own admin client.
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_admin import KeycloakAdmin  # noqa: E402

pytestmark = pytest.mark.integration

MODULE = "datalab.notebooks.keycloak_realm_import"
FIXTURE = REPO / "tests" / "fixtures" / "realm-demo.json"
# This module's own realm in the shared Keycloak (a demo's or another run's realms stay untouched).
REALM = "test-import-" + uuid.uuid4().hex[:6]
DEMO = Path(tempfile.mkdtemp(prefix="realm-import-")) / "realm.json"
DEMO.write_text(json.dumps({**json.loads(FIXTURE.read_text()), "realm": REALM}))
ANSIBLE = Path(sys.executable).parent / "ansible"


def run_module(args: dict, *flags: str) -> tuple[dict, str]:
    """Run the module once; returns (result of the host, everything Ansible printed)."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
           "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_NOCOLOR": "1"}
    cmd = [str(ANSIBLE), "localhost", "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=" + sys.executable, "-m", MODULE, "-a", json.dumps(args), *flags]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    try:
        doc = json.loads(proc.stdout)
        result = doc["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise AssertionError("no JSON result from ansible:\n" + out) from None
    return result, out


@pytest.fixture(scope="module")
def kc(keycloak):
    return keycloak


@pytest.fixture(scope="module")
def admin(kc):
    api = KeycloakAdmin(kc["url"], username=kc["username"], password=kc["password"], ca_path=kc["ca_path"])
    yield api
    api.close()


def conn_args(kc, **extra) -> dict:
    args = {"url": kc["url"], "auth_username": kc["username"], "auth_password": kc["password"],
            "ca_path": kc["ca_path"]}
    args.update(extra)
    return args


def demo() -> dict:
    return json.loads(DEMO.read_text())


def user(admin, realm, username):
    (found,) = admin.get("/%s/users" % realm, {"username": username, "exact": "true", "briefRepresentation": "false"})
    return found


def user_groups(admin, realm, uid):
    return sorted(g["path"] for g in admin.get("/%s/users/%s/groups" % (realm, uid)))


def client(admin, realm, client_id):
    (found,) = admin.get("/%s/clients" % realm, {"clientId": client_id})
    return found


def password_grant(kc, realm, client_id, secret, username, password):
    ctx = ssl.create_default_context(cafile=kc["ca_path"])
    form = urllib.parse.urlencode({"grant_type": "password", "client_id": client_id, "client_secret": secret,
                                   "username": username, "password": password, "scope": "openid"}).encode()
    req = urllib.request.Request("%s/realms/%s/protocol/openid-connect/token" % (kc["url"], realm), data=form)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def imported(kc, admin):
    """The demo realm freshly created by the module (deleted first if a previous run left it)."""
    admin.delete("/" + REALM)
    result, out = run_module(conn_args(kc, src=str(DEMO)), "--diff")
    yield result, out
    if not os.environ.get("DATALAB_KEEP_TESTBED"):
        admin.delete("/" + REALM)


def test_missing_realm_is_created_in_one_request(imported, admin):
    result, out = imported
    assert result["changed"] is True, out
    # token + "does the realm exist" + the one POST /admin/realms
    assert result["api_requests"] == 3
    assert result["created"] == {"realm": 1, "roles": 1, "groups": 5, "client_scopes": 0, "clients": 1, "users": 7}
    daniel = user(admin, REALM, "daniel.king")
    assert daniel["email"] == "daniel.king@knab.com" and daniel["attributes"]["department"] == ["compliance"]
    assert user_groups(admin, REALM, daniel["id"]) == ["/Compliance and Regulation/Analytics"]


def test_secrets_never_in_output(imported, kc):
    result, out = imported
    rep = demo()
    for secret in (rep["clients"][0]["secret"], kc["password"]):
        assert secret not in out
    # The demo's passwords equal the usernames, so look at where they would be: masked in the diff.
    diffs = {d["after_header"]: d["after"] for d in result["diff"]}
    assert diffs["clients/jupyterhub"]["secret"] == "**********"
    for u in rep["users"]:
        assert diffs["users/" + u["username"]]["credentials"][0]["value"] == "**********"


def test_rerun_is_unchanged(imported, kc):
    result, out = run_module(conn_args(kc, src=str(DEMO)), "--diff")
    assert result["changed"] is False, out
    assert result["changes"] == [] and result["diff"] == []
    assert result["unchanged"] == {"realm": 1, "roles": 1, "groups": 5, "client_scopes": 0, "clients": 1, "users": 7}


def test_demo_user_gets_token_with_client_secret(imported, kc):
    secret = demo()["clients"][0]["secret"]
    status, body = password_grant(kc, REALM, "jupyterhub", secret, "daniel.king", "daniel.king")
    assert status == 200 and body.get("access_token"), body
    status, body = password_grant(kc, REALM, "jupyterhub", "wrong-secret", "daniel.king", "daniel.king")
    assert status == 401 and body.get("error") == "unauthorized_client"


def _edited() -> dict:
    rep = demo()
    daniel = next(u for u in rep["users"] if u["username"] == "daniel.king")
    daniel["attributes"]["department"] = ["risk"]
    mark = next(u for u in rep["users"] if u["username"] == "mark.ketting")
    mark["groups"] = ["/Customer Service/Analytics"]
    rep["clients"][0]["redirectUris"] = ["http://127.0.1.4:31095/hub/oauth_callback"]
    return rep


EXPECTED_CHANGES = ["updated clients/jupyterhub (redirectUris)", "updated users/daniel.king (attributes)",
                    "updated users/mark.ketting (groups)"]


def test_check_mode_reports_and_writes_nothing(imported, kc, admin):
    result, out = run_module(conn_args(kc, realm_data=_edited()), "--check", "--diff")
    assert result["changed"] is True, out
    assert sorted(result["changes"]) == EXPECTED_CHANGES
    assert user(admin, REALM, "daniel.king")["attributes"]["department"] == ["compliance"]
    assert user_groups(admin, REALM, user(admin, REALM, "mark.ketting")["id"]) == ["/Marketing"]
    assert client(admin, REALM, "jupyterhub")["redirectUris"] == ["http://127.0.1.3:31095/hub/oauth_callback"]


def test_changes_are_applied_and_the_diff_shows_exactly_them(imported, kc, admin):
    result, out = run_module(conn_args(kc, realm_data=_edited()), "--diff")
    assert result["changed"] is True, out
    assert sorted(result["changes"]) == EXPECTED_CHANGES
    diffs = {d["before_header"]: (d["before"], d["after"]) for d in result["diff"]}
    assert diffs == {
        "users/daniel.king": ({"attributes": {"department": ["compliance"]}}, {"attributes": {"department": ["risk"]}}),
        "users/mark.ketting": ({"groups": ["/Marketing"]}, {"groups": ["/Customer Service/Analytics"]}),
        "clients/jupyterhub": ({"redirectUris": ["http://127.0.1.3:31095/hub/oauth_callback"]},
                               {"redirectUris": ["http://127.0.1.4:31095/hub/oauth_callback"]}),
    }
    assert result["updated"]["users"] == 2 and result["unchanged"]["users"] == 5
    assert user(admin, REALM, "daniel.king")["attributes"]["department"] == ["risk"]
    assert user_groups(admin, REALM, user(admin, REALM, "mark.ketting")["id"]) == ["/Customer Service/Analytics"]
    assert client(admin, REALM, "jupyterhub")["redirectUris"] == ["http://127.0.1.4:31095/hub/oauth_callback"]
    # the secret survived the client update
    secret = demo()["clients"][0]["secret"]
    status, body = password_grant(kc, REALM, "jupyterhub", secret, "mark.ketting", "mark.ketting")
    assert status == 200, body
    again, out = run_module(conn_args(kc, realm_data=_edited()))
    assert again["changed"] is False, out
    back, out = run_module(conn_args(kc, src=str(DEMO)))
    assert back["changed"] is True and sorted(back["changes"]) == EXPECTED_CHANGES, out


def test_prune_and_missing_objects_in_existing_realm(imported, kc, admin):
    admin.post("/%s/groups" % REALM, {"name": "Stray"})
    rep = demo()
    rep["users"].append({"username": "new.person", "enabled": True, "email": "new.person@knab.com",
                         "firstName": "New", "lastName": "Person",
                         "groups": ["/Marketing"], "credentials": [{"type": "password", "value": "np-pw-1"}]})
    rep["groups"].append({"name": "Research", "subGroups": [{"name": "Spark"}]})
    result, out = run_module(conn_args(kc, realm_data=rep, prune=True, manage=["groups", "users"]))
    assert result["changed"] is True, out
    assert result["created"]["users"] == 1 and result["created"]["groups"] == 2
    assert result["deleted"]["groups"] == 1 and result["deleted"]["users"] == 0
    newbie = user(admin, REALM, "new.person")
    assert user_groups(admin, REALM, newbie["id"]) == ["/Marketing"]
    status, body = password_grant(kc, REALM, "jupyterhub", rep["clients"][0]["secret"], "new.person", "np-pw-1")
    assert status == 200, body
    again, out = run_module(conn_args(kc, realm_data=rep, prune=True))
    assert again["changed"] is False, out
    back, out = run_module(conn_args(kc, src=str(DEMO), prune=True))
    assert back["deleted"]["users"] == 1 and back["deleted"]["groups"] == 1, out


def test_keycloak_own_export_reimports_unchanged(imported, kc, admin):
    """What Keycloak exports (built-in clients, scopes, mappers, roles with composites...) compares equal."""
    export = admin.post("/%s/partial-export" % REALM, query={"exportClients": "true", "exportGroupsAndRoles": "true"})
    assert any(c.get("secret") == "**********" for c in export["clients"])  # masked secrets are skipped
    result, out = run_module(conn_args(kc, realm_data=export), "--check", "--diff")
    assert result["changed"] is False, (result.get("changes"), result.get("diff"))
    assert result["unchanged"]["clients"] == len(export["clients"]) > 5
    assert result["unchanged"]["client_scopes"] == len(export["clientScopes"]) > 5


# --- failures: one clear line, no traceback -----------------------------------------------------------------

def _assert_clean_failure(result, out, *fragments):
    assert result.get("failed") is True, out
    msg = result["msg"]
    assert "\n" not in msg and "Traceback" not in out and "module_stderr" not in result, out
    for fragment in fragments:
        assert fragment in msg, msg


def test_bad_realm_json(kc, tmp_path):
    bad = tmp_path / "realm.json"
    bad.write_text('{"realm": "demo", "users": [')
    result, out = run_module(conn_args(kc, src=str(bad)))
    _assert_clean_failure(result, out, "is not valid JSON", str(bad))


def test_realm_without_name(kc):
    result, out = run_module(conn_args(kc, realm_data={"users": []}))
    _assert_clean_failure(result, out, "no 'realm' name")


def test_wrong_admin_password(kc):
    result, out = run_module(conn_args(kc, src=str(DEMO), auth_password="not-the-password"))
    _assert_clean_failure(result, out, "Invalid user credentials", "check auth_username and auth_password")
    assert "not-the-password" not in out


def test_unreachable_url(kc):
    with socket.socket() as s:  # a loopback port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result, out = run_module(conn_args(kc, src=str(DEMO), url="https://127.0.0.1:%d" % port))
    _assert_clean_failure(result, out, "cannot reach Keycloak at https://127.0.0.1:%d" % port, "check url")


def test_untrusted_certificate_without_ca_path(kc):
    args = conn_args(kc, src=str(DEMO))
    del args["ca_path"]
    result, out = run_module(args)
    _assert_clean_failure(result, out, "not trusted", "pass ca_path=")


# --- users' attributes and the declarative user profile (Keycloak 24+) ------------------------------------

def _attr_realm(name: str, profile: dict | None = None) -> dict:
    """Two users with an attribute Keycloak's default user profile does not declare."""
    rep = {"realm": name, "enabled": True,
           "users": [{"username": "ada.lovelace", "enabled": True, "email": "ada@knab.com", "firstName": "Ada",
                      "lastName": "Lovelace", "attributes": {"department": ["risk"], "site": ["ams"]}},
                     {"username": "alan.turing", "enabled": True, "email": "alan@knab.com", "firstName": "Alan",
                      "lastName": "Turing", "attributes": {"department": ["analytics"]}}]}
    if profile is not None:
        rep["components"] = {"org.keycloak.userprofile.UserProfileProvider": [
            {"providerId": "declarative-user-profile", "subComponents": {},
             "config": {"kc.user.profile.config": [json.dumps(profile)]}}]}
    return rep


@pytest.fixture
def scratch_realm(admin):
    name = "test-attrs-" + uuid.uuid4().hex[:6]
    yield name
    admin.delete("/" + name)


def _attributes(admin, realm):
    return {u: user(admin, realm, u).get("attributes") for u in ("ada.lovelace", "alan.turing")}


KEPT = {"ada.lovelace": {"department": ["risk"], "site": ["ams"]}, "alan.turing": {"department": ["analytics"]}}


def test_undeclared_attributes_fail_by_default_and_write_nothing(kc, admin, scratch_realm):
    result, out = run_module(conn_args(kc, realm_data=_attr_realm(scratch_realm)))
    _assert_clean_failure(result, out, "department (users ada.lovelace, alan.turing); site (users ada.lovelace)",
                          "unmanaged_attributes=admin_edit")
    assert admin.get("/" + scratch_realm, missing_ok=True) is None
    # The same for a realm that exists: nothing is written.
    run_module(conn_args(kc, realm_data={"realm": scratch_realm, "enabled": True}))
    result, out = run_module(conn_args(kc, realm_data=_attr_realm(scratch_realm)))
    _assert_clean_failure(result, out, "does not declare: department")
    assert admin.get("/%s/users" % scratch_realm) == []


@pytest.mark.parametrize("exists", [False, True], ids=["new-realm", "existing-realm"])
def test_undeclared_attributes_kept_with_admin_edit_and_rerun_unchanged(kc, admin, scratch_realm, exists):
    if exists:
        rep = _attr_realm(scratch_realm)
        for u in rep["users"]:
            del u["attributes"]
        first, out = run_module(conn_args(kc, realm_data=rep))
        assert first["created"]["users"] == 2, out
    args = conn_args(kc, realm_data=_attr_realm(scratch_realm), unmanaged_attributes="admin_edit")
    result, out = run_module(args, "--diff")
    assert result["changed"] is True, out
    if exists:
        assert sorted(result["changes"]) == ["updated realm/%s (userProfile)" % scratch_realm,
                                             "updated users/ada.lovelace (attributes)",
                                             "updated users/alan.turing (attributes)"], out
    assert admin.get("/%s/users/profile" % scratch_realm)["unmanagedAttributePolicy"] == "ADMIN_EDIT"
    assert _attributes(admin, scratch_realm) == KEPT
    again, out = run_module(args, "--diff")
    assert again["changed"] is False and again["changes"] == [], out
    assert again["unchanged"]["users"] == 2
    assert _attributes(admin, scratch_realm) == KEPT


def test_user_profile_in_the_file_is_applied_before_users(kc, admin, scratch_realm):
    profile = admin.get("/master/users/profile")
    profile.pop("unmanagedAttributePolicy", None)
    profile["attributes"] += [{"name": n, "displayName": n, "permissions": {"view": ["admin"], "edit": ["admin"]},
                               "multivalued": False} for n in ("department", "site")]
    # Created, then changed in an existing realm (a new attribute declared in the same run that sets it).
    base = _attr_realm(scratch_realm, {**profile, "attributes": profile["attributes"][:-1]})
    del base["users"][0]["attributes"]["site"]
    result, out = run_module(conn_args(kc, realm_data=base))
    assert result["changed"] is True, out
    rep = _attr_realm(scratch_realm, profile)
    result, out = run_module(conn_args(kc, realm_data=rep))
    assert sorted(result["changes"]) == ["updated realm/%s (userProfile)" % scratch_realm,
                                         "updated users/ada.lovelace (attributes)"], out
    have = admin.get("/%s/users/profile" % scratch_realm)
    assert "unmanagedAttributePolicy" not in have
    assert {"department", "site"} <= {a["name"] for a in have["attributes"]}
    assert _attributes(admin, scratch_realm) == KEPT
    again, out = run_module(conn_args(kc, realm_data=rep))
    assert again["changed"] is False, out


# --- state: absent ------------------------------------------------------------------------------------------

def test_state_absent_deletes_the_realm_and_rerun_is_unchanged(kc, admin, scratch_realm):
    run_module(conn_args(kc, realm_data={"realm": scratch_realm, "enabled": True}))
    args = conn_args(kc, realm=scratch_realm, state="absent")
    check, out = run_module(args, "--check", "--diff")
    assert check["changed"] is True and check["changes"] == ["deleted realm/%s" % scratch_realm], out
    assert admin.get("/" + scratch_realm, missing_ok=True) is not None
    result, out = run_module(args)
    assert result["changed"] is True and result["deleted"]["realm"] == 1, out
    assert admin.get("/" + scratch_realm, missing_ok=True) is None
    again, out = run_module(args)
    assert again["changed"] is False and again["changes"] == [], out
    check, out = run_module(args, "--check")
    assert check["changed"] is False, out
