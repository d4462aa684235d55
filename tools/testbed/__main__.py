"""Command line of the test bed: `python -m tools.testbed <command>` (the Makefile's cluster-* and keycloak-* targets).

Progress goes to stderr; stdout carries only what a command is asked to print
(the export lines of cluster-env / keycloak-env), so `eval "$(make -s cluster-env)"` works.
"""
from __future__ import annotations

import shlex
import sys

from . import cluster, keycloak, platform_images, target
from .procs import TestbedError


def _exports(env: dict[str, str]) -> None:
    for k, v in env.items():
        print(f"export {k}={shlex.quote(v)}")


def cluster_up() -> int:
    info, started = cluster.ensure_up()
    real = (f"; real node {info.real_node['name']} at {info.real_node['address']}, "
            f"NodePorts on {info.real_node['nodeport_address']}") if info.real_node else ""
    print(f"[testbed] cluster {'started' if started else 'already running'}: {info.server} "
          f"(Kubernetes {info.version}, {len(info.nodes)} simulated nodes{real})", file=sys.stderr)
    return 0


def cluster_status() -> int:
    st = cluster.status()
    for comp, s in st.items():
        print(f"{comp:26} {s}")
    healthy = cluster.running()
    print(f"{'api /readyz':26} {'ok' if healthy else 'not answering'}")
    return 0 if healthy else 1


def cluster_env() -> int:
    if not cluster.running():
        raise TestbedError("no test-bed cluster is running: start one with `make cluster-up`")
    _exports({"KUBECONFIG": cluster.info().kubeconfig})
    return 0


def keycloak_up() -> int:
    info = keycloak.up()
    print(f"[testbed] keycloak {'started' if info.get('started') else 'already running'}: {info['url']}",
          file=sys.stderr)
    return 0


def keycloak_status() -> int:
    st = keycloak.status()
    for comp, alive in st.items():
        print(f"{comp:26} {'running' if alive else 'DIED'}")
    if not st:
        print("keycloak                   not started")
    return 0 if st and all(st.values()) else 1


def platform_images_cmd() -> int:
    platform_images.ensure_imported()
    return 0


def target_cmd() -> int:
    _exports(target.select())
    return 0


COMMANDS = {
    "cluster-up": cluster_up,
    "cluster-down": lambda: cluster.down() or 0,
    "cluster-status": cluster_status,
    "cluster-env": cluster_env,
    "keycloak-up": keycloak_up,
    "keycloak-down": lambda: keycloak.down() or 0,
    "keycloak-status": keycloak_status,
    "keycloak-env": lambda: _exports(keycloak.env()) or 0,
    "platform-images": platform_images_cmd,
    "target": target_cmd,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print(f"usage: python -m tools.testbed {{{'|'.join(COMMANDS)}}}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]]()
    except TestbedError as exc:
        print(f"[testbed] error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
