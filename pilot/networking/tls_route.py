"""VirtualService `tls` routes on a gateway's PASSTHROUGH servers: SNI -> TCP proxy.

The gateway does not terminate TLS: it reads the client's SNI (tls_inspector),
picks the filter chain whose server names hold it, and relays the encrypted
bytes to the route's destination, which terminates TLS itself. A route's SNI
hosts count only where the server's hosts admit them; one SNI name is routed
by one rule, the first in the oldest VirtualService (later claims are left out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from api.networking.virtual_service import RouteDestination, TLSRoute, VirtualServiceSpec
from api.resources import Resource
from pilot.config.index import gateway_ref
from pilot.networking.http_route import ClusterFor

__all__ = ["TCP_PROXY_FILTER", "SniRoute", "passthrough_routes", "route_clusters", "tcp_proxy"]

TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"


@dataclass(frozen=True, slots=True)
class SniRoute:
    """Connections whose SNI is one of `server_names` go to `clusters` (name, weight)."""

    server_names: tuple[str, ...]
    clusters: tuple[tuple[str, int], ...]
    source: str  # "ns/name" of the VirtualService, for stats and logs


def _applies(rule: TLSRoute, gateway: str, vs_namespace: str, port: int) -> list[str]:
    """The SNI hosts of the rule's matches that bind to this gateway and port."""
    hosts: list[str] = []
    for match in rule.match or []:
        gateways = [gateway_ref(g, vs_namespace) for g in match.gateways or []]
        if gateways and gateway not in gateways:
            continue
        if match.port and match.port != port:
            continue
        hosts.extend(match.sni_hosts or [])
    return hosts


def route_clusters(
    routes: list[RouteDestination], cluster_for: ClusterFor
) -> tuple[tuple[str, int], ...]:
    """A route's destinations as (cluster, weight); a lone destination takes everything
    whatever its weight (as Istio), and zero weights are left out."""
    out: list[tuple[str, int]] = []
    for dest in routes:
        weight = 100 if len(routes) == 1 else (dest.weight or 0)
        if weight <= 0:
            continue  # Envoy refuses a zero weight; a 0% destination gets nothing anyway
        d = dest.destination
        port = d.port.number if d.port is not None else None
        out.append((cluster_for(d.host, port, d.subset or ""), weight))
    return tuple(out)


def passthrough_routes(
    gateway: str,
    port: int,
    admits: Callable[[str, str], bool],
    virtual_services: list[Resource],
    cluster_for: Callable[[str], ClusterFor],
    claimed: set[str],
) -> list[SniRoute]:
    """SNI routes for one PASSTHROUGH server; `admits(sni, vs_namespace)` is the server's
    host check, `claimed` the SNI names earlier chains on this port already took."""
    out: list[SniRoute] = []
    for vs in virtual_services:
        spec = vs.spec_as(VirtualServiceSpec)
        for rule in spec.tls or []:
            names = [
                h
                for h in _applies(rule, gateway, vs.namespace, port)
                if admits(h, vs.namespace) and h not in claimed
            ]
            clusters = route_clusters(rule.route or [], cluster_for(vs.namespace))
            if not names or not clusters:
                continue
            claimed.update(names)
            out.append(SniRoute(tuple(dict.fromkeys(names)), clusters, vs.ref))
    return out


def tcp_proxy(stat_prefix: str, clusters: tuple[tuple[str, int], ...]) -> tcp_proxy_pb2.TcpProxy:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix)
    if len(clusters) == 1:
        proxy.cluster = clusters[0][0]
    else:
        proxy.weighted_clusters.clusters.extend(
            tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=name, weight=weight)
            for name, weight in clusters
        )
    return proxy
