"""Run `ansible-test sanity` on the collection, offline, in ansible-test's own virtual environments.

ansible-test only tests a tree that literally sits at ``ansible_collections/<ns>/<name>/``.
The checkout's link ``.collections/ansible_collections/datalab/notebooks`` does not do:
``--venv`` re-runs ansible-test from the resolved working directory (the repository
root), and the link points back into the tree it lives in. So this copies the files
git would see (tracked plus untracked-but-not-ignored) into a temporary
``ansible_collections/datalab/notebooks`` and runs there.

``--venv`` rather than ``--local``: every sanity test gets the tool versions
ansible-test pins for it (pylint, pycodestyle, voluptuous, ...), which would clash
with the project's own ansible-lint/yamllint in one environment. The environments
are built once from PyPI (reachable) and cached under ``~/.ansible/test/venv``; pip
itself is bootstrapped by the script that ``tools/offline_ansible_test.py`` seeds.

Exclusions are in ``tests/sanity/ignore-<ansible version>.txt``, each with its reason.
Run by ``make sanity``; extra arguments go to ansible-test (``--test pep8``, paths, ``-v``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tools import offline_ansible_test

REPO = Path(__file__).resolve().parents[1]
PYTHON_VERSION = "3.11"


def collection_name() -> tuple[str, str]:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text(encoding="utf-8"))
    return galaxy["namespace"], galaxy["name"]


def collection_files() -> list[str]:
    """What git would commit: tracked files plus untracked ones that .gitignore does not exclude."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, check=True, capture_output=True).stdout
    return sorted({name for name in out.decode().split("\0")
                   if name and (os.path.lexists(REPO / name))})


def copy_tree(dest: Path) -> int:
    files = collection_files()
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target, follow_symlinks=False)
    return len(files)


def ansible_test_env() -> dict[str, str]:
    env = dict(os.environ)
    # The repository's ansible.cfg points collections_path at the checkout itself;
    # ansible-test must see only the copy it sets up.
    for key in ("ANSIBLE_CONFIG", "ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_COLLECTIONS_PATHS",
                "ANSIBLE_TEST_CONTENT_ROOT"):
        env.pop(key, None)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", os.defpath)])
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its tests/output has the reports)")
    args, passthrough = parser.parse_known_args(argv)

    offline_ansible_test.main([])  # cheap and idempotent; covers an ansible-core upgrade since `make setup`
    namespace, name = collection_name()
    workdir = Path(tempfile.mkdtemp(prefix="datalab-sanity-"))
    dest = workdir / "ansible_collections" / namespace / name
    started = time.monotonic()
    try:
        count = copy_tree(dest)
        ansible_test = Path(sys.executable).parent / "ansible-test"
        cmd = [str(ansible_test), "sanity", "--python", PYTHON_VERSION, "--venv", *passthrough]
        print("sanity: %d files copied to %s\nsanity: %s" % (count, dest, " ".join(cmd)), file=sys.stderr, flush=True)
        rc = subprocess.call(cmd, cwd=dest, env=ansible_test_env())
    finally:
        if args.keep:
            print("sanity: kept %s" % dest, file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("sanity: %s in %.0fs" % ("passed" if rc == 0 else "FAILED (exit %d)" % rc, time.monotonic() - started),
          file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
