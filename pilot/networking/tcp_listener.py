"""TCP listeners (LDS): a sidecar's egress listeners and inbound TCP listener, and the
network filters that authorize TCP connections.

**Egress: one listener per Sidecar egress port.** Apps here are not captured by
iptables, so this mesh takes Istio's model for sidecars without capture
(`captureMode: NONE`): a Sidecar `egress[]` entry with a `port` gets its own listener
on `bind:port` (127.0.0.1 without a bind), serving only that entry's `hosts`:

- TCP (and MONGO, REDIS, MYSQL, or no protocol: relayed as TCP, there is no protocol
  sniffing): a tcp_proxy to the host's service, or where the host's VirtualService has
  a `tcp` rule for it, to that rule's destinations (weighted). A listener relays to one
  service: when the entry's hosts name several, the one on the listener's port (else the
  first by name) is chosen and the others logged.
- TLS and HTTPS: the app does TLS itself; the TLS inspector reads its SNI and a chain per
  SNI name relays the encrypted bytes: the names the host's VirtualService `tls` rules
  claim, else the service's own hostname (no name at all when the entry has one host).
- HTTP (HTTP2, GRPC, ...): an HTTP connection manager whose route table
  (`names.egress_route`) routes by Host among the entry's hosts only.

Outbound clusters are the ones HTTP uses (mesh mTLS, DestinationRule TLS included).

**Inbound TCP.** A workload whose catalog protocol is `tcp` gets an inbound listener
that relays TCP to its app, behind the same mTLS termination as the HTTP one
(PeerAuthentication STRICT / PERMISSIVE / DISABLE). AuthorizationPolicy applies there
(and on a gateway's TCP servers) through two network RBAC filters, deny then allow,
whose config comes over ECDS (`authz.network_rbac_configs`): a policy change reaches
the very next connection without replacing the listener, so open connections are not
drained. Envoy decides a connection at its first byte from the client: a denied
client's connection is closed before anything it sends reaches the app, but an app
that speaks first (a server-first protocol) has its greeting relayed before that.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import duration_pb2

from api import checks
from api.networking.sidecar import SidecarSpec
from api.resources import Resource
from pilot.model import Service
from pilot.networking import names, telemetry, tls_route
from pilot.networking.http_route import ClusterFor
from pilot.networking.listener import mesh_filters
from pilot.networking.protos import pack
from pilot.networking.tcp_route import (
    Clusters,
    L4Source,
    SniRoute,
    sidecar_tcp_route,
    sidecar_tls_routes,
)

__all__ = [
    "NETWORK_FILTER_TYPES",
    "Egress",
    "egress_entries",
    "egress_listener",
    "inbound_tcp_listener",
    "network_auth_filters",
    "tcp_proxy_chain",
]

log = logging.getLogger(__name__)

_RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
# What config each discovered network filter accepts over ECDS.
NETWORK_FILTER_TYPES = {
    names.NETWORK_RBAC_DENY_FILTER: _RBAC_TYPE,
    names.NETWORK_RBAC_ALLOW_FILTER: _RBAC_TYPE,
}
_HCM = "envoy.filters.network.http_connection_manager"
_TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
# How long the inspector waits for a client's first bytes before deciding "not TLS": a
# mesh client sends its ClientHello at once; a plaintext client of a server-first
# protocol sends nothing, and goes on as plaintext after this.
INSPECTOR_TIMEOUT = duration_pb2.Duration(seconds=1)
DEFAULT_BIND = "127.0.0.1"


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def network_auth_filters() -> list[listener_components_pb2.Filter]:
    """The network RBAC filters (deny, allow), their config discovered over ECDS. Until
    it arrives the listener warms; a filter without config closes connections."""
    return [
        listener_components_pb2.Filter(
            name=name,
            config_discovery=config_source_pb2.ExtensionConfigSource(
                config_source=_ads(), type_urls=[NETWORK_FILTER_TYPES[name]]
            ),
        )
        for name in names.NETWORK_AUTH_FILTERS
    ]


def tcp_proxy_chain(
    stat_prefix: str, clusters: Clusters, *, authorize: bool
) -> listener_components_pb2.FilterChain:
    """A filter chain relaying to `clusters`; with `authorize`, behind the network RBAC
    filters."""
    chain = listener_components_pb2.FilterChain()
    if authorize:
        chain.filters.extend(network_auth_filters())
    chain.filters.append(
        listener_components_pb2.Filter(
            name=tls_route.TCP_PROXY_FILTER,
            typed_config=pack(tls_route.tcp_proxy(stat_prefix, clusters)),
        )
    )
    return chain


def _address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def inspector(listener: listener_pb2.Listener) -> None:
    """Add the TLS inspector; a client that sends nothing goes on as plaintext."""
    listener.listener_filters.append(
        listener_components_pb2.ListenerFilter(
            name=_TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
        )
    )
    listener.listener_filters_timeout.CopyFrom(INSPECTOR_TIMEOUT)
    listener.continue_on_listener_filters_timeout = True


def inbound_tcp_listener(
    address: str, port: int, mode: str = "DISABLE", tls: tls_pb2.DownstreamTlsContext | None = None
) -> listener_pb2.Listener:
    """Mesh TCP for this workload, relayed to its app (`names.inbound_cluster`).

    STRICT: mutual TLS only. PERMISSIVE: the TLS inspector tells mutual TLS from
    plaintext. DISABLE (or no identity to terminate with): plaintext. Every chain
    authorizes the connection first (network RBAC over ECDS)."""
    name = names.inbound_listener(address, port)
    clusters = ((names.inbound_cluster(port), 100),)

    def chain(secure: bool) -> listener_components_pb2.FilterChain:
        out = tcp_proxy_chain(name, clusters, authorize=True)
        if secure:
            out.transport_socket.name = "envoy.transport_sockets.tls"
            out.transport_socket.typed_config.CopyFrom(pack(tls))
        return out

    listener = listener_pb2.Listener(name=name, address=_address(address, port))
    if tls is None or mode == "DISABLE":
        listener.filter_chains.append(chain(secure=False))
    elif mode == "STRICT":
        listener.filter_chains.append(chain(secure=True))
    else:  # PERMISSIVE
        inspector(listener)
        secure = chain(secure=True)
        secure.filter_chain_match.transport_protocol = "tls"
        plain = chain(secure=False)
        plain.filter_chain_match.transport_protocol = "raw_buffer"
        listener.filter_chains.extend([secure, plain])
    return listener


# --- egress listeners -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Egress:
    """A Sidecar egress entry that gets a listener of its own."""

    index: int  # its place in `egress[]`
    bind: str
    port: int
    protocol: str  # "tcp", "tls" or "http"
    hosts: tuple[str, ...]


def _kind(protocol: str | None) -> str | None:
    value = (protocol or "").upper()
    if value in checks.HTTP_LIKE:
        return "http"
    if value in checks.TLS_LIKE:
        return "tls"
    if value == "UDP":
        return None  # no UDP listeners (validation warns)
    return "tcp"


def egress_entries(spec: SidecarSpec) -> list[Egress]:
    """The entries of a Sidecar that get a listener: those with a port and an IP bind
    (unix sockets and UDP ports are not served; validation warns)."""
    out = []
    for i, entry in enumerate(spec.egress or []):
        port = entry.port
        if port is None or not port.number:
            continue
        bind = entry.bind or DEFAULT_BIND
        kind = _kind(port.protocol)
        if kind is None or not checks.is_ip(bind):
            continue
        out.append(Egress(i, bind, port.number, kind, tuple(entry.hosts or ())))
    return out


def _wildcard(address: str) -> bool:
    return ipaddress.ip_address(address).is_unspecified


def bind_problem(e: Egress, instance_ip: str, taken: Iterable[tuple[str, int]]) -> str | None:
    """Why the listener could not bind on this proxy (Envoy would refuse the whole
    listener update), or None. `taken`: the proxy's other listeners and its app."""
    ip = ipaddress.ip_address(e.bind)
    if not (ip.is_loopback or ip.is_unspecified or e.bind == instance_ip):
        return f"bind {e.bind} is not a loopback address nor this proxy's ({instance_ip})"
    for address, port in taken:
        if port == e.port and (address == e.bind or _wildcard(address) or _wildcard(e.bind)):
            return f"{e.bind}:{e.port} is already taken by {address}:{port} on this proxy"
    return None


def _chosen(e: Egress, services: Sequence[Service], what: str) -> Service | None:
    """The one service a TCP listener relays to: the one on the listener's port, else the
    first by host name."""
    if not services:
        return None
    best = min(services, key=lambda s: (s.port != e.port, s.hostname, s.port))
    if len(services) > 1:
        log.warning(
            "Sidecar %s egress[%d] %s:%d (%s): hosts %s share one listener; %s is used",
            what,
            e.index,
            e.bind,
            e.port,
            e.protocol.upper(),
            ", ".join(sorted({s.hostname for s in services})),
            best.hostname,
        )
    return best


def egress_listener(
    e: Egress,
    services: Sequence[Service],
    *,
    sidecar: Resource,
    labels: dict[str, str],
    namespace: str,
    virtual_service: Callable[[str], Resource | None],
    cluster_for: Callable[[str], ClusterFor],
    obs: telemetry.Observability | None = None,
) -> listener_pb2.Listener | None:
    """The listener of one egress entry for a proxy, `services` the ones its hosts select
    (by host name); None when nothing is there to relay to."""
    name = names.outbound_listener(e.bind, e.port)
    listener = listener_pb2.Listener(name=name, address=_address(e.bind, e.port))
    if e.protocol == "http":
        hcm = hcm_pb2.HttpConnectionManager(
            stat_prefix=name,
            rds=hcm_pb2.Rds(
                route_config_name=names.egress_route(e.bind, e.port), config_source=_ads()
            ),
            http_filters=mesh_filters(),
        )
        telemetry.apply(hcm, obs, outbound=True)
        listener.filter_chains.add().filters.append(
            listener_components_pb2.Filter(name=_HCM, typed_config=pack(hcm))
        )
        return listener
    src = L4Source(
        port=e.port,
        labels=labels,
        namespace=namespace,
        destination=None if _wildcard(e.bind) else e.bind,
    )
    if e.protocol == "tcp":
        svc = _chosen(e, services, sidecar.ref)
        if svc is None:
            return None
        vs = virtual_service(svc.hostname)
        route = sidecar_tcp_route(vs, src, cluster_for) if vs is not None else None
        clusters = route.clusters if route else ((names.outbound_cluster(svc.key, svc.port), 100),)
        listener.filter_chains.append(tcp_proxy_chain(name, clusters, authorize=False))
        return listener
    chains = _sni_chains(e, services, src, virtual_service, cluster_for)
    if not chains:
        return None
    inspector(listener)
    listener.filter_chains.extend(chains)
    return listener


def _sni_chains(
    e: Egress,
    services: Sequence[Service],
    src: L4Source,
    virtual_service: Callable[[str], Resource | None],
    cluster_for: Callable[[str], ClusterFor],
) -> list[listener_components_pb2.FilterChain]:
    """A TLS egress listener's chains: the `tls` routes of each host's VirtualService by
    SNI, else the service itself by its hostname (or, for a lone host, whatever the SNI)."""
    claimed: set[str] = set()
    routes: list[SniRoute] = []
    for svc in sorted(services, key=lambda s: (s.hostname, s.port)):
        vs = virtual_service(svc.hostname)
        found = sidecar_tls_routes(vs, src, cluster_for, claimed) if vs is not None else []
        if not found and svc.hostname not in claimed:
            claimed.add(svc.hostname)
            default = ((names.outbound_cluster(svc.key, svc.port), 100),)
            sni = () if len(services) == 1 else (svc.hostname,)
            found = [SniRoute(sni, default, "")]
        routes.extend(found)
    chains = []
    prefix = names.outbound_listener(e.bind, e.port)
    for route in routes:
        chain = tcp_proxy_chain(prefix, route.clusters, authorize=False)
        chain.name = f"sni.{route.server_names[0]}" if route.server_names else "default"
        chain.filter_chain_match.server_names.extend(route.server_names)
        chains.append(chain)
    return chains
