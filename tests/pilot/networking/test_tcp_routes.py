"""TCP translation: Sidecar egress listeners, VirtualService tcp/tls routes, the inbound
TCP listener, gateway TCP servers and their conflicts, and Sidecar validation."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from api.catalog import Instance
from api.resources import check_text
from pilot.model import MeshSnapshot, Proxy
from pilot.xds.context import PushContext
from pilot.xds.lds import ListenerGenerator
from pilot.xds.rds import RouteGenerator
from tests.pilot.fixtures import instance

SDS = ("127.0.0.1:15013", "/token", "/root.pem")
ECHO = "tcp-echo.default.svc.cluster.local"


def _catalog(*extra: Instance) -> dict[str, tuple[Instance, ...]]:
    instances = [
        instance("reviews", 1),
        instance("tcp-echo", 5, port=9000, protocol="tcp"),
        instance("tcp-echo", 6, port=9000, version="v2", protocol="tcp"),
        instance("redis", 7, port=6379, protocol="tcp"),
        *extra,
    ]
    out: dict[str, tuple[Instance, ...]] = {}
    for inst in instances:
        out[inst.service] = (*out.get(inst.service, ()), inst)
    return out


def _context(text: str, *extra: Instance) -> PushContext:
    checked = check_text(text, "t.yaml")
    assert all(c.ok for c in checked), [str(i) for c in checked for i in c.errors]
    config = [c.resource for c in checked if c.resource is not None]
    return PushContext.build(MeshSnapshot.build(1, _catalog(*extra), config))


def _proxy(**kw: Any) -> Proxy:
    fields: dict[str, Any] = {
        "id": "client-1",
        "service": "client",
        "labels": {"app": "client", "version": "v1"},
        "outbound_port": 15001,
        "inbound_port": 15006,
        "app_port": 8080,
        "sds": SDS,
    }
    fields.update(kw)
    return Proxy(**fields)


def listeners(ctx: PushContext, proxy: Proxy) -> dict[str, listener_pb2.Listener]:
    out = {}
    for r in ListenerGenerator().generate(ctx, proxy, frozenset(), None):
        lis = listener_pb2.Listener.FromString(r.value_bytes)
        out[lis.name] = lis
    return out


def tcp_proxy(chain: Any) -> tcp_proxy_pb2.TcpProxy:
    (found,) = [f for f in chain.filters if f.name == "envoy.filters.network.tcp_proxy"]
    out = tcp_proxy_pb2.TcpProxy()
    found.typed_config.Unpack(out)
    return out


def destinations(proxy: tcp_proxy_pb2.TcpProxy) -> dict[str, int]:
    if proxy.cluster:
        return {proxy.cluster: 100}
    return {c.name: c.weight for c in proxy.weighted_clusters.clusters}


def sidecar(*egress: str, selector: str = "") -> str:
    sel = f"\n  workloadSelector: {{labels: {selector}}}" if selector else ""
    entries = "".join(f"\n  - {e}" for e in egress)
    return (
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
        f"metadata: {{name: s, namespace: default}}\nspec:{sel}\n  egress:{entries}\n---\n"
    )


SUBSETS = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo, namespace: default}
spec:
  host: tcp-echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
"""
TCP_EGRESS = (
    "{port: {number: 9000, name: echo, protocol: TCP}, bind: 127.0.0.2, "
    "hosts: [./tcp-echo.default.svc.cluster.local]}"
)


def vs_tcp(rules: str, hosts: str = "[tcp-echo]", extra: str = "") -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: echo, namespace: default}}\nspec:\n  hosts: {hosts}\n{extra}"
        f"  tcp:\n{rules}\n---\n"
    )


def _cluster(subset: str = "", port: int = 9000, host: str = ECHO) -> str:
    return f"outbound|{port}|{subset}|{host}"


def test_egress_tcp_port_without_a_virtual_service_goes_to_the_service() -> None:
    ctx = _context(sidecar(TCP_EGRESS))
    lis = listeners(ctx, _proxy())["outbound_127.0.0.2_9000"]
    assert lis.address.socket_address.address == "127.0.0.2"
    assert lis.address.socket_address.port_value == 9000
    (chain,) = lis.filter_chains
    assert destinations(tcp_proxy(chain)) == {_cluster(): 100}


def test_weighted_tcp_split_and_the_first_matching_rule() -> None:
    rules = """  - match: [{port: 9000, sourceLabels: {version: v2}}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - match: [{port: 9001}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - match: [{port: 9000, sourceNamespace: other}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - match: [{port: 9000, gateways: [istio-system/gw]}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - match: [{port: 9000, gateways: [mesh], sourceLabels: {app: client}}]
    route:
    - {destination: {host: tcp-echo, subset: v1}, weight: 80}
    - {destination: {host: tcp-echo, subset: v2}, weight: 20}"""
    ctx = _context(
        sidecar(TCP_EGRESS) + SUBSETS + vs_tcp(rules, extra="  gateways: [mesh, istio-system/gw]\n")
    )
    (chain,) = listeners(ctx, _proxy())["outbound_127.0.0.2_9000"].filter_chains
    assert destinations(tcp_proxy(chain)) == {_cluster("v1"): 80, _cluster("v2"): 20}
    # The first rule is this proxy's when its labels say v2.
    (chain,) = listeners(ctx, _proxy(labels={"app": "client", "version": "v2"}))[
        "outbound_127.0.0.2_9000"
    ].filter_chains
    assert destinations(tcp_proxy(chain)) == {_cluster("v2"): 100}


def test_destination_subnets_match_the_listener_bind_address() -> None:
    rules = """  - match: [{destinationSubnets: [10.0.0.0/8]}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - match: [{destinationSubnets: [127.0.0.0/24]}]
    route: [{destination: {host: tcp-echo, subset: v1}}]"""
    ctx = _context(sidecar(TCP_EGRESS) + SUBSETS + vs_tcp(rules))
    (chain,) = listeners(ctx, _proxy())["outbound_127.0.0.2_9000"].filter_chains
    assert destinations(tcp_proxy(chain)) == {_cluster("v1"): 100}


def test_a_destination_port_and_an_unknown_host() -> None:
    rules = """  - route:
    - {destination: {host: redis.default.svc.cluster.local, port: {number: 6379}}, weight: 50}
    - {destination: {host: nowhere.example.com}, weight: 50}"""
    ctx = _context(sidecar(TCP_EGRESS) + vs_tcp(rules))
    (chain,) = listeners(ctx, _proxy())["outbound_127.0.0.2_9000"].filter_chains
    assert destinations(tcp_proxy(chain)) == {
        _cluster(port=6379, host="redis.default.svc.cluster.local"): 50,
        "outbound|80||nowhere.example.com": 50,  # no such cluster: the connection is closed
    }


def test_a_tcp_listener_for_several_hosts_relays_to_the_one_on_its_port() -> None:
    egress = "{port: {number: 6379, protocol: REDIS}, hosts: [./*]}"
    ctx = _context(sidecar(egress))
    lis = listeners(ctx, _proxy())["outbound_127.0.0.1_6379"]
    (chain,) = lis.filter_chains
    assert destinations(tcp_proxy(chain)) == {
        _cluster(port=6379, host="redis.default.svc.cluster.local"): 100
    }


def test_tls_egress_port_routes_by_sni() -> None:
    egress = (
        "{port: {number: 9443, protocol: TLS}, bind: 127.0.0.2, "
        "hosts: [./tcp-echo.default.svc.cluster.local, ./redis.default.svc.cluster.local]}"
    )
    tls = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [tcp-echo, secure.example.com]
  tls:
  - match: [{port: 9443, sniHosts: [secure.example.com], sourceLabels: {app: other}}]
    route: [{destination: {host: tcp-echo, subset: v2}}]
  - match: [{port: 9443, sniHosts: [secure.example.com]}]
    route: [{destination: {host: tcp-echo, subset: v1}}]
  tcp:
  - route: [{destination: {host: tcp-echo, subset: v2}}]
---
"""
    ctx = _context(sidecar(egress) + SUBSETS + tls)
    lis = listeners(ctx, _proxy())["outbound_127.0.0.2_9443"]
    assert [f.name for f in lis.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    chains = {tuple(c.filter_chain_match.server_names): c for c in lis.filter_chains}
    assert set(chains) == {("secure.example.com",), ("redis.default.svc.cluster.local",)}
    assert destinations(tcp_proxy(chains["secure.example.com",])) == {_cluster("v1"): 100}
    # A lone host without tls routes: every SNI goes to it.
    egress = "{port: {number: 9443, protocol: HTTPS}, hosts: [./redis.default.svc.cluster.local]}"
    (chain,) = listeners(_context(sidecar(egress)), _proxy())[
        "outbound_127.0.0.1_9443"
    ].filter_chains
    assert not chain.filter_chain_match.server_names


def test_http_egress_port_routes_only_its_hosts() -> None:
    egress = (
        "{port: {number: 8081, protocol: HTTP}, bind: 127.0.0.3, "
        "hosts: [./reviews.default.svc.cluster.local]}"
    )
    ctx = _context(sidecar(egress, "{hosts: [./*]}"))
    proxy = _proxy()
    lis = listeners(ctx, proxy)["outbound_127.0.0.3_8081"]
    assert lis.filter_chains[0].filters[0].name == "envoy.filters.network.http_connection_manager"
    (res,) = RouteGenerator().generate(
        ctx, proxy, frozenset({"outbound|8081|127.0.0.3|http"}), None
    )
    table = route_pb2.RouteConfiguration.FromString(res.value_bytes)
    (vhost,) = table.virtual_hosts
    assert "reviews" in vhost.domains and "reviews:8081" in vhost.domains
    assert "reviews:9080" in vhost.domains


@pytest.mark.parametrize(
    ("bind", "port", "served"),
    [
        ("127.0.0.1", 15001, False),  # the outbound listener's
        ("0.0.0.0", 15001, False),
        ("127.0.0.2", 15001, True),
        ("127.0.0.2", 15006, False),  # the inbound listener binds every address
        ("127.0.0.2", 8080, False),  # the app's port
        ("10.1.2.3", 9000, False),  # not this proxy's address
        ("10.0.0.9", 9000, True),  # the proxy's instance address
        ("::1", 9000, True),
    ],
)
def test_an_egress_listener_that_could_not_bind_is_left_out(
    bind: str, port: int, served: bool
) -> None:
    egress = f"{{port: {{number: {port}, protocol: TCP}}, bind: '{bind}', hosts: [./*]}}"
    found = listeners(_context(sidecar(egress)), _proxy(instance_ip="10.0.0.9"))
    assert len(found) == (3 if served else 2), sorted(found)
    assert {"outbound_127.0.0.1_15001", "inbound_0.0.0.0_15006"} <= set(found)
    assert (f"outbound_{bind}_{port}" in found) == (
        served or (port == 15001 and bind == "127.0.0.1")
    )


def test_egress_listeners_only_for_the_selected_workloads() -> None:
    ctx = _context(sidecar(TCP_EGRESS, selector="{app: client}"))
    assert "outbound_127.0.0.2_9000" in listeners(ctx, _proxy())
    assert "outbound_127.0.0.2_9000" not in listeners(ctx, _proxy(labels={"app": "other"}))


def _inbound(ctx: PushContext, proxy: Proxy) -> listener_pb2.Listener:
    return listeners(ctx, proxy)["inbound_0.0.0.0_15006"]


def _filter_names(chain: Any) -> list[str]:
    return [f.name for f in chain.filters]


TCP_FILTERS = [
    "envoy.filters.network.rbac.deny",
    "envoy.filters.network.rbac",
    "envoy.filters.network.tcp_proxy",
]


def _pa(mode: str) -> str:
    return (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        f"metadata: {{name: default, namespace: default}}\nspec: {{mtls: {{mode: {mode}}}}}\n"
    )


def test_inbound_tcp_listener_for_a_tcp_workload() -> None:
    echo = _proxy(id="tcp-echo-5", service="tcp-echo", app_port=9000)
    strict = _inbound(_context(_pa("STRICT")), echo)
    (chain,) = strict.filter_chains
    assert _filter_names(chain) == TCP_FILTERS
    assert chain.transport_socket.name == "envoy.transport_sockets.tls"
    assert tcp_proxy(chain).cluster == "inbound|15006||"
    assert all(f.HasField("config_discovery") for f in chain.filters[:2])

    permissive = _inbound(_context(_pa("PERMISSIVE")), echo)
    assert [c.filter_chain_match.transport_protocol for c in permissive.filter_chains] == [
        "tls",
        "raw_buffer",
    ]
    assert permissive.continue_on_listener_filters_timeout
    (plain,) = _inbound(_context(_pa("DISABLE")), echo).filter_chains
    assert not plain.HasField("transport_socket") and _filter_names(plain) == TCP_FILTERS

    # No identity and STRICT: no inbound listener at all, never plaintext.
    assert "inbound_0.0.0.0_15006" not in listeners(
        _context(_pa("STRICT")), _proxy(id="tcp-echo-5", service="tcp-echo", sds=None)
    )


def test_the_inbound_protocol_is_the_proxys_own_instances() -> None:
    mixed = instance("reviews", 9, protocol="tcp")  # one reviews instance speaks TCP
    ctx = _context("", mixed)
    own = _proxy(id="reviews-9", service="reviews", app_port=9080)
    assert (
        _filter_names(_inbound(ctx, own).filter_chains[0])[-1] == "envoy.filters.network.tcp_proxy"
    )
    other = _proxy(id="reviews-1", service="reviews", app_port=9080)
    assert _filter_names(_inbound(ctx, other).filter_chains[0]) == [
        "envoy.filters.network.http_connection_manager"
    ]
    unknown = _proxy(id="new-1", service="new", app_port=9080)
    assert _filter_names(_inbound(ctx, unknown).filter_chains[0]) == [
        "envoy.filters.network.http_connection_manager"
    ]


def test_two_virtual_services_for_one_tcp_host_the_oldest_routes_it() -> None:
    older = vs_tcp("  - route: [{destination: {host: tcp-echo, subset: v1}}]").replace(
        "name: echo", "name: a-older"
    )
    younger = vs_tcp("  - route: [{destination: {host: tcp-echo, subset: v2}}]").replace(
        "name: echo", "name: b-younger"
    )
    ctx = _context(sidecar(TCP_EGRESS) + SUBSETS + younger + older)
    (chain,) = listeners(ctx, _proxy())["outbound_127.0.0.2_9000"].filter_chains
    assert destinations(tcp_proxy(chain)) == {_cluster("v1"): 100}
    (conflict,) = ctx.snapshot.conflicts
    assert (conflict.winner, conflict.loser) == (
        "VirtualService/default/a-older",
        "VirtualService/default/b-younger",
    )
