"""The lookup datalab.notebooks.path_digest on files and directory trees (no cluster)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible.errors import AnsibleLookupError  # noqa: E402

from ansible_collections.datalab.notebooks.plugins.lookup.path_digest import path_digest  # noqa: E402


def test_a_file_is_its_content_sha256(tmp_path):
    f = tmp_path / "chart.tgz"
    f.write_bytes(b"abc")
    assert path_digest(str(f)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_directory_changes_with_any_file_name_mode_or_content(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("print(1)\n")
    (tmp_path / "sub" / "b").write_text("x")
    first = path_digest(str(tmp_path))
    assert path_digest(str(tmp_path)) == first
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert path_digest(str(tmp_path)) == first, "Python's caches are no input"
    (tmp_path / "sub" / "b").write_text("y")
    second = path_digest(str(tmp_path))
    assert second != first
    os.chmod(tmp_path / "a.py", 0o755)
    assert path_digest(str(tmp_path)) != second
    (tmp_path / "sub" / "b").rename(tmp_path / "sub" / "c")
    assert path_digest(str(tmp_path)) not in (first, second)


def test_a_missing_path_is_an_error_that_names_it(tmp_path):
    with pytest.raises(AnsibleLookupError, match="nowhere is neither a file nor a directory"):
        path_digest(str(tmp_path / "nowhere"))
