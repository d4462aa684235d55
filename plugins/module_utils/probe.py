# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""One read-only command, run without a shell, and what it said: the shared core of the
datalab.notebooks.probe module (on the host) and its action plugin (in the controller's process)."""

from __future__ import annotations

import os
import subprocess

ARGUMENT_SPEC = dict(
    argv=dict(type="list", elements="str", required=True),
    env=dict(type="dict", default={}),
    timeout=dict(type="int", default=60),
)


class ProbeError(Exception):
    """The arguments cannot describe a command."""


def check(params):
    """Refuse arguments no command can be run from; return them unchanged."""
    if not params["argv"] or not params["argv"][0]:
        raise ProbeError("probe: argv must name a program to run (its first element is empty)")
    if params["timeout"] <= 0:
        raise ProbeError("probe: timeout must be a positive number of seconds, not %d" % params["timeout"])
    bad = sorted(str(key) for key, value in params["env"].items() if not str(key) or "=" in str(key))
    if bad:
        raise ProbeError("probe: env has names that cannot be environment variables: %s" % ", ".join(bad))
    return params


def run(params):
    """Run argv with env added to this process's environment. The result always has rc, stdout and
    stderr (trailing newlines removed, as the command module does): a program that cannot be started is
    rc 127 (126 when it is not executable) and a program that overruns the timeout is rc 124, each with
    stderr saying so, so a caller words every failure the same way."""
    argv = [str(arg) for arg in params["argv"]]
    environ = dict(os.environ)
    environ.update((str(key), "" if value is None else str(value)) for key, value in params["env"].items())
    try:
        proc = subprocess.run(argv, env=environ, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=params["timeout"], check=False)
    except subprocess.TimeoutExpired as exc:
        return _said(124, exc.stdout, "%s did not finish within %d s" % (argv[0], params["timeout"]), argv)
    except OSError as exc:
        return _said(126 if isinstance(exc, PermissionError) else 127, b"",
                     "cannot run %s: %s" % (argv[0], exc.strerror or exc), argv)
    return _said(proc.returncode, proc.stdout, proc.stderr, argv)


def _said(rc, stdout, stderr, argv):
    def text(data):
        if isinstance(data, bytes):
            data = data.decode("utf-8", errors="replace")
        return (data or "").rstrip("\n")
    stdout, stderr = text(stdout), text(stderr)
    # failed=False: a non-zero rc is a result here (Ansible would count rc != 0 as a failure otherwise).
    return dict(changed=False, failed=False, rc=rc, stdout=stdout, stderr=stderr, stdout_lines=stdout.splitlines(),
                stderr_lines=stderr.splitlines(), cmd=argv)
