"""Ingress gateway builders: Gateway servers -> listeners, bound VirtualServices -> routes.

A gateway proxy runs the Gateways whose selector matches its labels (as
Istio's ingress gateway deployment does). Each HTTP server port becomes a
listener with route table ``http.<port>``; the VirtualServices that name the
Gateway (``ns/name``, or ``name`` in their own namespace) and whose hosts fit
the server's hosts become its virtual hosts. One host is routed by one
VirtualService: a later one claiming the same host is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from api.networking.gateway import GatewaySpec, Server
from api.networking.virtual_service import VirtualServiceSpec
from api.resources import Resource
from pilot.config.index import ConfigIndex
from pilot.networking import names, telemetry
from pilot.networking.http_route import ClusterFor, http_routes
from pilot.networking.listener import auth_filters, mesh_filters
from pilot.networking.protos import pack

__all__ = ["GatewayServer", "gateway_listener", "gateway_route_config", "servers_for"]

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
GatewayServer = tuple[str, Server]  # ("ns/name", server)


def servers_for(config: ConfigIndex, labels: Mapping[str, str]) -> dict[int, list[GatewayServer]]:
    """Plain-HTTP servers of every Gateway selecting this proxy, by port."""
    out: dict[int, list[GatewayServer]] = {}
    for gw in config.of("Gateway"):
        spec = gw.spec_as(GatewaySpec)
        selector = dict(spec.selector or {})
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        for server in spec.servers or []:
            port = server.port
            if port is None or port.number is None or server.tls is not None:
                continue  # validation requires a port; TLS servers are not served yet
            if (port.protocol or "").upper() in HTTP_PROTOCOLS:
                out.setdefault(port.number, []).append((f"{gw.namespace}/{gw.name}", server))
    return out


def gateway_listener(
    address: str, port: int, obs: telemetry.Observability | None = None
) -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=names.gateway_stat_prefix(port),
        rds=hcm_pb2.Rds(
            route_config_name=names.gateway_route(port),
            config_source=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            ),
        ),
        http_filters=[*auth_filters(), *mesh_filters()],
        use_remote_address={"value": True},
    )
    telemetry.apply(hcm, obs, outbound=True)
    return listener_pb2.Listener(
        name=names.gateway_listener(address, port),
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=pack(hcm)
                    )
                ]
            )
        ],
    )


def _server_host_matches(
    server_host: str, vs_host: str, vs_namespace: str, gateway_namespace: str
) -> bool:
    """A server's `[namespace/]host` admits a VirtualService's host: `*/` or no prefix
    any namespace, `./` the Gateway's own namespace, `ns/` that one."""
    ns, slash, host = server_host.partition("/")
    if not slash:
        ns, host = "*", server_host
    if ns == ".":
        ns = gateway_namespace
    if ns != "*" and ns != vs_namespace:
        return False
    if host == "*" or vs_host == "*":
        return True
    if host.startswith("*"):
        return vs_host.endswith(host[1:])
    return host == vs_host


def gateway_route_config(
    port: int,
    servers: list[GatewayServer],
    config: ConfigIndex,
    cluster_for: Callable[[str], ClusterFor],
) -> route_pb2.RouteConfiguration:
    """One virtual host per (Gateway, VirtualService) on this port; a domain goes to the
    oldest VirtualService that claims it (the others are reported as conflicts)."""
    claimed: set[str] = set()
    vhosts: dict[str, route_components_pb2.VirtualHost] = {}
    for gateway_ref, server in servers:
        for vs in config.virtual_services_for_gateway(gateway_ref):
            domains = _claim(vs, server, port, claimed, gateway_ref.partition("/")[0])
            if not domains:
                continue
            name = names.gateway_vhost(gateway_ref, vs.namespace, vs.name, port)
            if name in vhosts:  # the same binding through another server of this port
                vhosts[name].domains.extend(domains)
                continue
            spec = vs.spec_as(VirtualServiceSpec)
            vhosts[name] = route_components_pb2.VirtualHost(
                name=name,
                domains=domains,
                routes=http_routes(
                    spec,
                    cluster_for(vs.namespace),
                    port=port,
                    proxy_labels={},
                    proxy_namespace=vs.namespace,
                    gateway=gateway_ref,
                ),
            )
    return route_pb2.RouteConfiguration(
        name=names.gateway_route(port),
        virtual_hosts=list(vhosts.values()),
        validate_clusters={"value": False},
    )


def _claim(
    vs: Resource, server: Server, port: int, claimed: set[str], gateway_namespace: str
) -> list[str]:
    """The domains of `vs` that this server admits and no older VirtualService took."""
    spec = vs.spec_as(VirtualServiceSpec)
    domains: list[str] = []
    for host in spec.hosts or []:
        if not any(
            _server_host_matches(h, host, vs.namespace, gateway_namespace)
            for h in server.hosts or []
        ):
            continue
        for d in [host] if host == "*" else [host, f"{host}:{port}"]:
            if d not in claimed:
                claimed.add(d)
                domains.append(d)
    return domains
