"""NodePorts for tests that must name one (a role's variable): never a fixed number.

The API server owns the allocation; a test that only needs *a* NodePort creates its Service
without one and reads back what it got.  A test that must pass a port to a role takes ports no
Service holds right now and that the `local` inventory's installs (a demo) would take, drawn at
random so two test runs do not reach for the same ones.
"""
from __future__ import annotations

import random

# lab-a and lab-b of inventories/local (Keycloak, hub): a `make demo` on the same test bed holds them.
INVENTORY_NODE_PORTS = frozenset({31093, 31095, 31193, 31195})
RANGE = range(30100, 32700)


def used_node_ports(core) -> set[int]:
    return {p.node_port for s in core.list_service_for_all_namespaces().items for p in (s.spec.ports or [])
            if p.node_port}


def free_node_ports(core, count: int) -> list[int]:
    """`count` distinct NodePorts that nothing holds now and no inventory install would take."""
    taken = used_node_ports(core) | INVENTORY_NODE_PORTS
    return random.sample([p for p in RANGE if p not in taken], count)
