"""The real node's volume helper: what kind's local-path provisioner does for its volumes.

KWOK's volume stage binds each claim of the default StorageClass to a hostPath PV (type
DirectoryOrCreate) under `<state>/volumes`.  The kubelet would create a missing directory as root,
mode 0755, which a pod running as another user cannot write (Keycloak and MinIO run as 1000), and a
hostPath volume gets no fsGroup.  This helper watches the PVs and makes each directory first, mode
0777, as the local-path provisioner does; it opens up one the kubelet made first (the pod's next
start then succeeds).

Run by the node as its `volume-helper` component: `python -m tools.testbed.volumes <state>`.
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def prepare(pv: dict, root: Path) -> bool:
    """Create (or open up) the directory of one PV under `root`; True when it did something."""
    path = ((pv.get("spec") or {}).get("hostPath") or {}).get("path")
    target = Path(os.path.normpath(path)) if path else None
    if target is None or not target.is_relative_to(root) or target == root:
        return False
    if target.is_dir() and (target.stat().st_mode & 0o777) == 0o777:
        return False
    target.mkdir(parents=True, exist_ok=True)
    target.chmod(0o777)  # explicitly: mkdir's mode goes through the umask
    return True


def _watch(api, root: Path) -> None:
    code, body = api.get("/api/v1/persistentvolumes")
    if code != 200:
        raise RuntimeError(f"listing PVs: {code} {body}")
    for pv in body.get("items", []):
        prepare(pv, root)
    version = body["metadata"]["resourceVersion"]
    req = urllib.request.Request(
        f"{api.base}/api/v1/persistentvolumes?watch=1&allowWatchBookmarks=false&timeoutSeconds=300"
        f"&resourceVersion={version}", headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, context=api.ctx, timeout=330) as stream:
        for line in stream:
            event = json.loads(line)
            if event.get("type") in ("ADDED", "MODIFIED"):
                if prepare(event["object"], root):
                    print(f"prepared {event['object']['spec']['hostPath']['path']}", flush=True)
            elif event.get("type") == "ERROR":
                return  # e.g. 410 Gone: list again


def main(argv: list[str]) -> int:
    from .cluster import Api  # noqa: PLC0415 - cluster imports node, which starts this module as a process

    state = Path(argv[0])
    root = state / "volumes"
    root.mkdir(parents=True, exist_ok=True)
    api = Api(state)
    while True:
        try:
            _watch(api, root)
        except (OSError, urllib.error.URLError, RuntimeError, ValueError) as exc:
            print(f"watch ended: {exc}; again in 1s", flush=True)
            time.sleep(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
