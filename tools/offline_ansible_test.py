"""Let `ansible-test sanity --venv` bootstrap pip without the internet.

ansible-test creates each sanity virtual environment without pip and bootstraps pip
with a get-pip script it downloads from ansible's CI file host, which the build
machines cannot reach. Before downloading it looks in its cache,
``~/.ansible/test/cache/get_pip_<version>.py``. This writes, for every pip version
the installed ansible-test asks for, a short script of our own to that path: it
installs the interpreter's bundled pip with ``ensurepip`` and then runs
``pip install`` with the arguments ansible-test passed (from PyPI, which is
reachable). Idempotent: a file that already has this content is left alone.

Run by ``make setup`` as ``python -m tools.offline_ansible_test``.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from pathlib import Path

CACHE_DIR = Path("~/.ansible/test/cache").expanduser()

# ansible-test runs this file as __main__ with sys.argv[1:] = the get-pip arguments,
# e.g. ["pip==24.2", "--disable-pip-version-check", "--no-setuptools", "--no-wheel"].
BOOTSTRAP = '''\
"""Offline stand-in for get-pip.py, written by datalab.notebooks tools/offline_ansible_test.py."""
import subprocess
import sys

# get-pip.py's own flags, which `pip install` does not accept.
GET_PIP_FLAGS = {"--no-setuptools", "--no-wheel"}

args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_FLAGS]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
# Older Pythons' ensurepip also installs setuptools; honour --no-setuptools as get-pip.py would.
if "--no-setuptools" in sys.argv[1:]:
    subprocess.call([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "setuptools"])
'''


def pip_versions() -> list[str]:
    """Every pip version that the installed ansible-test bootstraps (its get_venv_packages)."""
    spec = importlib.util.find_spec("ansible_test")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("ansible-test is not installed in this Python (%s); run `make setup`" % sys.executable)
    source = Path(list(spec.submodule_search_locations)[0], "_internal", "python_requirements.py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    versions = set()
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef) and func.name == "get_venv_packages":
            for node in ast.walk(func):
                if (isinstance(node, ast.keyword) and node.arg == "pip"
                        and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                    versions.add(node.value.value)
    if not versions:
        raise SystemExit("could not find the pip version in %s: ansible-test changed; update %s" % (source, __file__))
    return sorted(versions)


def write_bootstrap(version: str, cache_dir: Path = CACHE_DIR) -> tuple[Path, bool]:
    """Write the bootstrap script for ``version``; return its path and whether it was (re)written."""
    path = cache_dir / ("get_pip_%s.py" % version.replace(".", "_"))
    if path.is_file() and path.read_text(encoding="utf-8") == BOOTSTRAP:
        return path, False
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(BOOTSTRAP, encoding="utf-8")
    tmp.replace(path)
    return path, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="default: %(default)s")
    args = parser.parse_args(argv)
    for version in pip_versions():
        path, written = write_bootstrap(version, args.cache_dir)
        print("%s pip %s bootstrap for ansible-test: %s" % ("wrote" if written else "kept", version, path),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
