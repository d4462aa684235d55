# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Test-only connection `elsewhere`: the local connection under another name, so that an action plugin
which runs in-process only for `local` takes its other branch and ships its module, as it would to a
remote host, while the module still runs on this machine."""

from __future__ import annotations

DOCUMENTATION = r"""
name: elsewhere
short_description: The local connection under another transport name (tests only)
description:
  - Runs everything on the controller like C(ansible.builtin.local), but reports a transport other than C(local).
author:
  - datalab.notebooks developers (!UNKNOWN)
"""

from ansible.plugins.connection.local import Connection as LocalConnection


class Connection(LocalConnection):
    transport = "elsewhere"
