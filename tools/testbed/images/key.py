"""Cache keys: a SHA-256 over everything that goes into an image.

Inputs: every recipe field, the base image's key, the apt sources and the archive state the
host last saw (the `Date:` of each InRelease in /var/lib/apt/lists), the versions of the tools
that assemble the image, the contents (and modes, symlink targets) of local files, and the
builder's own source code.  Pure functions of their arguments, apart from the readers of the
host (`apt_state`, `tool_versions`, `builder_version`) which are cheap local reads.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import stat
import subprocess
from functools import lru_cache
from pathlib import Path

from .. import paths
from .recipes import Recipe

HERE = Path(__file__).resolve().parent
TOOLS = ("buildah", "mmdebstrap", "skopeo")


def digest(obj) -> str:
    """SHA-256 of a JSON-able value in canonical form."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_sha256(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(path: Path) -> str:
    """Content of a file or a directory tree: names, types, modes, bytes, symlink targets."""
    entries = []

    def one(p: Path, rel: str) -> None:
        st = p.lstat()
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            entries.append([rel, "l", os.readlink(p)])
        elif stat.S_ISDIR(st.st_mode):
            entries.append([rel, "d", mode])
            for child in sorted(os.listdir(p)):
                one(p / child, f"{rel}/{child}" if rel else child)
        elif stat.S_ISREG(st.st_mode):
            entries.append([rel, "f", mode, file_sha256(p)])
        else:
            raise ValueError(f"{p}: only files, directories and symlinks can go into an image")

    if not os.path.lexists(path):
        raise FileNotFoundError(f"image input {path} does not exist")
    one(Path(path), "")
    return digest(entries)


def source_path(src: str) -> Path:
    """A local input: a path (absolute or relative to the repository), or `py:<module>:<function>`,
    a function that returns the path of something the test bed makes itself (e.g. a binary built
    from the Go module proxy, cached), called whenever the key is computed."""
    if src.startswith("py:"):
        module, dummy, func = src[3:].partition(":")
        return Path(getattr(importlib.import_module(module), func)())
    p = Path(src)
    return p if p.is_absolute() else paths.REPO / p


def recipe_fields(recipe: Recipe) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(recipe)))


def local_inputs(recipe: Recipe) -> dict[str, str]:
    from ..procs import TestbedError  # noqa: PLC0415
    try:
        return {src: tree_digest(source_path(src)) for src, _dest in recipe.files}
    except (OSError, ValueError) as exc:
        raise TestbedError(f"image recipe {recipe.name}: {exc}") from None


def apt_sources_files() -> list[Path]:
    """The machine's active apt sources, which mmdebstrap and the host's apt use."""
    root = Path(os.environ.get("DATALAB_IMAGES_APT_ETC", "/etc/apt"))
    out = [root / "sources.list"] if (root / "sources.list").is_file() else []
    d = root / "sources.list.d"
    if d.is_dir():
        out += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources") and p.is_file())
    return out


def apt_state() -> dict:
    """The sources' text and the archive dates the host's apt lists record."""
    lists = Path(os.environ.get("DATALAB_IMAGES_APT_LISTS", "/var/lib/apt/lists"))
    dates = {}
    if lists.is_dir():
        for p in sorted(lists.glob("*InRelease")):
            try:
                for line in p.read_text(errors="replace").splitlines():
                    if line.startswith("Date:"):
                        dates[p.name] = line[5:].strip()
                        break
            except OSError:
                pass
    return {"sources": {str(p): p.read_text() for p in apt_sources_files()}, "release_dates": dates}


@lru_cache(maxsize=1)
def tool_versions() -> dict:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *TOOLS],
                             capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def builder_version() -> str:
    """The builder's code; recipes.py is data (its fields are keyed per recipe)."""
    files = sorted(p for p in HERE.glob("*.py") if p.name not in ("recipes.py", "__main__.py"))
    return digest({p.name: file_sha256(p) for p in files})


def recipe_key(recipe: Recipe, *, base_key: str | None, apt: dict, tools: dict, builder: str,
               local: dict[str, str]) -> str:
    """The cache key of one recipe given its resolved inputs (pure)."""
    return digest({
        "recipe": recipe_fields(recipe),
        "base": base_key,
        # apt state matters where Debian packages are resolved: the root and any layer adding debs
        "apt": apt if (recipe.base is None or recipe.debs) else None,
        "tools": tools,
        "builder": builder,
        "local": local,
    })


def static_key(ref: str, files: dict[str, str], entrypoint: list[str], env: dict | None, *, tools: dict,
               builder: str) -> str:
    """Key of a scratch image; `files` maps the destination to the source's tree digest."""
    return digest({"static": {"ref": ref, "files": files, "entrypoint": list(entrypoint),
                              "env": dict(env or {})}, "tools": tools, "builder": builder})
