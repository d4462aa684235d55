"""Keycloak on the host: the real server distribution, HTTPS only, on loopback.

The distribution (`org.keycloak:keycloak-quarkus-dist`, same version as the keycloak role's image)
comes from Maven Central once, is unpacked into the cache, keyed by version, and built there
once with `kc.sh build` and BUILD_OPTIONS.  The integrity record (`.datalab-complete`) holds the
archive's checksum, the build options and the size of every file after the build: a change of
the options, a missing or damaged file, or an interrupted unpack or build gives a fresh unpack
and build instead of a failing start.  Every start is then `kc.sh start --optimized`.

`launch()` is the one way to start Keycloak on the host: the test bed's own instance (`up()`),
the e2e harness's and the benchmarks' all go through it.  Each instance gets its own Keycloak
home: a copy of `bin/kc.sh` (Keycloak derives its home from the script's real path) next to
symlinks into the cached distribution, and a private `data/` for the dev-file database.
`down()` removes that home and keeps the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import paths, pki, versions
from .images.steps import unpack
from .procs import Procs, TestbedError, check_port_free, tail, teardown_shield

NAME = "keycloak"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{versions.KEYCLOAK}:zip"
START_TIMEOUT = float(os.environ.get("DATALAB_KEYCLOAK_START_TIMEOUT", "300"))
# Tried after DATALAB_KEYCLOAK_JAVA_HOME and the `java` on PATH (Java 17 here).
JAVA_CANDIDATES = ("/usr/lib/jvm/temurin-25-jdk-amd64", "/usr/lib/jvm/java-21-openjdk-amd64")
SAN_DNS = ["localhost", "keycloak"]
SAN_IPS = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5",
           "127.0.1.2", "127.0.1.3", "127.0.1.4", "127.0.1.5"]
ADMIN_USER = "admin"


def _host() -> str:
    return os.environ.get("DATALAB_KEYCLOAK_HOST", "127.0.0.1")


def _port() -> int:
    return int(os.environ.get("DATALAB_KEYCLOAK_PORT", "18443"))


def _mgmt_port() -> int:
    return int(os.environ.get("DATALAB_KEYCLOAK_MANAGEMENT_PORT", "19000"))


def _say(msg: str) -> None:
    # Progress goes to stderr: `make -s keycloak-env` must print only export lines on stdout.
    print(f"[testbed] keycloak: {msg}", file=sys.stderr, flush=True)


# --- distribution (cache) ------------------------------------------------------------------

def _m2_zip() -> Path:
    repo = Path(os.environ.get("MAVEN_REPO_LOCAL") or Path.home() / ".m2" / "repository")
    ver = versions.KEYCLOAK
    return repo / "org" / "keycloak" / "keycloak-quarkus-dist" / ver / f"keycloak-quarkus-dist-{ver}.zip"


def _sha1(path: Path) -> str:
    h = hashlib.sha1()  # Maven publishes SHA-1 next to the artifact; an integrity check, not security
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _zip_ok(path: Path) -> bool:
    if not path.is_file():
        return False
    sha_file = path.with_name(path.name + ".sha1")
    if sha_file.is_file():
        words = sha_file.read_text().split()
        if words and _sha1(path) != words[0].lower():
            return False
    try:
        with zipfile.ZipFile(path) as zf:
            return bool(zf.namelist())
    except zipfile.BadZipFile:
        return False


def _download() -> Path:
    zpath = _m2_zip()
    if _zip_ok(zpath):
        return zpath
    if zpath.exists():
        _say(f"cached {zpath.name} is corrupt; downloading it again")
        shutil.rmtree(zpath.parent, ignore_errors=True)
    if not shutil.which("mvn"):
        raise TestbedError("Maven (`mvn`) is needed to download the Keycloak distribution: `apt-get install maven`")
    _say(f"downloading {ARTIFACT} from Maven Central")
    res = subprocess.run(["mvn", "-B", "-q", "dependency:get", f"-Dartifact={ARTIFACT}", "-Dtransitive=false"],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0 or not _zip_ok(zpath):
        out = "\n".join((res.stdout + res.stderr).splitlines()[-15:])
        raise TestbedError(f"could not download {ARTIFACT} with mvn (exit {res.returncode}):\n{out}")
    return zpath


def dist_dir() -> Path:
    return paths.cache_dir() / f"keycloak-{versions.KEYCLOAK}"


# Build-time options of every host start (`kc.sh build`); the starts add only run-time options.
# Part of the integrity record: changing them rebuilds the cached distribution.
BUILD_OPTIONS = ("--db=dev-file", "--health-enabled=false", "--metrics-enabled=false")


def _marker(dist: Path) -> Path:
    return dist / ".datalab-complete"


def _tree_sizes(root: Path) -> dict[str, int]:
    out = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.name != _marker(root).name:
            out[str(path.relative_to(root))] = path.stat().st_size
    return out


def dist_problem(dist: Path) -> str | None:
    """Why the cached distribution cannot be used as it is (None: it can).  Checks that the
    unpack and the build finished with today's BUILD_OPTIONS and that every file the build left
    still has its recorded size."""
    try:
        record = json.loads(_marker(dist).read_text())
    except OSError:
        return "not unpacked and built yet"
    except ValueError:
        return "its integrity record is unreadable"
    if record.get("build_options") != list(BUILD_OPTIONS):
        return f"it was built with {record.get('build_options')}, the starts need {list(BUILD_OPTIONS)}"
    files = record.get("files") or {}
    if "lib/quarkus/build-system.properties" not in files:
        return "it was never built (`kc.sh build`)"
    for rel, size in files.items():
        try:
            if (dist / rel).stat().st_size != size:
                return f"{rel} has changed size since it was built"
        except OSError:
            return f"{rel} is missing"
    return None


def _unpack(zpath: Path, into: Path) -> None:
    unpack(zpath, into)  # the image builder's unpacker: the archive's top directory dropped
    if not (into / "bin" / "kc.sh").is_file() or not (into / "lib" / "quarkus-run.jar").is_file():
        raise TestbedError(f"{zpath} does not look like the Keycloak server distribution (no bin/kc.sh)")
    (into / "bin" / "kc.sh").chmod(0o755)


def _build(dist: Path) -> None:
    """`kc.sh build` in the (not yet published) tree, so every start can be `--optimized`."""
    log = dist / "build.log"
    t0 = time.monotonic()
    with open(log, "wb") as out:
        res = subprocess.run([str(dist / "bin" / "kc.sh"), "build", *BUILD_OPTIONS], cwd=dist, stdout=out,
                             stderr=subprocess.STDOUT, env={**os.environ, **java_env(dist)}, check=False)
    if res.returncode != 0:
        raise TestbedError(f"`kc.sh build {' '.join(BUILD_OPTIONS)}` failed (exit {res.returncode}); last lines of "
                           f"{log}:\n{tail(log, 25)}")
    _say(f"built the distribution in {time.monotonic() - t0:.0f}s ({' '.join(BUILD_OPTIONS)})")


def ensure_dist() -> Path:
    """The cached distribution, unpacked and built; redone from the archive when it is not usable."""
    dist = dist_dir()
    problem = dist_problem(dist)
    if problem is None:
        return dist
    zpath = _download()
    if dist.exists():
        _say(f"{dist} cannot be used ({problem}); unpacking and building it again")
        shutil.rmtree(dist)
    dist.parent.mkdir(parents=True, exist_ok=True)
    for stale in dist.parent.glob(f".{dist.name}.tmp-*"):  # left by an unpack or build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = dist.parent / f".{dist.name}.tmp-{os.getpid()}"
    _say(f"unpacking {zpath.name} into {dist} and building it (first use: about a minute)")
    try:
        _unpack(zpath, tmp)
        _build(tmp)
        shutil.rmtree(tmp / "data", ignore_errors=True)  # each instance has a private data/
        record = {"zip_sha1": _sha1(zpath), "build_options": list(BUILD_OPTIONS), "files": _tree_sizes(tmp)}
        _marker(tmp).write_text(json.dumps(record, sort_keys=True))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(dist)  # atomic: a half-unpacked or unbuilt tree never sits at `dist`
    return dist


# --- Java ----------------------------------------------------------------------------------

def _java_major(java_home: str | None) -> int | None:
    exe = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not exe or not os.access(exe, os.X_OK):
        return None
    res = subprocess.run([exe, "-XshowSettings:properties", "-version"], capture_output=True, text=True,
                         check=False)
    for line in res.stderr.splitlines():
        if "java.specification.version" in line:
            value = line.split("=", 1)[1].strip()
            try:
                return int(value[2:] if value.startswith("1.") else value)
            except ValueError:
                return None
    return None


def _required_java(dist: Path) -> int:
    """The Java release the distribution is compiled for (class-file major version - 44)."""
    for jar in sorted((dist / "lib" / "lib" / "main").glob("org.keycloak.keycloak-core-*.jar")):
        with zipfile.ZipFile(jar) as zf:
            for name in zf.namelist():
                if name.endswith(".class") and not name.startswith("META-INF/"):
                    return int.from_bytes(zf.read(name)[6:8], "big") - 44
    return 17


def java_env(dist: Path) -> dict:
    """JAVA (and JAVA_HOME) for kc.sh: the first JVM new enough for the distribution."""
    need = _required_java(dist)
    override = os.environ.get("DATALAB_KEYCLOAK_JAVA_HOME")
    for home in ([override] if override else []) + [None, *JAVA_CANDIDATES]:
        major = _java_major(home)
        if major and major >= need:
            if home is None:
                return {"JAVA": shutil.which("java")}
            return {"JAVA_HOME": home, "JAVA": os.path.join(home, "bin", "java")}
    raise TestbedError(f"Keycloak {versions.KEYCLOAK} needs Java {need} or newer and none was found (looked at "
                       f"`java` on PATH and {', '.join(JAVA_CANDIDATES)}); set DATALAB_KEYCLOAK_JAVA_HOME")


# --- instance (state) ----------------------------------------------------------------------

def _state() -> Path:
    return paths.keycloak_dir()


def _procs() -> Procs:
    return Procs(_state())


def _home(state: Path, dist: Path) -> Path:
    """A Keycloak home under `state` whose data/ is private and everything else is the cache's."""
    home = state / "home"
    (home / "bin").mkdir(parents=True, exist_ok=True)
    (home / "data").mkdir(exist_ok=True)
    shutil.copy2(dist / "bin" / "kc.sh", home / "bin" / "kc.sh")
    for name in ("lib", "themes", "providers", "conf"):
        link = home / name
        if link.is_symlink():
            if os.readlink(link) == str(dist / name):
                continue
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        link.symlink_to(dist / name)
    return home


@dataclass(frozen=True)
class Launch:
    """What one host Keycloak needs; secrets go by environment, never argv (`ps` shows argv)."""
    state: Path  # the instance's directory: home, pids, logs
    host: str
    port: int
    management_port: int
    keystore: Path
    keystore_password: str
    admin_user: str
    admin_password: str
    ca_pem: str  # verifies the server while waiting for it

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"


def launch(spec: Launch, timeout: float = START_TIMEOUT) -> Procs:
    """Start Keycloak from the built cache (`kc.sh start --optimized`) and wait until
    `/realms/master` answers over HTTPS, verified with `spec.ca_pem`.  The process is recorded
    in `spec.state` (PID + start time) as NAME; a failed start is stopped and raises with the log."""
    dist = ensure_dist()
    check_port_free(spec.host, spec.port, "Keycloak (HTTPS)")
    check_port_free(spec.host, spec.management_port, "Keycloak (management interface)")
    home = _home(spec.state, dist)
    argv = [str(home / "bin" / "kc.sh"), "start", "--optimized",
            "--http-enabled=false", "--hostname-strict=false",
            f"--https-key-store-file={spec.keystore}",
            f"--http-host={spec.host}", f"--https-port={spec.port}",
            f"--http-management-port={spec.management_port}",
            "--cache=local", "--log-console-color=false"]
    env = {
        **java_env(dist),
        "KC_HTTPS_KEY_STORE_PASSWORD": spec.keystore_password,  # = --https-key-store-password
        "KC_BOOTSTRAP_ADMIN_USERNAME": spec.admin_user,
        "KC_BOOTSTRAP_ADMIN_PASSWORD": spec.admin_password,
        "JAVA_OPTS_APPEND": "-Djava.net.preferIPv4Stack=true",
    }
    procs = Procs(spec.state)
    _say(f"starting Keycloak {versions.KEYCLOAK} on {spec.url} (log: {procs.log(NAME)})")
    procs.start(NAME, argv, env=env, cwd=home)
    deadline = time.monotonic() + timeout
    while not _answers(spec.url, spec.ca_pem):
        if not procs.alive(NAME):
            raise TestbedError(f"Keycloak exited during start; last lines of {procs.log(NAME)}:\n"
                               f"{tail(procs.log(NAME), 30)}")
        if time.monotonic() > deadline:
            last = tail(procs.log(NAME), 30)
            procs.stop(NAME)
            raise TestbedError(f"Keycloak did not answer {spec.url}/realms/master within {timeout:.0f}s; "
                               f"last lines of {procs.log(NAME)}:\n{last}")
        time.sleep(1)
    return procs


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)


def _secret_file(path: Path) -> str:
    """A generated secret kept in the state dir (0600), reused while the state dir lives."""
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    _write_private(path, value + "\n")
    return value


def _pki(state: Path) -> tuple[Path, Path, str]:
    """Test CA + server keystore, made fresh at each start (the dev-file DB does not depend on them)."""
    tls = state / "tls"
    ca = pki.make_ca("datalab test-bed Keycloak CA")
    server = pki.issue(ca, "keycloak", dns=SAN_DNS, ips=SAN_IPS, rsa_key=True)
    ca_crt, _ca_key = ca.write(tls, "ca")
    store_pw = _secret_file(state / "keystore-password")
    store = pki.write_pkcs12(server, ca, tls / "keystore.p12", store_pw)
    return ca_crt, store, store_pw


def _answers(url: str, ca_pem: str) -> bool:
    ctx = ssl.create_default_context(cadata=ca_pem)
    try:
        with urllib.request.urlopen(f"{url}/realms/master", context=ctx, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def _conn_answers(conn: dict) -> bool:
    try:
        return _answers(conn["url"], Path(conn["ca_path"]).read_text())
    except (OSError, KeyError):
        return False


def _connection_file() -> Path:
    return _state() / "connection.json"


def _read_connection() -> dict | None:
    try:
        return json.loads(_connection_file().read_text())
    except (OSError, ValueError):
        return None


def _running_info() -> dict | None:
    conn = _read_connection()
    if conn and _procs().alive(NAME) and _conn_answers(conn):
        return conn
    return None


def up() -> dict:
    info = _running_info()
    if info:
        return {**info, "started": False}
    procs = _procs()
    if procs.recorded().get(NAME):
        procs.stop(NAME)  # recorded but not answering: start over cleanly
    _connection_file().unlink(missing_ok=True)
    state = _state()
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)
    ca_crt, store, store_pw = _pki(state)
    spec = Launch(state=state, host=_host(), port=_port(), management_port=_mgmt_port(), keystore=store,
                  keystore_password=store_pw, admin_user=ADMIN_USER,
                  # Reused with the state dir: the dev-file DB keeps the admin created at its first start.
                  admin_password=_secret_file(state / "admin-password"), ca_pem=ca_crt.read_text())
    launch(spec)
    info = {"url": spec.url, "username": ADMIN_USER, "password": spec.admin_password, "ca_path": str(ca_crt)}
    _write_private(_connection_file(), json.dumps(info, indent=2) + "\n")
    _say(f"ready at {spec.url}")
    return {**info, "started": True}


def down() -> None:
    with teardown_shield():
        _procs().stop(NAME)
        shutil.rmtree(_state(), ignore_errors=True)


def status() -> dict[str, bool]:
    """{} when never started; otherwise whether the process lives and whether it answers over HTTPS."""
    procs = _procs()
    if not procs.recorded().get(NAME):
        return {}
    alive = procs.alive(NAME)
    conn = _read_connection()
    return {"keycloak": alive,
            "keycloak https": bool(alive and conn and _conn_answers(conn))}


def env() -> dict[str, str]:
    info = _running_info()
    if not info:
        raise TestbedError("the test-bed Keycloak is not running: start it with `make keycloak-up`")
    return {"KEYCLOAK_URL": info["url"], "KEYCLOAK_ADMIN_USER": info["username"],
            "KEYCLOAK_ADMIN_PASSWORD": info["password"], "KEYCLOAK_CA": info["ca_path"]}
