"""The address selection of datalab.notebooks.nodeport_address, on plain API dicts (no cluster)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The checkout is the collection through the link `make setup` creates.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.datalab.notebooks.plugins.module_utils import nodeport  # noqa: E402
from ansible_collections.datalab.notebooks.plugins.module_utils.nodeport import (  # noqa: E402
    NodePortError,
    NoReadyEndpoint,
)

NS = "demo"


def service(name="keycloak", type_="NodePort", ports=None):
    if ports is None:
        ports = [{"name": "https", "port": 8443, "protocol": "TCP", "targetPort": 8443, "nodePort": 31093}]
    return {"metadata": {"name": name, "namespace": NS}, "spec": {"type": type_, "ports": ports}}


def endpoint(node, ready=True, ip="10.0.0.5"):
    ep = {"addresses": [ip]}
    if ready is not None:
        ep["conditions"] = {"ready": ready}
    if node:
        ep["nodeName"] = node
    return ep


def eps(*endpoints, port_name="https"):
    return {"metadata": {"name": "keycloak-abcde", "labels": {nodeport.SERVICE_NAME_LABEL: "keycloak"}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": 8443, "protocol": "TCP"}],
            "endpoints": list(endpoints)}


def node(name, internal=None, external=None, extra=()):
    addresses = list(extra)
    if internal:
        addresses.append({"type": "InternalIP", "address": internal})
    if external:
        addresses.append({"type": "ExternalIP", "address": external})
    addresses.append({"type": "Hostname", "address": name})
    return {"metadata": {"name": name}, "status": {"addresses": addresses}}


class FakeAPI:
    """get_json over a dict of objects, recording the paths read."""

    def __init__(self, svc=None, slices=(), nodes=()):
        self.objects = {}
        if svc is not None:
            self.objects["/api/v1/namespaces/%s/services/%s" % (NS, svc["metadata"]["name"])] = svc
        self.slices = list(slices)
        for n in nodes:
            self.objects["/api/v1/nodes/%s" % n["metadata"]["name"]] = n
        self.calls = []

    def __call__(self, path, query=None):
        self.calls.append((path, query))
        if path.endswith("/endpointslices"):
            assert path == "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices" % NS
            assert query == {"labelSelector": "kubernetes.io/service-name=keycloak"}
            return {"kind": "EndpointSliceList", "items": self.slices}
        return self.objects.get(path)


NODES = [
    node("node-b", internal="127.0.0.3", external="127.0.1.3"),
    node("node-a", internal="127.0.0.2", external="127.0.1.2"),
    node("node-c", internal="127.0.0.4"),
]


# --- the port -----------------------------------------------------------------------

def test_port_by_name_and_by_number():
    svc = service(ports=[{"name": "http", "port": 80, "nodePort": 30080},
                         {"name": "https", "port": 443, "nodePort": 30443}])
    assert nodeport.select_service_port(svc, "https")["nodePort"] == 30443
    assert nodeport.select_service_port(svc, "80")["nodePort"] == 30080
    assert nodeport.select_service_port(svc, 443)["nodePort"] == 30443


def test_single_port_needs_no_name():
    assert nodeport.select_service_port(service(), None)["nodePort"] == 31093


def test_several_ports_need_a_port():
    svc = service(ports=[{"name": "http", "port": 80, "nodePort": 30080},
                         {"name": "https", "port": 443, "nodePort": 30443}])
    with pytest.raises(NodePortError, match=r"several ports; set port to one of: http \(80/TCP\), https \(443/TCP\)"):
        nodeport.select_service_port(svc, None)


def test_unknown_port_lists_the_ports():
    with pytest.raises(NodePortError, match=r"^Service demo/keycloak has no port http; its ports are: https \(8443/TCP\)$"):
        nodeport.select_service_port(service(), "http")


def test_node_port_number_is_not_a_service_port():
    with pytest.raises(NodePortError, match="has no port 31093"):
        nodeport.select_service_port(service(), "31093")


def test_same_number_twice_asks_for_the_name():
    svc = service(ports=[{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                         {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30054}])
    with pytest.raises(NodePortError, match="several ports numbered 53.*set port to the port name"):
        nodeport.select_service_port(svc, "53")
    assert nodeport.select_service_port(svc, "dns-tcp")["nodePort"] == 30054


@pytest.mark.parametrize("type_", ["ClusterIP", "ExternalName", None])
def test_service_without_node_ports(type_):
    svc = service(type_=type_)
    if type_ is None:
        del svc["spec"]["type"]
    with pytest.raises(NodePortError, match="is of type %s, it has no node port; make it a NodePort or LoadBalancer"
                       % (type_ or "ClusterIP")):
        nodeport.select_service_port(svc, "https")


def test_load_balancer_without_node_port():
    svc = service(type_="LoadBalancer", ports=[{"name": "https", "port": 443}])
    with pytest.raises(NodePortError, match="allocateLoadBalancerNodePorts is false"):
        nodeport.select_service_port(svc, "https")


def test_load_balancer_with_node_port():
    assert nodeport.select_service_port(service(type_="LoadBalancer"), "https")["nodePort"] == 31093


def test_service_without_ports():
    with pytest.raises(NodePortError, match="has no ports"):
        nodeport.select_service_port(service(ports=[]), None)


# --- the endpoints ------------------------------------------------------------------

def test_ready_nodes_sorted_and_unique():
    slices = [eps(endpoint("node-b"), endpoint("node-a")), eps(endpoint("node-b", ip="10.0.0.9"))]
    assert nodeport.ready_node_names(slices, "https") == ["node-a", "node-b"]


def test_not_ready_endpoints_are_skipped():
    slices = [eps(endpoint("node-a", ready=False), endpoint("node-b"))]
    assert nodeport.ready_node_names(slices, "https") == ["node-b"]


def test_unknown_readiness_counts_as_ready():
    assert nodeport.ready_node_names([eps(endpoint("node-a", ready=None))], "https") == ["node-a"]


def test_slices_of_other_ports_are_ignored():
    slices = [eps(endpoint("node-a"), port_name="metrics"), eps(endpoint("node-b"))]
    assert nodeport.ready_node_names(slices, "https") == ["node-b"]


def test_unnamed_port_matches_unnamed_slice_port():
    slice_ = eps(endpoint("node-a"), port_name=None)
    assert nodeport.ready_node_names([slice_], "") == ["node-a"]
    assert nodeport.ready_node_names([slice_], None) == ["node-a"]


@pytest.mark.parametrize("slices, detail", [
    ([], "no endpoints"),
    ([eps()], "no endpoints"),
    ([{"ports": None, "endpoints": None}], "no endpoints"),
    ([eps(endpoint("node-a", ready=False), endpoint("node-b", ready=False))], "2 endpoint(s), none ready"),
    ([eps(endpoint(None))], "1 ready endpoint(s) name no node"),
])
def test_no_ready_endpoint(slices, detail):
    with pytest.raises(NoReadyEndpoint) as err:
        nodeport.ready_node_names(slices, "https")
    assert str(err.value) == "no ready endpoint on a node (%s)" % detail


# --- the node address ----------------------------------------------------------------

def test_external_before_internal_then_by_name():
    ranked = nodeport.node_candidates(NODES)
    assert [(c["node_name"], c["node_ip"], c["address_type"]) for c in ranked] == [
        ("node-a", "127.0.1.2", "ExternalIP"),
        ("node-b", "127.0.1.3", "ExternalIP"),
        ("node-c", "127.0.0.4", "InternalIP"),
    ]


def test_preference_is_configurable():
    ranked = nodeport.node_candidates(NODES, ["InternalIP"])
    assert [(c["node_name"], c["node_ip"]) for c in ranked] == [
        ("node-a", "127.0.0.2"), ("node-b", "127.0.0.3"), ("node-c", "127.0.0.4")]


def test_nodes_lacking_the_types_drop_out():
    ranked = nodeport.node_candidates(NODES, ["ExternalIP"])
    assert [c["node_name"] for c in ranked] == ["node-a", "node-b"]


def test_order_of_the_api_lists_does_not_matter():
    first = nodeport.node_candidates(NODES)
    assert nodeport.node_candidates(list(reversed(NODES))) == first


def test_address_order_within_a_node_does_not_matter():
    a = node("n", internal="127.0.0.2", external="127.0.1.2")
    a["status"]["addresses"].reverse()
    assert nodeport.node_candidates([a])[0]["node_ip"] == "127.0.1.2"


def test_no_node_has_the_requested_type():
    with pytest.raises(NodePortError) as err:
        nodeport.node_candidates([node("node-c", internal="127.0.0.4"), {"metadata": {"name": "bare"}}],
                                 ["ExternalIP", "ExternalDNS"])
    assert str(err.value) == ("no node address of type ExternalIP or ExternalDNS: node node-c (has Hostname, "
                              "InternalIP); bare (has no addresses)")


def test_ipv6_address_in_brackets():
    assert nodeport.format_address("fd00::2", 31093) == "[fd00::2]:31093"
    assert nodeport.format_address("127.0.1.2", 31093) == "127.0.1.2:31093"


# --- the whole lookup ----------------------------------------------------------------

def test_discover_result():
    api = FakeAPI(service(), [eps(endpoint("node-b"), endpoint("node-c"), endpoint("node-a", ready=False))], NODES)
    result = nodeport.discover(api, NS, "keycloak", "https")
    assert result == {
        "node_name": "node-b",
        "node_ip": "127.0.1.3",
        "address_type": "ExternalIP",
        "node_port": 31093,
        "port_name": "https",
        "address": "127.0.1.3:31093",
        "url": "https://127.0.1.3:31093",
        "candidates": [
            {"node_name": "node-b", "node_ip": "127.0.1.3", "address_type": "ExternalIP", "address": "127.0.1.3:31093"},
            {"node_name": "node-c", "node_ip": "127.0.0.4", "address_type": "InternalIP", "address": "127.0.0.4:31093"},
        ],
    }
    # Only the nodes behind ready endpoints are read, never the not-ready one.
    assert "/api/v1/nodes/node-a" not in [call[0] for call in api.calls]


def test_discover_scheme_and_internal():
    api = FakeAPI(service(), [eps(endpoint("node-a"))], NODES)
    result = nodeport.discover(api, NS, "keycloak", "8443", address_types=["InternalIP"], scheme="http")
    assert result["url"] == "http://127.0.0.2:31093"
    assert result["address_type"] == "InternalIP"


def test_discover_is_deterministic():
    slices = [eps(endpoint("node-b")), eps(endpoint("node-a"))]
    one = nodeport.discover(FakeAPI(service(), slices, NODES), NS, "keycloak", "https")
    two = nodeport.discover(FakeAPI(service(), list(reversed(slices)), list(reversed(NODES))), NS, "keycloak", "https")
    assert one == two
    assert one["node_name"] == "node-a"


def test_discover_service_missing():
    with pytest.raises(NodePortError, match=r"^Service demo/keycloak not found$"):
        nodeport.discover(FakeAPI(), NS, "keycloak", "https")


def test_discover_node_without_address():
    api = FakeAPI(service(), [eps(endpoint("node-c"))], NODES)
    with pytest.raises(NodePortError, match=r"^Service demo/keycloak: no node address of type ExternalIP: node node-c"):
        nodeport.discover(api, NS, "keycloak", "https", address_types=["ExternalIP"], wait_timeout=60,
                          sleep=no_sleep)  # waiting cannot add an address


def test_discover_node_gone():
    api = FakeAPI(service(), [eps(endpoint("node-x"))], NODES)
    with pytest.raises(NoReadyEndpoint, match=r"nodes of its ready endpoints \(node-x\) no longer exist"):
        nodeport.discover(api, NS, "keycloak", "https")


def test_discover_without_wait_says_how_to_wait():
    api = FakeAPI(service(), [eps(endpoint("node-a", ready=False))], NODES)
    with pytest.raises(NoReadyEndpoint) as err:
        nodeport.discover(api, NS, "keycloak", "https")
    assert str(err.value) == ("Service demo/keycloak port https (8443/TCP) has no ready endpoint on a node "
                              "(1 endpoint(s), none ready); set wait: true to wait for one")


def no_sleep(seconds):
    raise AssertionError("retried an error that waiting cannot cure")


class Clock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_until_an_endpoint_is_ready():
    api = FakeAPI(service(), [eps(endpoint("node-a", ready=False))], NODES)
    clock = Clock()

    def sleep(seconds):
        clock.sleep(seconds)
        if len(clock.sleeps) == 3:
            api.slices = [eps(endpoint("node-a"))]

    result = nodeport.discover(api, NS, "keycloak", "https", wait_timeout=30, clock=clock, sleep=sleep)
    assert result["address"] == "127.0.1.2:31093"
    assert clock.sleeps == [2.0, 2.0, 2.0]


def test_wait_times_out():
    api = FakeAPI(service(), [], NODES)
    clock = Clock()
    with pytest.raises(NoReadyEndpoint) as err:
        nodeport.discover(api, NS, "keycloak", "https", wait_timeout=5, clock=clock, sleep=clock.sleep)
    assert str(err.value) == ("Service demo/keycloak port https (8443/TCP) has no ready endpoint on a node "
                              "(no endpoints) after waiting 5s")
    assert clock.sleeps == [2.0, 2.0, 1.0]


@pytest.mark.parametrize("svc, message", [
    (None, "not found"),
    (service(type_="ClusterIP"), "is of type ClusterIP"),
    (service(), "has no port metrics"),
])
def test_wait_does_not_retry_permanent_errors(svc, message):
    with pytest.raises(NodePortError, match=message):
        nodeport.discover(FakeAPI(svc), NS, "keycloak", "metrics" if svc else "https", wait_timeout=60,
                          sleep=no_sleep)
