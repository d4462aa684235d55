"""Benchmark of keycloak_realm_import against the test bed's real Keycloak (`make bench`).

A generated realm of N users (N = 100, 1000, 5000) with 50 nested groups and 20 confidential clients.
Median of 3 runs (1 with --quick, which also limits N to 100) for:

  (a) first import by the module (the realm is missing),
  (b) a no-op rerun by the module,
  (c) Keycloak's own `POST /admin/realms` of the same JSON, sent from Python (the floor),
  (d) the per-object peer: community.general keycloak_group + keycloak_user tasks (N = 100 and 1000),
      first run and no-op rerun.

(a), (b) and (d) are timed as Ansible runs them (wall clock of `ansible`/`ansible-playbook`, start-up
included); (c) has no Ansible around it.  The module's own time inside the task is reported too.
Writes benchmarks/results/realm_import.json and the "Realm import" section of docs/benchmarks.md
(--quick writes benchmarks/results/realm_import-quick.json only).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / ".collections"))

from tools.testbed import keycloak as testbed  # noqa: E402
from ansible_collections.datalab.notebooks.plugins.module_utils.keycloak_admin import KeycloakAdmin  # noqa: E402

BIN = Path(sys.executable).parent
RESULTS = REPO / "benchmarks" / "results" / "realm_import.json"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Realm import"
N_GROUPS_TOP, N_SUBGROUPS = 10, 4        # 10 + 10 * 4 = 50 groups
N_CLIENTS = 20
SETTLE_S = 3
GOALS = {"a_vs_c": 1.5, "b_max_s_5000": 10.0, "d_over_b_1000": 20.0}
# The realm profile lets the generated attributes through (Keycloak 24+ drops undeclared ones).
USER_PROFILE = {
    "unmanagedAttributePolicy": "ENABLED",
    "attributes": [
        {"name": "username", "displayName": "${username}", "validations": {"length": {"min": 3, "max": 255}},
         "permissions": {"view": ["admin", "user"], "edit": ["admin", "user"]}, "multivalued": False},
        {"name": "email", "displayName": "${email}", "validations": {"email": {}, "length": {"max": 255}},
         "permissions": {"view": ["admin", "user"], "edit": ["admin", "user"]}, "multivalued": False},
        {"name": "firstName", "displayName": "${firstName}", "validations": {"length": {"max": 255}},
         "permissions": {"view": ["admin", "user"], "edit": ["admin", "user"]}, "multivalued": False},
        {"name": "lastName", "displayName": "${lastName}", "validations": {"length": {"max": 255}},
         "permissions": {"view": ["admin", "user"], "edit": ["admin", "user"]}, "multivalued": False},
    ],
    "groups": [{"name": "user-metadata", "displayHeader": "User metadata",
                "displayDescription": "Attributes, which refer to user metadata"}],
}


def group_paths() -> list[str]:
    return [f"/dept-{d:02d}/team-{t}" for d in range(N_GROUPS_TOP) for t in range(N_SUBGROUPS)]


def generate(realm: str, n_users: int) -> dict:
    teams = group_paths()
    users = []
    for i in range(n_users):
        name = f"user-{i:05d}"
        users.append({
            "username": name, "enabled": True, "emailVerified": True, "firstName": "User", "lastName": f"N{i:05d}",
            "email": f"{name}@bench.example", "attributes": {"employeeNumber": [str(i)], "site": [f"site-{i % 7}"]},
            "groups": [teams[i % len(teams)]], "realmRoles": ["reader"],
            "credentials": [{"type": "password", "value": f"pw-{name}", "temporary": False}],
        })
    clients = [{
        "clientId": f"app-{c:02d}", "enabled": True, "protocol": "openid-connect", "publicClient": False,
        "secret": f"secret-app-{c:02d}", "standardFlowEnabled": True, "directAccessGrantsEnabled": False,
        "redirectUris": [f"https://app-{c:02d}.bench.example/callback"],
        "webOrigins": [f"https://app-{c:02d}.bench.example"],
        "protocolMappers": [{"name": "groups", "protocol": "openid-connect",
                             "protocolMapper": "oidc-group-membership-mapper",
                             "config": {"full.path": "true", "access.token.claim": "true", "claim.name": "groups"}}],
    } for c in range(N_CLIENTS)]
    return {
        "realm": realm, "enabled": True,
        # Hashing is not what is measured, and every contender pays it equally: keep it cheap.
        "passwordPolicy": "hashAlgorithm(pbkdf2-sha256) and hashIterations(1)",
        "roles": {"realm": [{"name": "reader"}, {"name": "writer"}, {"name": "analyst"}],
                  "client": {c["clientId"]: [{"name": "user"}, {"name": "admin"}] for c in clients}},
        "groups": [{"name": f"dept-{d:02d}", "attributes": {"cost-center": [str(1000 + d)]},
                    "subGroups": [{"name": f"team-{t}"} for t in range(N_SUBGROUPS)]} for d in range(N_GROUPS_TOP)],
        "clients": clients,
        "users": users,
        "components": {"org.keycloak.userprofile.UserProfileProvider": [{
            "providerId": "declarative-user-profile", "subComponents": {},
            "config": {"kc.user.profile.config": [json.dumps(USER_PROFILE)]}}]},
    }


# --- contenders ----------------------------------------------------------------------------------

def ansible_env(kc: dict) -> dict:
    return {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "SSL_CERT_FILE": kc["ca_path"]}


def run_module(kc: dict, src: Path) -> tuple[float, dict]:
    args = {"url": kc["url"], "auth_username": kc["username"], "auth_password": kc["password"],
            "ca_path": kc["ca_path"], "src": str(src)}
    cmd = [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=" + sys.executable,
           "-m", "datalab.notebooks.keycloak_realm_import", "-a", json.dumps(args)]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(kc), cwd=REPO, check=False)
    elapsed = time.monotonic() - start
    try:
        doc = json.loads(proc.stdout)
        task = doc["plays"][0]["tasks"][0]
        result = task["hosts"]["localhost"]
        dur = task["task"]["duration"]
        result["_task_seconds"] = _span(dur["start"], dur["end"])
    except (ValueError, KeyError, IndexError):
        raise SystemExit("module run produced no JSON result:\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
    if result.get("failed"):
        raise SystemExit("module failed: " + str(result.get("msg")))
    return elapsed, result


def ansible_startup(kc: dict) -> float:
    """Wall clock of the smallest Ansible task (`ping`): the fixed cost inside (a) and (b) that (c) does not pay."""
    cmd = [str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=" + sys.executable, "-m", "ansible.builtin.ping"]
    start = time.monotonic()
    subprocess.run(cmd, capture_output=True, env=ansible_env(kc), cwd=REPO, check=True)
    return time.monotonic() - start


def _span(start: str, end: str) -> float:
    def parse(stamp: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (parse(end) - parse(start)).total_seconds()


def post_realm(kc: dict, rep: dict) -> float:
    start = time.monotonic()
    api = KeycloakAdmin(kc["url"], username=kc["username"], password=kc["password"], ca_path=kc["ca_path"],
                        timeout=600)
    api.post("", rep)
    api.close()
    return time.monotonic() - start


PEER_PLAYBOOK = """\
- name: Per-object peer (community.general)
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/community.general.keycloak:
      auth_keycloak_url: "{{ kc.url }}"
      auth_realm: master
      auth_username: "{{ kc.username }}"
      auth_password: "{{ kc.password }}"
  tasks:
    - name: Create the groups
      community.general.keycloak_group:
        realm: "{{ realm }}"
        name: "{{ item.name }}"
        parents: "{{ item.parents }}"
        attributes: "{{ item.attributes }}"
      loop: "{{ peer_groups }}"
      loop_control:
        label: "{{ item.name }}"
      no_log: true
    - name: Create the users
      community.general.keycloak_user:
        realm: "{{ realm }}"
        username: "{{ item.username }}"
        first_name: "{{ item.firstName }}"
        last_name: "{{ item.lastName }}"
        email: "{{ item.email }}"
        enabled: true
        email_verified: true
        attributes: "{{ item.attributes }}"
        groups: "{{ item.groups }}"
      loop: "{{ peer_users }}"
      loop_control:
        label: "{{ item.username }}"
      no_log: true
"""


def peer_vars(kc: dict, rep: dict) -> dict:
    groups = []
    for g in rep["groups"]:
        groups.append({"name": g["name"], "parents": [], "attributes": g.get("attributes", {})})
        for sub in g["subGroups"]:
            groups.append({"name": sub["name"], "parents": [{"name": g["name"]}], "attributes": {}})
    users = [{"username": u["username"], "firstName": u["firstName"], "lastName": u["lastName"], "email": u["email"],
              "attributes": [{"name": k, "values": v, "state": "present"} for k, v in u["attributes"].items()],
              "groups": [{"name": p, "state": "present"} for p in u["groups"]]} for u in rep["users"]]
    return {"kc": {"url": kc["url"], "username": kc["username"], "password": kc["password"]},
            "realm": rep["realm"], "peer_groups": groups, "peer_users": users}


def run_peer(kc: dict, workdir: Path) -> dict:
    cmd = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", "ansible_python_interpreter=" + sys.executable, "-e", "@" + str(workdir / "peer-vars.json"),
           str(workdir / "peer.yml")]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(kc), cwd=REPO, check=False)
    elapsed = time.monotonic() - start
    try:
        doc = json.loads(proc.stdout)
        stats = doc["stats"]["localhost"]
        tasks = {t["task"]["name"]: _span(t["task"]["duration"]["start"], t["task"]["duration"]["end"])
                 for t in doc["plays"][0]["tasks"]}
    except (ValueError, KeyError):
        raise SystemExit("peer playbook produced no JSON result:\n" + proc.stdout[-3000:] + proc.stderr[-3000:])
    if stats.get("failures"):
        raise SystemExit("peer playbook failed (run it without no_log to see why)")
    return {"wall_s": elapsed, "changed_tasks": stats.get("changed", 0), "groups_s": tasks["Create the groups"],
            "users_s": tasks["Create the users"]}


# --- driver ------------------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def bench_size(kc: dict, admin: KeycloakAdmin, n: int, reps: int, peer: bool, peer_sample: int,
               workdir: Path) -> dict:
    realm = f"bench{n}"
    rep = generate(realm, n)
    src = workdir / f"{realm}.json"
    src.write_text(json.dumps(rep))
    out = {"users": n, "groups": N_GROUPS_TOP * (1 + N_SUBGROUPS), "clients": N_CLIENTS, "runs": reps}
    a, a_task, b, b_task, c, b_requests, startup = [], [], [], [], [], [], []

    def fresh():
        admin.delete("/" + realm)
        time.sleep(SETTLE_S)  # let Keycloak finish with the deleted realm before the next timing

    for i in range(reps):
        startup.append(ansible_startup(kc))
        # (a) and (c) take turns going first, so that neither always meets the after-effects of the other.
        for step in (("c", "a") if i % 2 == 0 else ("a", "c")):
            fresh()
            if step == "c":
                c.append(post_realm(kc, rep))
                continue
            secs, res = run_module(kc, src)
            assert res["changed"] and res["created"]["users"] == n, res.get("created")
            a.append(secs)
            a_task.append(res["_task_seconds"])
            secs, res = run_module(kc, src)
            assert not res["changed"], res.get("changes")[:10]
            b.append(secs)
            b_task.append(res["_task_seconds"])
            b_requests.append(res["api_requests"])
        print(f"  N={n} run {i + 1}/{reps}: a={a[-1]:.2f}s b={b[-1]:.2f}s c={c[-1]:.2f}s "
              f"(no-op: {b_requests[-1]} requests)", file=sys.stderr, flush=True)
    out.update({"a_first_import_s": median(a), "a_task_s": median(a_task), "b_noop_rerun_s": median(b),
                "b_task_s": median(b_task), "b_api_requests": b_requests[-1], "c_post_realm_s": median(c),
                "a_over_c_paired": round(statistics.median(x / y for x, y in zip(a, c)), 2),
                "ansible_startup_s": median(startup),
                "a_minus_startup_over_c": round(statistics.median((x - s) / y for x, s, y in zip(a, startup, c)), 2),
                "samples": {"a": a, "b": b, "c": c}})
    if peer:
        # One user per task iteration: the peer is linear in N by construction.  Above 100 users its rerun
        # is timed on a sample of the users (all groups) in the full realm and scaled to N.
        sample = n if n <= 100 or not peer_sample else min(peer_sample, n)
        peer_rep = dict(rep, users=rep["users"][:sample])
        (workdir / "peer.yml").write_text(PEER_PLAYBOOK)
        (workdir / "peer-vars.json").write_text(json.dumps(peer_vars(kc, peer_rep)))
        admin.delete("/" + realm)
        if sample == n:
            admin.post("", {k: v for k, v in rep.items() if k in ("realm", "enabled", "passwordPolicy", "components")})
            first = run_peer(kc, workdir)
        else:
            admin.post("", rep)  # the peer's rerun meets the full realm, as ours does
            first = None
        rerun = run_peer(kc, workdir)
        scale = n / sample
        rerun_s = rerun["wall_s"] + rerun["users_s"] * (scale - 1)
        print(f"  N={n} peer ({sample} users timed): first={first['wall_s'] if first else float('nan'):.1f}s "
              f"rerun={rerun['wall_s']:.1f}s -> {rerun_s:.1f}s for {n} users "
              f"(rerun reported {rerun['changed_tasks']} changed task(s))", file=sys.stderr, flush=True)
        out.update({"d_peer_users_timed": sample, "d_peer_rerun_s": round(rerun_s, 1),
                    "d_peer_rerun_measured": rerun, "d_rerun_changed_tasks": rerun["changed_tasks"]})
        if first:
            out.update({"d_peer_first_s": round(first["wall_s"], 1), "d_peer_first_measured": first})
    admin.delete("/" + realm)
    return out


def table(results: list[dict]) -> str:
    rows = ["| users | (a) first import | (c) POST /admin/realms | (a)/(c) | (b) no-op rerun | (b) requests "
            "| (d) peer first run | (d) peer rerun | (d)/(b) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ratio_ac = _ratio_ac(r)
        d_first = f"{r['d_peer_first_s']:.1f} s" if "d_peer_first_s" in r else "not run"
        d_rerun = f"{r['d_peer_rerun_s']:.1f} s" if "d_peer_rerun_s" in r else "not run"
        ratio_db = f"{r['d_peer_rerun_s'] / r['b_noop_rerun_s']:.0f}x" if "d_peer_rerun_s" in r else ""
        rows.append(f"| {r['users']} | {r['a_first_import_s']:.2f} s | {r['c_post_realm_s']:.2f} s | "
                    f"{ratio_ac:.2f} | {r['b_noop_rerun_s']:.2f} s | {r['b_api_requests']} | {d_first} | "
                    f"{d_rerun} | {ratio_db} |")
    return "\n".join(rows)


def _ratio_ac(r: dict) -> float:
    """(a)/(c) as the median of the ratios of runs made back to back (they share the machine's load)."""
    return r.get("a_over_c_paired") or r["a_first_import_s"] / r["c_post_realm_s"]


def goals(results: list[dict]) -> list[str]:
    by_n = {r["users"]: r for r in results}
    lines = []
    for r in results:
        ratio = _ratio_ac(r)
        lines.append(f"- (a) <= 1.5 x (c) at {r['users']} users: {ratio:.2f} -> "
                     f"{'met' if ratio <= GOALS['a_vs_c'] else 'NOT met'}")
        if "a_minus_startup_over_c" in r and ratio > GOALS["a_vs_c"]:
            lines.append(f"  - without Ansible's start-up ({r['ansible_startup_s']:.2f} s for `ansible -m ping`, which "
                         f"(c) does not pay): {r['a_minus_startup_over_c']:.2f}")
    if 5000 in by_n:
        b = by_n[5000]["b_noop_rerun_s"]
        lines.append(f"- (b) <= 10 s at 5000 users: {b:.2f} s -> {'met' if b <= GOALS['b_max_s_5000'] else 'NOT met'}")
    if 1000 in by_n and "d_peer_rerun_s" in by_n[1000]:
        ratio = by_n[1000]["d_peer_rerun_s"] / by_n[1000]["b_noop_rerun_s"]
        lines.append(f"- (b) >= 20 x faster than (d) at 1000 users: {ratio:.0f}x -> "
                     f"{'met' if ratio >= GOALS['d_over_b_1000'] else 'NOT met'}")
    return lines


def spread(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        parts = [f"({k}) {min(v):.1f}-{max(v):.1f} s" for k, v in sorted(r["samples"].items())]
        lines.append(f"- {r['users']} users: " + ", ".join(parts))
    return lines


def _load(meta: dict) -> str:
    load = meta.get("load_avg_5min")
    return f"{load[0]} at the start, {load[1]} at the end" if load else "not recorded"


def write_doc(results: list[dict], meta: dict) -> None:
    body = [SECTION, "",
            f"`make bench` (`benchmarks/realm_import.py`), {meta['date']}, Keycloak {meta['keycloak']} from the test bed "
            f"(dev-file database, one JVM with a 512 MB heap) on {meta['machine']}, shared with other jobs "
            f"(5-minute load average {_load(meta)}); median of {meta['runs']} run(s) per cell. "
            "Generated realm: N users (each with two attributes, one group, one realm role and a "
            "password), 50 groups (10 with 4 subgroups), 20 confidential clients with a mapper and two roles each. "
            "(a), (b) and (d) are wall-clock times of the Ansible command, start-up included (about 1 s); (c) is "
            "the bare HTTP request from Python. (a)/(c) is the median of the ratios of the runs made back to back. "
            "The peer (d) covers only groups and users (no roles, clients or "
            "passwords), one task iteration per object, and is timed once: fully at N=100; at N=1000 its rerun is "
            "timed on the first 100 users (and all groups) in the full realm and scaled linearly to N, since a "
            "full run takes over half an hour on this machine.",
            "", table(results), "", "Spread of the samples (min-max), a measure of how much the shared machine "
            "moved the numbers:", "", *spread(results), "", "Goals:", "", *goals(results), "",
            "Why it is fast: a missing realm goes to Keycloak in one `POST /admin/realms`, the same request as "
            "(c), so (a) - (c) is Ansible's start-up plus a token and a lookup; where (a) misses 1.5 x (c) it is by "
            "that fixed second, which no Ansible task avoids (see the line below each such goal). A no-op rerun "
            "reads clients, groups, roles and scopes with one `partial-export`, users in pages of 1000 (brief "
            "representation, which Keycloak 26 serves several times faster than the full one and which still "
            "carries attributes), memberships per group and per role instead of per user, and the client secrets "
            "the file sets; these reads run on up to 4 kept-alive HTTPS connections at once, so the request count "
            "hardly grows with N. The peer pays an Ansible task, a token and a few requests per object. Raw "
            "samples: `benchmarks/results/realm_import.json`.", ""]
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + "\n".join(body)
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + "\n".join(body) + ("\n" + text[nxt + 1:] if nxt >= 0 else "")
    DOC.write_text(text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=100 only, one run (smoke test)")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated user counts (default 100,1000,5000); replaces only those sizes in "
                             "the saved results")
    parser.add_argument("--no-peer", action="store_true", help="skip (d), the community.general peer")
    parser.add_argument("--peer-sample", type=int, default=100,
                        help="above 100 users, time the peer's rerun on this many users and scale (0: all)")
    parser.add_argument("--doc-only", action="store_true",
                        help="rewrite the docs section from benchmarks/results/realm_import.json, measure nothing")
    opts = parser.parse_args(argv)
    if opts.doc_only:
        saved = json.loads(RESULTS.read_text())
        write_doc(saved["results"], saved["meta"])
        print(table(saved["results"]))
        return 0
    sizes = [100] if opts.quick else [int(s) for s in (opts.sizes or "100,1000,5000").split(",")]
    reps = 1 if opts.quick else 3
    kc = testbed.up()
    admin = KeycloakAdmin(kc["url"], username=kc["username"], password=kc["password"], ca_path=kc["ca_path"],
                          timeout=600)
    results = []
    load_before = os.getloadavg()[1]
    try:
        with tempfile.TemporaryDirectory(prefix="realm-bench-") as tmp:
            for n in sizes:
                print(f"realm import benchmark: N={n}", file=sys.stderr, flush=True)
                results.append(bench_size(kc, admin, n, reps, peer=not opts.no_peer and n <= 1000,
                                          peer_sample=opts.peer_sample, workdir=Path(tmp)))
    finally:
        admin.close()
        if kc.get("started") and not os.environ.get("DATALAB_KEEP_TESTBED"):
            testbed.down()
    meta = {"date": datetime.date.today().isoformat(), "keycloak": testbed.versions.KEYCLOAK, "runs": reps,
            "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}",
            "quick": opts.quick, "load_avg_5min": [round(load_before, 1), round(os.getloadavg()[1], 1)]}
    if opts.sizes and RESULTS.exists() and not opts.quick:
        # A partial run replaces its sizes in the saved results and keeps the others.
        saved = json.loads(RESULTS.read_text())
        if not saved["meta"].get("quick"):
            done = {r["users"] for r in results}
            old = {r["users"]: r for r in saved["results"]}
            for r in results:  # a run without the peer keeps the peer's last numbers
                if "d_peer_rerun_s" not in r and r["users"] in old:
                    r.update({k: v for k, v in old[r["users"]].items() if k.startswith("d_")})
            results = sorted([r for r in saved["results"] if r["users"] not in done] + results, key=lambda r: r["users"])
            meta["partial_runs"] = saved["meta"].get("partial_runs", []) + [{"sizes": sorted(done), **meta}]
    # A smoke test (--quick) never replaces the real numbers.
    target = RESULTS.with_name("realm_import-quick.json") if opts.quick else RESULTS
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    if not opts.quick:
        write_doc(results, meta)
    print(table(results))
    print("\n".join(goals(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
