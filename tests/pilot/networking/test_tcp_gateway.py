"""Gateway TCP servers (plain, and TLS terminated), their conflicts, and the validation of
what TCP translation reads (Sidecar egress ports, VirtualService tcp routes)."""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from api.catalog import Instance
from api.resources import check_text
from pilot.model import MeshSnapshot, Proxy
from pilot.xds.context import PushContext
from pilot.xds.lds import ListenerGenerator
from tests.pilot.fixtures import instance

SDS = ("127.0.0.1:15013", "/token", "/root.pem")


def _snapshot(text: str) -> MeshSnapshot:
    checked = check_text(text, "t.yaml")
    assert all(c.ok for c in checked), [str(i) for c in checked for i in c.errors]
    instances: dict[str, tuple[Instance, ...]] = {
        "tcp-echo": (instance("tcp-echo", 5, port=9000, protocol="tcp"),),
        "mongo": (instance("mongo", 6, port=27017, protocol="tcp"),),
    }
    return MeshSnapshot.build(1, instances, [c.resource for c in checked if c.resource])


def gateway_listeners(text: str, sds: Any = SDS) -> dict[int, listener_pb2.Listener]:
    ctx = PushContext.build(_snapshot(text))
    proxy = Proxy(
        id="gw-1",
        service="gw",
        namespace="istio-system",
        labels={"istio": "gw"},
        instance_ip="10.0.0.100",
        kind="gateway",
        sds=sds,
    )
    out = {}
    for r in ListenerGenerator().generate(ctx, proxy, frozenset(), None):
        lis = listener_pb2.Listener.FromString(r.value_bytes)
        out[lis.address.socket_address.port_value] = lis
    return out


def gateway(name: str, *servers: str) -> str:
    body = "".join(f"\n  - {s}" for s in servers)
    return (
        "apiVersion: networking.istio.io/v1\nkind: Gateway\n"
        f"metadata: {{name: {name}, namespace: istio-system}}\n"
        f"spec:\n  selector: {{istio: gw}}\n  servers:{body}\n---\n"
    )


def vs(name: str, hosts: str, gateways: str, tcp: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: {name}, namespace: default}}\n"
        f"spec:\n  hosts: {hosts}\n  gateways: {gateways}\n  tcp:\n{tcp}\n---\n"
    )


TCP_SERVER = "{port: {number: 31400, name: tcp, protocol: TCP}, hosts: ['*']}"


def tcp_proxy(chain: Any) -> tcp_proxy_pb2.TcpProxy:
    out = tcp_proxy_pb2.TcpProxy()
    chain.filters[-1].typed_config.Unpack(out)
    return out


def test_a_tcp_server_is_routed_by_the_oldest_virtual_service_for_its_port() -> None:
    text = gateway("gw", TCP_SERVER)
    text += vs(
        "a-other-port",
        "['*']",
        "[istio-system/gw]",
        "  - match: [{port: 31401}]\n    route: [{destination: {host: mongo}}]",
    )
    text += vs(
        "b-echo",
        "['*']",
        "[istio-system/gw]",
        "  - match: [{port: 31400, sourceLabels: {ignored: on-gateways}}]\n"
        "    route: [{destination: {host: tcp-echo}}]",
    )
    text += vs(
        "c-later",
        "[db.example.com]",
        "[istio-system/gw]",
        "  - route: [{destination: {host: mongo}}]",
    )
    snap = _snapshot(text)
    lis = gateway_listeners(text)[31400]
    (chain,) = lis.filter_chains
    assert chain.name == "tcp.31400"
    assert [f.name for f in chain.filters] == [
        "envoy.filters.network.rbac.deny",
        "envoy.filters.network.rbac",
        "envoy.filters.network.tcp_proxy",
    ]
    assert tcp_proxy(chain).cluster == "outbound|9000||tcp-echo.default.svc.cluster.local"
    assert not lis.listener_filters  # a TCP port alone needs no inspector
    (conflict,) = [c for c in snap.conflicts if c.subject.startswith("tcp port")]
    assert conflict.subject == "tcp port 31400 on gateway istio-system/gw"
    assert (conflict.winner, conflict.loser) == (
        "VirtualService/default/b-echo",
        "VirtualService/default/c-later",
    )


def test_a_tcp_server_without_a_route_gets_no_listener() -> None:
    assert gateway_listeners(gateway("gw", TCP_SERVER)) == {}


def test_the_first_plaintext_server_decides_the_port() -> None:
    http = "{port: {number: 31400, name: http, protocol: HTTP}, hosts: ['*']}"
    route = vs(
        "echo", "['*']", "[istio-system/a-tcp]", "  - route: [{destination: {host: tcp-echo}}]"
    )
    text = gateway("a-tcp", TCP_SERVER) + gateway("b-web", http) + route
    (chain,) = gateway_listeners(text)[31400].filter_chains
    assert chain.filters[-1].name == "envoy.filters.network.tcp_proxy"
    (conflict,) = [c for c in _snapshot(text).conflicts if "plaintext" in c.subject]
    assert (conflict.winner, conflict.loser) == (
        "Gateway/istio-system/a-tcp",
        "Gateway/istio-system/b-web",
    )
    # The other way round the HTTP server keeps the port.
    text = gateway("a-web", http) + gateway("b-tcp", TCP_SERVER)
    (chain,) = gateway_listeners(text)[31400].filter_chains
    assert chain.filters[0].name == "envoy.filters.network.http_connection_manager"


def test_a_tls_server_terminates_then_relays_tcp() -> None:
    tls = (
        "{port: {number: 8443, name: tls-db, protocol: TLS}, hosts: [db.example.com], "
        "tls: {mode: SIMPLE, credentialName: db-cert}}"
    )
    route = vs(
        "db", "[db.example.com]", "[istio-system/gw]", "  - route: [{destination: {host: mongo}}]"
    )
    text = gateway("gw", tls, TCP_SERVER.replace("31400", "8443")) + route
    lis = gateway_listeners(text)[8443]
    chains = {c.name: c for c in lis.filter_chains}
    assert set(chains) == {"tcp.8443", "tls.8443.tls-db.gw.istio-system"}
    secure = chains["tls.8443.tls-db.gw.istio-system"]
    assert secure.transport_socket.name == "envoy.transport_sockets.tls"
    assert list(secure.filter_chain_match.server_names) == ["db.example.com"]
    assert tcp_proxy(secure).cluster == "outbound|27017||mongo.default.svc.cluster.local"
    # Beside TLS, plaintext TCP is told apart by the inspector, which never holds a
    # client that waits for its server to speak first.
    assert chains["tcp.8443"].filter_chain_match.transport_protocol == "raw_buffer"
    assert lis.continue_on_listener_filters_timeout
    # Without an identity to fetch its certificate with, the TLS server gets no chain.
    (plain,) = gateway_listeners(text, sds=None)[8443].filter_chains
    assert plain.name == "tcp.8443"


# --- validation ---


def _issues(text: str) -> tuple[list[str], list[str]]:
    (checked,) = check_text(text, "t.yaml")
    return [str(i) for i in checked.errors], [str(i) for i in checked.warnings]


def _sidecar(entry: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
        f"metadata: {{name: s, namespace: default}}\nspec:\n  egress:\n  - {entry}\n"
    )


def test_sidecar_egress_ports_are_applied_and_what_is_not_served_is_warned() -> None:
    errors, warnings = _issues(
        _sidecar("{port: {number: 9000, protocol: TCP}, bind: 127.0.0.2, hosts: [./*]}")
    )
    assert errors == [] and warnings == []
    errors, warnings = _issues(
        _sidecar("{port: {number: 0, protocol: TCP}, bind: 'unix:///tmp/s', hosts: [./*]}")
    )
    assert errors == [] and any(
        "unix socket egress listeners are not served" in w for w in warnings
    )
    _, warnings = _issues(_sidecar("{port: {number: 53, protocol: UDP}, hosts: [./*]}"))
    assert any("UDP egress ports get no listener" in w for w in warnings)
    _, warnings = _issues(_sidecar("{port: {number: 9000}, hosts: [./*]}"))
    assert any("relays TCP" in w for w in warnings)
    _, warnings = _issues(
        _sidecar("{port: {number: 9000, protocol: TCP}, bind: 10.1.2.3, hosts: [./*]}")
    )
    assert any("instance address" in w for w in warnings)


def test_sidecar_egress_binds_and_ports_envoy_would_refuse_are_errors() -> None:
    errors, _ = _issues(
        _sidecar("{port: {number: 9000, protocol: TCP}, bind: localhost, hosts: [./*]}")
    )
    assert any("must be an IP address" in e for e in errors)
    text = (
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
        "metadata: {name: s, namespace: default}\nspec:\n  egress:\n"
        "  - {port: {number: 9000, protocol: TCP}, bind: 127.0.0.2, hosts: [./*]}\n"
        "  - {port: {number: 9000, protocol: TCP}, bind: 127.0.0.3, hosts: [./*]}\n"
    )
    errors, _ = _issues(text)
    assert any("port 9000 is already used" in e for e in errors)


def test_virtual_service_tcp_routes_are_no_longer_warned_as_not_applied() -> None:
    text = (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: v, namespace: default}\nspec:\n  hosts: [tcp-echo]\n"
        "  tcp: [{match: [{port: 9000}], route: [{destination: {host: tcp-echo}}]}]\n"
        "  tls: [{match: [{sniHosts: [tcp-echo]}], route: [{destination: {host: tcp-echo}}]}]\n"
    )
    errors, warnings = _issues(text)
    assert errors == [] and not [w for w in warnings if "not applied" in w]
