# -*- coding: utf-8 -*-
# Copyright: datalab.notebooks developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Find the address at which a NodePort Service is reachable from outside the cluster.

Plain Python on plain dicts (the JSON the API server returns), so it is tested
without a cluster. The only I/O is the ``get_json(path, query)`` callable that
`discover` receives: it returns the decoded object, or None when the API answers
404. Every failure is a `NodePortError` whose message is one line naming the
object and, where there is one, the fix.
"""

from __future__ import annotations

import time

DEFAULT_ADDRESS_TYPES = ("ExternalIP", "InternalIP")
NODE_ADDRESS_TYPES = ("ExternalIP", "InternalIP", "ExternalDNS", "InternalDNS", "Hostname")
NODEPORT_SERVICE_TYPES = ("NodePort", "LoadBalancer")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
POLL_INTERVAL = 2.0

# The options of nodeport_address (module and action plugin), without the connection options
# (k8s_connection.CONNECTION_ARG_SPEC).
ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    namespace=dict(type="str", required=True),
    port=dict(type="str"),
    address_types=dict(type="list", elements="str", choices=list(NODE_ADDRESS_TYPES),
                       default=list(DEFAULT_ADDRESS_TYPES)),
    scheme=dict(type="str", default="https"),
    wait=dict(type="bool", default=False),
    wait_timeout=dict(type="int", default=120),
)


class NodePortError(Exception):
    """The Service cannot be reached through a node port; the message says why."""


class NoReadyEndpoint(NodePortError):
    """The Service has no ready endpoint yet: the one failure that waiting can cure."""


def _port_label(port):
    name = port.get("name")
    number = "%s/%s" % (port.get("port"), port.get("protocol") or "TCP")
    return "%s (%s)" % (name, number) if name else number


def select_service_port(service, port=None):
    """Return the entry of ``service.spec.ports`` that ``port`` designates.

    ``port`` is a port name or a port number (as text); None is allowed when the
    Service has exactly one port. Port names cannot be all digits (they must
    contain a letter), so a number never shadows a name.
    """
    meta = service.get("metadata") or {}
    ref = "Service %s/%s" % (meta.get("namespace"), meta.get("name"))
    spec = service.get("spec") or {}
    svc_type = spec.get("type") or "ClusterIP"
    if svc_type not in NODEPORT_SERVICE_TYPES:
        raise NodePortError(
            "%s is of type %s, it has no node port; make it a NodePort or LoadBalancer Service" % (ref, svc_type))

    ports = spec.get("ports") or []
    if not ports:
        raise NodePortError("%s has no ports" % ref)
    available = ", ".join(_port_label(p) for p in ports)

    if port is None or port == "":
        if len(ports) > 1:
            raise NodePortError("%s has several ports; set port to one of: %s" % (ref, available))
        chosen = ports[0]
    else:
        port = str(port)
        matches = [p for p in ports if p.get("name") == port]
        if not matches and port.isdigit():
            matches = [p for p in ports if p.get("port") == int(port)]
        if not matches:
            raise NodePortError("%s has no port %s; its ports are: %s" % (ref, port, available))
        if len(matches) > 1:
            raise NodePortError("%s has several ports numbered %s (%s); set port to the port name"
                                % (ref, port, ", ".join(_port_label(p) for p in matches)))
        chosen = matches[0]

    if not chosen.get("nodePort"):
        raise NodePortError("%s port %s has no nodePort (for a LoadBalancer, allocateLoadBalancerNodePorts is false)"
                            % (ref, _port_label(chosen)))
    return chosen


def ready_node_names(endpoint_slices, port_name):
    """Return the sorted names of the nodes that run a ready endpoint of the Service port ``port_name``.

    An endpoint serves the ports its slice lists, so slices without a port of that
    name do not count. A missing ``ready`` condition means "unknown", which the API
    documents as to be taken as ready. Raises `NoReadyEndpoint` when nothing qualifies.
    """
    port_name = port_name or ""
    nodes = set()
    ready_without_node = 0
    not_ready = 0
    for eps in endpoint_slices:
        if not any((p.get("name") or "") == port_name for p in eps.get("ports") or []):
            continue
        for endpoint in eps.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                not_ready += 1
            elif endpoint.get("nodeName"):
                nodes.add(endpoint["nodeName"])
            else:
                ready_without_node += 1
    if nodes:
        return sorted(nodes)
    if ready_without_node:
        detail = "%d ready endpoint(s) name no node" % ready_without_node
    elif not_ready:
        detail = "%d endpoint(s), none ready" % not_ready
    else:
        detail = "no endpoints"
    raise NoReadyEndpoint("no ready endpoint on a node (%s)" % detail)


def format_address(host, port):
    """``host:port``, with an IPv6 address in brackets."""
    if ":" in host:
        return "[%s]:%s" % (host, port)
    return "%s:%s" % (host, port)


def node_candidates(nodes, address_types=DEFAULT_ADDRESS_TYPES):
    """Rank the nodes by their best address among ``address_types``.

    Returns dicts ``{node_name, node_ip, address_type}`` sorted by the preference of
    the address type, then by node name, so the first entry is the choice and the
    order never depends on API list order. A node lacking every requested type is
    left out; when that leaves nothing, the error lists what the nodes do have.
    """
    rank = {t: i for i, t in enumerate(address_types)}
    found = []
    lacking = []
    for node in nodes:
        name = (node.get("metadata") or {}).get("name")
        addresses = (node.get("status") or {}).get("addresses") or []
        best = None
        for addr in addresses:
            kind = addr.get("type")
            if kind in rank and addr.get("address") and (best is None or rank[kind] < rank[best["type"]]):
                best = addr
        if best is None:
            have = sorted({a.get("type") for a in addresses if a.get("type")})
            lacking.append("%s (has %s)" % (name, ", ".join(have) or "no addresses"))
            continue
        found.append({"node_name": name, "node_ip": best["address"], "address_type": best["type"]})
    if not found:
        raise NodePortError("no node address of type %s: node %s"
                            % (" or ".join(address_types), "; ".join(lacking) or "list is empty"))
    found.sort(key=lambda c: (rank[c["address_type"]], c["node_name"]))
    return found


def build_result(service_port, candidates, scheme="https"):
    """The module's return values from the chosen Service port and the ranked candidates."""
    node_port = service_port["nodePort"]
    ranked = []
    for cand in candidates:
        entry = dict(cand)
        entry["address"] = format_address(cand["node_ip"], node_port)
        ranked.append(entry)
    best = ranked[0]
    return {
        "node_name": best["node_name"],
        "node_ip": best["node_ip"],
        "address_type": best["address_type"],
        "node_port": node_port,
        "port_name": service_port.get("name") or "",
        "address": best["address"],
        "url": "%s://%s" % (scheme, best["address"]),
        "candidates": ranked,
    }


def _service_path(namespace, name):
    return "/api/v1/namespaces/%s/services/%s" % (namespace, name)


def _slices_path(namespace):
    return "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % namespace


def _node_path(name):
    return "/api/v1/nodes/%s" % name


def lookup(get_json, namespace, name, port=None, address_types=DEFAULT_ADDRESS_TYPES, scheme="https"):
    """One attempt: read the Service, its EndpointSlices and the nodes behind its ready endpoints."""
    ref = "Service %s/%s" % (namespace, name)
    service = get_json(_service_path(namespace, name))
    if service is None:
        raise NodePortError("%s not found" % ref)
    service_port = select_service_port(service, port)

    slices = get_json(_slices_path(namespace), {"labelSelector": "%s=%s" % (SERVICE_NAME_LABEL, name)})
    try:
        names = ready_node_names((slices or {}).get("items") or [], service_port.get("name"))
    except NoReadyEndpoint as exc:
        raise NoReadyEndpoint("%s port %s has %s" % (ref, _port_label(service_port), exc))

    nodes = [n for n in (get_json(_node_path(n)) for n in names) if n is not None]
    if not nodes:
        raise NoReadyEndpoint("%s: the nodes of its ready endpoints (%s) no longer exist" % (ref, ", ".join(names)))
    try:
        candidates = node_candidates(nodes, address_types)
    except NodePortError as exc:
        raise NodePortError("%s: %s" % (ref, exc))
    return build_result(service_port, candidates, scheme)


def discover(get_json, namespace, name, port=None, address_types=DEFAULT_ADDRESS_TYPES, scheme="https",
             wait_timeout=0, clock=time.monotonic, sleep=time.sleep):
    """`lookup`, retried while the Service has no ready endpoint, for up to ``wait_timeout`` seconds.

    With ``wait_timeout`` 0 the first `NoReadyEndpoint` is final and its message
    says how to wait. Every other error is final at once: waiting cannot cure it.
    """
    deadline = clock() + wait_timeout
    while True:
        try:
            return lookup(get_json, namespace, name, port, address_types, scheme)
        except NoReadyEndpoint as exc:
            remaining = deadline - clock()
            if wait_timeout <= 0:
                raise NoReadyEndpoint("%s; set wait: true to wait for one" % exc)
            if remaining <= 0:
                raise NoReadyEndpoint("%s after waiting %ss" % (exc, wait_timeout))
            sleep(min(POLL_INTERVAL, remaining))


def discover_with(get_json, params):
    """`discover` with the options of nodeport_address (ARGUMENT_SPEC), as the module and the action pass them."""
    if not params["address_types"]:
        raise NodePortError("address_types must name at least one node address type")
    return discover(get_json, params["namespace"], params["name"], port=params["port"],
                    address_types=params["address_types"], scheme=params["scheme"],
                    wait_timeout=params["wait_timeout"] if params["wait"] else 0)
