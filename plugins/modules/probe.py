#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: probe
short_description: Run a read-only command and report its exit code and output, never failing on them
version_added: 0.2.0
description:
  - Runs one command without a shell and returns its exit code, standard output and standard error. A
    non-zero exit code, a program that is missing and a program that overruns O(timeout) are all results
    (RV(rc) 127, 126 or 124 with RV(stderr) saying why), not failures, so the next task can word the
    problem for the user. Only bad arguments fail the task.
  - Meant for the checks a role makes before it changes anything (is the Helm binary Helm 3, is the container
    engine usable, which build does an image carry). It never reports a change and it also runs in check mode,
    so the command must only read.
  - Where the host's connection is local, the command runs from the controller's process (no module start-up);
    on any other connection this module runs it on the host.
author:
  - datalab.notebooks developers (!UNKNOWN)
options:
  argv:
    description:
      - The program and its arguments. The program is looked up on E(PATH) unless it is a path.
    type: list
    elements: str
    required: true
  env:
    description:
      - Environment variables added to the command's environment (the rest is inherited).
    type: dict
    default: {}
  timeout:
    description:
      - Seconds after which the command is stopped and reported as RV(rc) 124.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: The command runs in check mode too; it must only read.
"""

EXAMPLES = r"""
- name: Run the Helm binary
  datalab.notebooks.probe:
    argv: [helm, version, --short]
  register: helm_version

- name: Refuse a Helm that is not Helm 3
  ansible.builtin.assert:
    that: helm_version.rc == 0 and helm_version.stdout is match('^v3\.')
    fail_msg: "helm does not run as Helm 3: {{ helm_version.stderr or helm_version.stdout }}"

- name: Ask podman, with its storage configuration, whether it works
  datalab.notebooks.probe:
    argv: [podman, info]
    env:
      CONTAINERS_STORAGE_CONF: /etc/containers/storage.conf
"""

RETURN = r"""
rc:
  description: The exit code; 127 when the program could not be started, 126 when it is not executable, 124 after a timeout.
  returned: always
  type: int
stdout:
  description: Standard output, trailing newlines removed.
  returned: always
  type: str
stderr:
  description: Standard error, trailing newlines removed, or why the program could not be started or was stopped.
  returned: always
  type: str
stdout_lines:
  description: RV(stdout) split into lines.
  returned: always
  type: list
  elements: str
stderr_lines:
  description: RV(stderr) split into lines.
  returned: always
  type: list
  elements: str
cmd:
  description: The command that ran.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datalab.notebooks.plugins.module_utils.probe import ARGUMENT_SPEC, ProbeError, check, run


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        params = check(module.params)
    except ProbeError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**run(params))


if __name__ == '__main__':
    main()
