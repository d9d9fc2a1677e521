"""Gateway builders: Gateway servers -> listeners and filter chains, bound VirtualServices
-> routes.

A gateway proxy runs the Gateways whose selector matches its labels (as
Istio's ingress gateway deployment does); each server port becomes one
listener, and each server a filter chain on it:

- plain HTTP servers share the port's chain and its route table ``http.<port>``
  (`httpsRedirect` answers 301 to https on the hosts of that server);
- a TLS-terminating server (SIMPLE, MUTUAL, OPTIONAL_MUTUAL, ISTIO_MUTUAL) is its
  own chain, matched by SNI, with its own route table (`names.gateway_https_route`);
- a PASSTHROUGH server gets one chain per SNI name its bound VirtualServices'
  `tls` routes claim, relaying the still-encrypted connection (`tls_route`);
- a TCP server (TCP, MONGO, REDIS, MYSQL) is one chain relaying the connection
  where the `tcp` route of the oldest bound VirtualService for that port sends it
  (`tcp_route`); a TLS server that terminates TLS (SIMPLE, MUTUAL, ...) is a chain
  matched by SNI that decrypts and relays the same way. Both authorize the
  connection first (network RBAC, `tcp_listener`).

The plaintext servers of a port are one kind: the first one's (HTTP servers share
the port's route table; a TCP server takes the port alone); the others are left out.

The VirtualServices that name the Gateway (``ns/name``, or ``name`` in their own
namespace) and whose hosts fit the server's hosts become its virtual hosts. One
host (or SNI name) on a port is served by one server and routed by one
VirtualService: the oldest claim wins, later ones are left out. A TLS server that
cannot be honoured gets no chain at all, never a plaintext one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from api.gateway_api.translate import PARENT_ANNOTATION
from api.networking.gateway import GatewaySpec, Server, server_admits
from api.networking.virtual_service import VirtualServiceSpec
from api.resources import Resource
from pilot.config.index import ConfigIndex
from pilot.networking import gateway_tls, names, tcp_listener, tcp_route, telemetry, tls_route
from pilot.networking.http_route import ClusterFor, http_routes
from pilot.networking.listener import auth_filters, mesh_filters
from pilot.networking.protos import pack

__all__ = [
    "GatewayServer",
    "RouteTable",
    "gateway_listener",
    "gateway_route_config",
    "route_tables",
    "servers_for",
]

log = logging.getLogger(__name__)

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
# Relayed as opaque TCP (Istio has no filters of its own for these on gateways either).
TCP_PROTOCOLS = frozenset({"TCP", "MONGO", "REDIS", "MYSQL"})
_TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
_HCM = "envoy.filters.network.http_connection_manager"


@dataclass(frozen=True, slots=True)
class GatewayServer:
    gateway: str  # "ns/name"
    server: Server
    proxy_namespace: str  # the gateway proxy's: which VirtualServices it sees (exportTo)

    @property
    def kind(self) -> str | None:
        """ "http" (plain, maybe redirecting), "https" (terminated here), "passthrough",
        "tcp" (plain TCP), "tls" (TLS terminated here, then TCP), or None: a server this
        mesh does not serve (AUTO_PASSTHROUGH, UDP)."""
        protocol = (self.server.port.protocol or "").upper() if self.server.port else ""
        tls = self.server.tls
        mode = (tls.mode if tls is not None else None) or "PASSTHROUGH"
        if protocol in HTTP_PROTOCOLS and (tls is None or mode == "PASSTHROUGH"):
            return "http"
        if protocol == "HTTPS" and mode in gateway_tls.TERMINATING_MODES:
            return "https"
        if protocol in ("HTTPS", "TLS") and tls is not None and mode == "PASSTHROUGH":
            return "passthrough"
        if protocol in TCP_PROTOCOLS and tls is None:
            return "tcp"
        if protocol == "TLS" and mode in gateway_tls.TERMINATING_MODES:
            return "tls"
        return None

    @property
    def plaintext(self) -> bool:
        return self.kind in ("http", "tcp")

    @property
    def https_redirect(self) -> bool:
        return bool(self.server.tls is not None and self.server.tls.https_redirect)

    def chain_name(self, port: int) -> str:
        """The name of a TCP or TLS-terminating server's filter chain."""
        if self.kind == "tls":
            port_name = self.server.port.name if self.server.port else None
            return names.gateway_tls_chain(port, port_name or "", self.gateway)
        return names.gateway_tcp_chain(port)

    def route_name(self, port: int) -> str:
        if self.kind == "https":
            port_name = self.server.port.name if self.server.port else None
            return names.gateway_https_route(port, port_name or "", self.gateway)
        return names.gateway_route(port)

    def admits(self, host: str, vs_namespace: str) -> bool:
        ns = self.gateway.partition("/")[0]
        return any(server_admits(h, host, vs_namespace, ns) for h in self.server.hosts or [])

    def sni_names(self) -> tuple[str, ...]:
        """The SNI names this server's chain matches (none: any, for a `*` host)."""
        hosts = [h.partition("/")[2] if "/" in h else h for h in self.server.hosts or []]
        return () if "*" in hosts else tuple(dict.fromkeys(hosts))


# A route table's name -> (port, the servers it routes for).
RouteTable = tuple[int, list[GatewayServer]]


def servers_for(
    config: ConfigIndex, labels: Mapping[str, str], namespace: str
) -> dict[int, list[GatewayServer]]:
    """Served servers of every Gateway selecting this proxy, by port, oldest Gateway first.
    A Gateway made from a Gateway API Gateway selects proxies of its own namespace only."""
    out: dict[int, list[GatewayServer]] = {}
    for gw in config.of("Gateway"):
        spec = gw.spec_as(GatewaySpec)
        selector = dict(spec.selector or {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        if PARENT_ANNOTATION in gw.annotations and gw.namespace != namespace:
            continue
        for server in spec.servers or []:
            port = server.port
            if port is None or port.number is None:
                continue  # validation requires a port
            entry = GatewayServer(f"{gw.namespace}/{gw.name}", server, namespace)
            if entry.kind is not None:
                out.setdefault(port.number, []).append(entry)
    return out


def route_tables(servers: Mapping[int, list[GatewayServer]]) -> dict[str, RouteTable]:
    """Every route table the gateway's listeners name: one per port for its plain HTTP
    servers, one per TLS-terminating server."""
    out: dict[str, RouteTable] = {}
    for port, entries in servers.items():
        for entry in entries:
            if entry.kind in ("http", "https"):
                name = entry.route_name(port)
                out.setdefault(name, (port, []))[1].append(entry)
    return out


def _hcm(
    route_name: str, stat_prefix: str, obs: telemetry.Observability | None
) -> listener_components_pb2.Filter:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        rds=hcm_pb2.Rds(
            route_config_name=route_name,
            config_source=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            ),
        ),
        http_filters=[*auth_filters(), *mesh_filters()],
        use_remote_address={"value": True},
    )
    telemetry.apply(hcm, obs, outbound=True)
    return listener_components_pb2.Filter(name=_HCM, typed_config=pack(hcm))


def _tls_socket(context: object) -> listener_components_pb2.FilterChain:
    chain = listener_components_pb2.FilterChain()
    chain.transport_socket.name = "envoy.transport_sockets.tls"
    chain.transport_socket.typed_config.CopyFrom(pack(context))
    return chain


def _https_chain(
    entry: GatewayServer,
    port: int,
    sni: tuple[str, ...],
    sds: tuple[str, str, str] | None,
    trust_domain: str,
    obs: telemetry.Observability | None,
) -> listener_components_pb2.FilterChain | None:
    assert entry.server.tls is not None  # an "https" server has TLS settings
    context = gateway_tls.downstream_context(entry.server.tls, sds, trust_domain, http=True)
    if isinstance(context, gateway_tls.Refusal):
        log.warning(
            "gateway %s port %d (%s): TLS server not served: %s",
            entry.gateway,
            port,
            ",".join(entry.server.hosts or []),
            context.reason,
        )
        return None
    chain = _tls_socket(context)
    chain.name = entry.route_name(port)
    chain.filter_chain_match.transport_protocol = "tls"
    chain.filter_chain_match.server_names.extend(sni)
    chain.filters.append(
        _hcm(entry.route_name(port), f"{names.gateway_stat_prefix(port)}_https", obs)
    )
    return chain


def _passthrough_chains(
    entry: GatewayServer,
    port: int,
    config: ConfigIndex,
    cluster_for: Callable[[str], ClusterFor],
    claimed: set[str],
) -> list[listener_components_pb2.FilterChain]:
    chains = []
    routes = tls_route.passthrough_routes(
        entry.gateway,
        port,
        entry.admits,
        config.virtual_services(entry.gateway, entry.proxy_namespace),
        cluster_for,
        claimed,
    )
    for route in routes:
        chain = listener_components_pb2.FilterChain(name=f"sni.{port}.{route.server_names[0]}")
        chain.filter_chain_match.transport_protocol = "tls"
        chain.filter_chain_match.server_names.extend(route.server_names)
        proxy = tls_route.tcp_proxy(
            f"{names.gateway_stat_prefix(port)}_passthrough", route.clusters
        )
        chain.filters.append(
            listener_components_pb2.Filter(
                name=tls_route.TCP_PROXY_FILTER, typed_config=pack(proxy)
            )
        )
        chains.append(chain)
    return chains


def _tcp_chain(
    entry: GatewayServer,
    port: int,
    config: ConfigIndex,
    cluster_for: Callable[[str], ClusterFor],
) -> listener_components_pb2.FilterChain | None:
    """The chain of a TCP server (or, decrypted, of a TLS-terminating one): relayed where
    the oldest bound VirtualService's `tcp` route for this port sends it; none without one."""
    route = tcp_route.gateway_tcp_route(
        entry.gateway,
        port,
        entry.admits,
        config.virtual_services(entry.gateway, entry.proxy_namespace),
        cluster_for,
        terminated=entry.kind == "tls",
    )
    if route is None:
        log.warning(
            "gateway %s port %d: no VirtualService routes this %s server; no chain",
            entry.gateway,
            port,
            (entry.server.port.protocol or "") if entry.server.port else "",
        )
        return None
    stat = f"{names.gateway_stat_prefix(port)}_{entry.kind}"
    chain = tcp_listener.tcp_proxy_chain(stat, route.clusters, authorize=True)
    chain.name = entry.chain_name(port)
    return chain


def _tls_tcp_chain(
    entry: GatewayServer,
    port: int,
    sni: tuple[str, ...],
    config: ConfigIndex,
    cluster_for: Callable[[str], ClusterFor],
    sds: tuple[str, str, str] | None,
    trust_domain: str,
) -> listener_components_pb2.FilterChain | None:
    """A TLS server that terminates TLS, then relays TCP: matched by SNI like an HTTPS
    server; never a chain without its TLS."""
    assert entry.server.tls is not None  # a "tls" server has TLS settings
    context = gateway_tls.downstream_context(entry.server.tls, sds, trust_domain, http=False)
    if isinstance(context, gateway_tls.Refusal):
        log.warning(
            "gateway %s port %d (%s): TLS server not served: %s",
            entry.gateway,
            port,
            ",".join(entry.server.hosts or []),
            context.reason,
        )
        return None
    relay = _tcp_chain(entry, port, config, cluster_for)
    if relay is None:
        return None
    chain = _tls_socket(context)
    chain.MergeFrom(relay)
    chain.filter_chain_match.transport_protocol = "tls"
    chain.filter_chain_match.server_names.extend(sni)
    return chain


def _unclaimed_sni(entry: GatewayServer, port: int, claimed: set[str]) -> tuple[str, ...] | None:
    """The server's SNI names no older server on the port took (None: all were taken).
    The empty tuple (any name) is one claim too: the first `*` server takes it."""
    sni = entry.sni_names()
    key = sni or ("*",)
    free = tuple(n for n in key if n not in claimed)
    if not free:
        log.warning(
            "gateway %s port %d: hosts %s are served by an older server", entry.gateway, port, key
        )
        return None
    claimed.update(free)
    return free if sni else ()


def _plaintext(servers: list[GatewayServer], port: int) -> list[GatewayServer]:
    """The plaintext servers a port serves: the first one's kind wins the port (Istio's
    merge rule): every HTTP server if it is HTTP, else that one TCP server alone."""
    plain = [e for e in servers if e.plaintext]
    if not plain:
        return []
    kept = [e for e in plain if e.kind == "http"] if plain[0].kind == "http" else plain[:1]
    for e in plain:
        if e not in kept:
            log.warning(
                "gateway %s port %d: a plaintext %s server is left out: the port serves %s",
                e.gateway,
                port,
                (e.server.port.protocol or "") if e.server.port else "",
                "HTTP" if kept[0].kind == "http" else f"the TCP server of {kept[0].gateway}",
            )
    return kept


def gateway_listener(
    address: str,
    port: int,
    servers: list[GatewayServer],
    config: ConfigIndex,
    cluster_for: Callable[[str], ClusterFor],
    *,
    sds: tuple[str, str, str] | None,
    trust_domain: str,
    obs: telemetry.Observability | None = None,
) -> listener_pb2.Listener | None:
    """The port's listener: a chain for its plain HTTP servers (or its TCP server), one
    per TLS server, one per passthrough SNI route. None when no server on the port can
    be served."""
    plain = _plaintext(servers, port)
    chains: list[listener_components_pb2.FilterChain] = []
    claimed: set[str] = set()
    for entry in servers:
        if entry.kind in ("https", "tls"):
            sni = _unclaimed_sni(entry, port, claimed)
            if sni is None:
                continue
            if entry.kind == "https":
                chain = _https_chain(entry, port, sni, sds, trust_domain, obs)
            else:
                chain = _tls_tcp_chain(entry, port, sni, config, cluster_for, sds, trust_domain)
            if chain is not None:
                chains.append(chain)
        elif entry.kind == "passthrough":
            chains.extend(_passthrough_chains(entry, port, config, cluster_for, claimed))
    plain_chain = None
    if plain and plain[0].kind == "http":
        plain_chain = listener_components_pb2.FilterChain(
            filters=[_hcm(names.gateway_route(port), names.gateway_stat_prefix(port), obs)]
        )
        if chains:  # beside TLS chains, plaintext is told apart by the inspector
            plain_chain.name = names.gateway_route(port)
    elif plain:
        plain_chain = _tcp_chain(plain[0], port, config, cluster_for)
    if plain_chain is None and not chains:
        return None
    lis = listener_pb2.Listener(
        name=names.gateway_listener(address, port),
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
    )
    if plain_chain is not None:
        if chains:
            plain_chain.filter_chain_match.transport_protocol = "raw_buffer"
        lis.filter_chains.append(plain_chain)
    if chains:
        lis.filter_chains.extend(chains)
        if plain and plain[0].kind == "tcp":
            # A TCP client may wait for its server to speak first: the inspector must not
            # hold it (nor close it) for want of a ClientHello.
            tcp_listener.inspector(lis)
        else:
            lis.listener_filters.append(
                listener_components_pb2.ListenerFilter(
                    name=_TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
                )
            )
    return lis


def gateway_route_config(
    name: str,
    table: RouteTable,
    config: ConfigIndex,
    cluster_for: Callable[[str], ClusterFor],
) -> route_pb2.RouteConfiguration:
    """One virtual host per (Gateway, VirtualService) in this table; a domain goes to the
    oldest VirtualService that claims it (the others are reported as conflicts). The
    hosts of a server with `httpsRedirect` answer a redirect to https instead."""
    port, servers = table
    claimed: set[str] = set()
    vhosts: dict[str, route_components_pb2.VirtualHost] = {}
    for entry in servers:
        for vs in config.virtual_services(entry.gateway, entry.proxy_namespace):
            domains = _claim(vs, entry, port, claimed)
            if not domains:
                continue
            vhost_name = names.gateway_vhost(entry.gateway, vs.namespace, vs.name, port)
            if entry.https_redirect:
                vhost_name += "|https-redirect"
            if vhost_name in vhosts:  # the same binding through another server of this port
                vhosts[vhost_name].domains.extend(domains)
                continue
            spec = vs.spec_as(VirtualServiceSpec)
            vhost = route_components_pb2.VirtualHost(
                name=vhost_name,
                domains=domains,
                routes=http_routes(
                    spec,
                    cluster_for(vs.namespace),
                    port=port,
                    proxy_labels={},
                    proxy_namespace=vs.namespace,
                    gateway=entry.gateway,
                ),
            )
            if entry.https_redirect:
                vhost.require_tls = route_components_pb2.VirtualHost.ALL
            vhosts[vhost_name] = vhost
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=list(vhosts.values()),
        validate_clusters={"value": False},
    )


def _claim(vs: Resource, entry: GatewayServer, port: int, claimed: set[str]) -> list[str]:
    """The domains of `vs` that this server admits and no older VirtualService took."""
    spec = vs.spec_as(VirtualServiceSpec)
    domains: list[str] = []
    for host in spec.hosts or []:
        if not entry.admits(host, vs.namespace):
            continue
        for d in [host] if host == "*" else [host, f"{host}:{port}"]:
            if d not in claimed:
                claimed.add(d)
                domains.append(d)
    return domains
