# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
name: path_digest
short_description: SHA-256 of a file, or of a directory tree (names, modes and contents)
version_added: 0.2.0
description:
  - Hashes each path on the controller, in the lookup's process (no module start-up).
  - A directory is hashed as the sorted list of its files (relative path, whether executable, SHA-256 of the
    content), symlinks followed; so a chart directory or a script directory gets a new digest when any file in
    it changes. C(__pycache__) directories and C(.pyc) files are left out.
author:
  - datalab.notebooks developers (!UNKNOWN)
options:
  _terms:
    description: Paths of files or directories.
    type: list
    elements: path
    required: true
"""

EXAMPLES = r"""
- name: Note the chart's digest
  ansible.builtin.debug:
    msg: "{{ lookup('datalab.notebooks.path_digest', '/charts/jupyterhub-4.4.0.tgz') }}"
"""

RETURN = r"""
_raw:
  description: One hex digest per path.
  type: list
  elements: str
"""

import hashlib
import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def path_digest(path):
    """Hex SHA-256 of a file, or of a directory tree as (relative path, executable, content digest) lines."""
    if os.path.isfile(path):
        return _file_digest(path)
    if not os.path.isdir(path):
        raise AnsibleLookupError("path_digest: %s is neither a file nor a directory" % path)
    lines = []
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")  # Python's caches are no input
        for name in sorted(f for f in files if not f.endswith(".pyc")):
            full = os.path.join(root, name)
            lines.append("%s\t%d\t%s" % (os.path.relpath(full, path), os.access(full, os.X_OK), _file_digest(full)))
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        try:
            return [path_digest(os.path.expanduser(str(term))) for term in terms]
        except OSError as exc:
            raise AnsibleLookupError("path_digest: %s" % exc) from None
