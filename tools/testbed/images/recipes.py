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
    pip_venv: str = "/opt/venv"                # created with the image's python3 (needs python3-venv)
    python_version: str = "3.11"               # the image's python, for `pip download --python-version`
    npm: tuple[str, ...] = ()                  # package specs, installed on the host into npm_prefix
    npm_prefix: str = "/opt/node"
    maven: tuple[Maven, ...] = ()
    files: tuple[tuple[str, str], ...] = ()    # (source: absolute or relative to the repository, dest)
    run: tuple[str, ...] = ()                  # `sh -c` commands inside the image, no network
    env: tuple[tuple[str, str], ...] = ()
    user: str | None = None
    workdir: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    ports: tuple[str, ...] = ()                # "8080" or "8080/tcp"
    labels: tuple[tuple[str, str], ...] = field(default=())


DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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
