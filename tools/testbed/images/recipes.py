"""The images the test bed builds, as data.

A recipe either starts a Debian root filesystem (`base=None`: `mmdebstrap --variant=minbase` of
`suite` with `debs`) or layers on another recipe's image (`base="<recipe>"`: `debs` are fetched
on the host and installed offline inside).  Then, in this order: pip wheels into a venv, npm
packages, Maven artifacts, local files, `run` commands (no network), image config.

Adding an image is adding one entry to RECIPES; the cache key covers every field, so an edit
rebuilds that image (and the images layered on it) on the next `ensure()`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Maven:
    """An artifact `group:artifact:version[:packaging[:classifier]]` fetched with `mvn dependency:copy`
    (through ~/.m2) and placed at `dest` in the image: a file, or with `extract=True` a zip/tar.gz
    unpacked into the directory `dest` without its single top-level directory."""
    coords: str
    dest: str
    extract: bool = False


@dataclass(frozen=True)
class Recipe:
    name: str
    refs: tuple[str, ...]                      # exact references it is imported under
    base: str | None = None                    # another recipe, or None for a Debian root
    suite: str = "bookworm"                    # Debian root only
    debs: tuple[str, ...] = ()                 # Debian packages (no recommends)
    slim: bool = True                          # Debian root only: no man pages, docs, locales
    pip: tuple[str, ...] = ()                  # requirement specifiers; pin them (==) for a stable key
    # those of `pip` PyPI serves only as source: pure-Python wheels built on the host (`pip wheel`), else an error
    pip_sdist: tuple[str, ...] = ()
    pip_venv: str = "/opt/venv"                # created with the image's python3 (needs python3-venv)
    python_version: str = "3.11"               # the image's python, for `pip download --python-version`
    npm: tuple[str, ...] = ()                  # package specs, installed on the host into npm_prefix
    npm_prefix: str = "/opt/node"
    maven: tuple[Maven, ...] = ()
    # (source, dest); source: absolute, relative to the repository, or `py:<module>:<function>` returning a path
    # (key.source_path)
    files: tuple[tuple[str, str], ...] = ()
    run: tuple[str, ...] = ()                  # `sh -c` commands inside the image, no network
    env: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    workdir: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    ports: tuple[str, ...] = ()                # "8080" or "8080/tcp"
    labels: tuple[tuple[str, str], ...] = field(default=())


DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The chart's hub image requirements (zero-to-jupyterhub-k8s 4.4.0, images/hub/requirements.txt),
# psycopg2 as psycopg2-binary (see the k8s-hub recipe).
HUB_PINS = (
    "aiohappyeyeballs==2.6.2", "aiohttp==3.14.1", "aiosignal==1.4.0", "alembic==1.18.4", "annotated-types==0.7.0",
    "arrow==1.4.0", "attrs==26.1.0", "bcrypt==5.0.0", "cachetools==7.1.4", "certifi==2026.5.20", "certipy==0.2.3",
    "cffi==2.0.0", "charset-normalizer==3.4.7", "cryptography==48.0.1", "escapism==1.1.0", "fqdn==1.5.1",
    "frozenlist==1.8.0", "google-auth==2.53.0", "google-auth-oauthlib==1.4.0", "greenlet==3.5.1", "idna==3.18",
    "isoduration==20.11.0", "jinja2==3.1.6", "jsonpointer==3.1.1", "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1", "jupyter-events==0.12.1", "jupyterhub==5.5.0",
    "jupyterhub-firstuseauthenticator==1.1.1", "jupyterhub-hmacauthenticator==1.0", "jupyterhub-idle-culler==1.4.0",
    "jupyterhub-kubespawner==7.0.0", "jupyterhub-ldapauthenticator==2.0.2", "jupyterhub-ltiauthenticator==1.6.3",
    "jupyterhub-nativeauthenticator==1.3.0", "jupyterhub-tmpauthenticator==1.0.0", "kubernetes-asyncio==36.1.0",
    "lark==1.3.1", "ldap3==2.9.1", "mako==1.3.12", "markupsafe==3.0.3", "multidict==6.7.1", "mwoauth==0.4.0",
    "oauthenticator==17.4.0", "oauthlib==3.3.1", "onetimepass==1.0.1", "packaging==26.2", "pamela==1.2.0",
    "prometheus-client==0.25.0", "propcache==0.5.2", "psycopg2-binary==2.9.12", "pyasn1==0.6.3",
    "pyasn1-modules==0.4.2", "pycparser==3.0", "pycurl==7.46.0", "pydantic==2.13.4", "pydantic-core==2.46.4",
    "pyjwt==2.13.0", "pymysql==1.2.0", "python-dateutil==2.9.0.post0", "python-json-logger==4.1.0",
    "python-slugify==8.0.4", "pyyaml==6.0.3", "referencing==0.37.0", "requests==2.34.2", "requests-oauthlib==2.0.0",
    "rfc3339-validator==0.1.4", "rfc3986-validator==0.1.1", "rfc3987-syntax==1.1.0", "rpds-py==2026.5.1",
    "ruamel-yaml==0.19.1", "six==1.17.0", "sqlalchemy==2.0.50", "sqlalchemy-cockroachdb==2.0.4", "statsd==4.0.1",
    "text-unidecode==1.3", "tornado==6.5.7", "traitlets==5.15.1", "typing-extensions==4.15.0",
    "typing-inspection==0.4.2", "tzdata==2026.2", "uri-template==1.3.0", "urllib3==2.7.0", "webcolors==25.10.0",
    "yarl==1.24.2",
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    # The common Debian root every other image layers on: built once, shared as the first layer.
    Recipe(
        name="debian-base",
        refs=("local.test/debian-base:bookworm",),
        debs=("ca-certificates",),
        env=(("PATH", DEBIAN_PATH), ("LANG", "C.UTF-8")),
        cmd=("/bin/bash",),
    ),
    # A real server for tests: `python3 -m http.server`.
    Recipe(
        name="debian-python",
        refs=("local.test/debian-python:1",),
        base="debian-base",
        debs=("python3",),
        cmd=("python3",),
    ),
    # Base for Java servers (Keycloak).
    Recipe(
        name="debian-jre",
        refs=("local.test/debian-jre:17",),
        base="debian-base",
        debs=("openjdk-17-jre-headless",),
        env=(("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64"),),
        cmd=("java", "-version"),
    ),

    # --- the platform's images, under the references the roles and the chart run (IfNotPresent) ---
    # Keycloak: the server distribution from Maven Central (the artifact tools/testbed/keycloak.py
    # starts on the host, through the same ~/.m2), `kc.sh build` with the defaults, as user 1000
    # (group 0, group-writable like the official image), entrypoint kc.sh: the role's Deployment
    # passes `start ...` as args.
    Recipe(
        name="keycloak",
        refs=("quay.io/keycloak/keycloak:26.5.5",),
        base="debian-jre",
        maven=(Maven("org.keycloak:keycloak-quarkus-dist:26.5.5:zip", "/opt/keycloak", extract=True),),
        run=(
            "echo 'keycloak:x:1000:0:keycloak:/opt/keycloak:/usr/sbin/nologin' >> /etc/passwd",
            "cd /opt/keycloak && bin/kc.sh build && rm -rf data/tmp && mkdir -p data "
            "&& chown -R 1000:0 /opt/keycloak && chmod -R g+rwX /opt/keycloak",
        ),
        env=(("KC_RUN_IN_CONTAINER", "true"),),
        user="1000",
        workdir="/opt/keycloak",
        entrypoint=("/opt/keycloak/bin/kc.sh",),
        ports=("8080", "8443", "9000"),
    ),
    # MinIO server and mc: AGPL, compiled from the Go module proxy at build time (tools/testbed/s3build.py),
    # never part of this repository. The role passes `server /data ...` as args; the bucket Job runs
    # /bin/sh with `mc` on PATH.
    Recipe(
        name="minio",
        refs=("quay.io/minio/minio:RELEASE.2024-12-18T13-15-44Z",),
        base="debian-base",
        files=(("py:tools.testbed.s3build:minio_binary", "/usr/bin/minio"),),
        user="1000",
        entrypoint=("/usr/bin/minio",),
        ports=("9000", "9001"),
    ),
    Recipe(
        name="mc",
        refs=("quay.io/minio/mc:RELEASE.2024-11-21T17-21-54Z",),
        base="debian-base",
        files=(("py:tools.testbed.s3build:mc_binary", "/usr/bin/mc"),),
        user="1000",
        entrypoint=("/usr/bin/mc",),
    ),
    # The chart's hub: exactly the pins of the chart's hub image (z2jh 4.4.0 images/hub/requirements.txt,
    # tests/unit/test_images.py compares them with ../shared/upstream-charts), except psycopg2, which PyPI
    # serves only as source with C code: psycopg2-binary of the same version (same `psycopg2` module).
    # onetimepass is source-only too (pure Python): a wheel built on the host.  The chart passes
    # `jupyterhub --config /usr/local/etc/jupyterhub/jupyterhub_config.py ...` as args and mounts
    # the config and z2jh.py; the sqlite database lives in /srv/jupyterhub (a PVC).
    Recipe(
        name="k8s-hub",
        refs=("quay.io/jupyterhub/k8s-hub:4.4.0",),
        base="debian-python",
        debs=("python3-venv", "tini"),
        pip=HUB_PINS,
        pip_sdist=("onetimepass==1.0.1",),
        pip_venv="/opt/hub",
        run=(
            "echo 'jovyan:x:1000:1000:jovyan:/home/jovyan:/bin/sh' >> /etc/passwd "
            "&& echo 'jovyan:x:1000:' >> /etc/group",
            "mkdir -p /home/jovyan /srv/jupyterhub /usr/local/etc/jupyterhub "
            "&& chown 1000:1000 /home/jovyan /srv/jupyterhub",
        ),
        env=(("PATH", "/opt/hub/bin:" + DEBIAN_PATH), ("HOME", "/home/jovyan")),
        user="1000",
        workdir="/srv/jupyterhub",
        entrypoint=("tini", "--"),
        cmd=("jupyterhub", "--config", "/usr/local/etc/jupyterhub/jupyterhub_config.py"),
        ports=("8081",),
    ),
    # configurable-http-proxy at the chart's version (npm) on Debian's nodejs; the chart's command is
    # `configurable-http-proxy --ip= --api-ip= --api-port=8001 ...` as user 65534.
    Recipe(
        name="chp",
        refs=("quay.io/jupyterhub/configurable-http-proxy:5.2.0",),
        base="debian-base",
        debs=("nodejs",),
        npm=("configurable-http-proxy@5.2.0",),
        npm_prefix="/srv/configurable-http-proxy",
        env=(("PATH", "/srv/configurable-http-proxy/node_modules/.bin:" + DEBIAN_PATH),),
        user="65534",
        entrypoint=("configurable-http-proxy",),
        ports=("8000", "8001"),
    ),
    # The chart's singleuser.cloudMetadata.blockWithIptables (default true, the role keeps it): every
    # user pod gets a privileged init container of this image running
    # `iptables --append OUTPUT --protocol tcp --destination 169.254.169.254 --destination-port 80 --jump DROP`.
    Recipe(
        name="k8s-network-tools",
        refs=("quay.io/jupyterhub/k8s-network-tools:4.4.0",),
        base="debian-base",
        debs=("iptables",),
        cmd=("iptables", "--version"),
    ),
    # The base the spark_image role builds the executor image FROM in the local inventory (the role's
    # default is the official `spark` image, which cannot be pulled here): Java 17, Debian's Python
    # 3.11 with venv, and Spark 3.5.2 laid out as the official image has it: SPARK_HOME=/opt/spark with
    # jars/ and bin/ (from the PyPI `pyspark` wheel, which bundles Spark's jars), the pyspark and py4j
    # packages on PYTHONPATH for the executors' Python workers, user spark (185). No entrypoint: the
    # role adds its own (roles/spark_image/files/executor-entrypoint.sh).
    Recipe(
        name="spark-base",
        refs=("local.test/spark-base:3.5.2",),
        base="debian-jre",
        debs=("python3", "python3-venv", "procps", "tini"),
        pip=("pyspark==3.5.2",),
        pip_sdist=("pyspark==3.5.2",),
        pip_venv="/opt/pyspark",
        run=(
            "echo 'spark:x:185:185:spark:/opt/spark:/usr/sbin/nologin' >> /etc/passwd "
            "&& echo 'spark:x:185:' >> /etc/group",
            "set -e; sp=/opt/pyspark/lib/python3.11/site-packages; mkdir -p /opt/spark/python /opt/spark/work-dir; "
            "mv $sp/pyspark/jars /opt/spark/jars; ln -s /opt/spark/jars $sp/pyspark/jars; "
            "ln -s $sp/pyspark/bin /opt/spark/bin; ln -s $sp/pyspark/sbin /opt/spark/sbin; "
            "ln -s $sp/pyspark /opt/spark/python/pyspark; ln -s $sp/py4j /opt/spark/python/py4j; "
            "chown 185:0 /opt/spark/work-dir; chmod g+w /opt/spark/work-dir",
        ),
        env=(("SPARK_HOME", "/opt/spark"), ("PYTHONPATH", "/opt/spark/python")),
        user="185",
        workdir="/opt/spark/work-dir",
        cmd=("/bin/bash",),
    ),
    # The local profile's notebook server: JupyterLab + jupyterhub-singleuser (the hub's JupyterHub
    # version) + PySpark 3.5.2 (bundles Spark; PyPI has it only as a pure-Python sdist: a wheel built
    # on the host) + Java 17 + what the shipped notebook imports (pyarrow, pandas). The role sets
    # `singleuser.cmd: null`, so KubeSpawner runs the image's CMD: jupyterhub-singleuser.
    Recipe(
        name="pyspark-notebook",
        refs=("quay.io/jupyter/pyspark-notebook:spark-3.5.2",),
        base="debian-jre",
        debs=("python3", "python3-venv", "tini", "procps"),
        pip=("jupyterlab==4.4.10", "jupyterhub==5.5.0", "pyspark==3.5.2", "pyarrow==17.0.0", "pandas==2.2.3",
             "numpy==1.26.4"),
        pip_sdist=("pyspark==3.5.2",),
        pip_venv="/opt/conda",
        run=(
            "echo 'jovyan:x:1000:100:jovyan:/home/jovyan:/bin/bash' >> /etc/passwd",
            "mkdir -p /home/jovyan/work && chown -R 1000:100 /home/jovyan && chmod -R g+w /home/jovyan",
        ),
        env=(("PATH", "/opt/conda/bin:" + DEBIAN_PATH), ("HOME", "/home/jovyan"), ("NB_USER", "jovyan"),
             ("NB_UID", "1000"), ("NB_GID", "100"), ("SHELL", "/bin/bash"),
             ("SPARK_HOME", "/opt/conda/lib/python3.11/site-packages/pyspark")),
        user="1000",
        workdir="/home/jovyan",
        entrypoint=("tini", "-g", "--"),
        cmd=("jupyterhub-singleuser",),
        ports=("8888",),
    ),
)}


def get(name: str) -> Recipe:
    from ..procs import TestbedError
    try:
        return RECIPES[name]
    except KeyError:
        raise TestbedError(f"no image recipe {name!r}; known: {', '.join(sorted(RECIPES))} "
                           f"(tools/testbed/images/recipes.py)") from None


def chain(name: str) -> list[Recipe]:
    """The recipe and its bases, the Debian root first."""
    out: list[Recipe] = []
    seen: set[str] = set()
    r: Recipe | None = get(name)
    while r is not None:
        if r.name in seen:
            from ..procs import TestbedError
            raise TestbedError(f"image recipes form a cycle through {r.name!r}")
        seen.add(r.name)
        out.append(r)
        r = get(r.base) if r.base else None
    return out[::-1]
