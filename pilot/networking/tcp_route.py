"""VirtualService `tcp` routes, and `tls` routes on a sidecar's TLS egress port: which rule
routes a connection, as Istio chooses it.

Everything here is decided when the config is built, because every predicate is known
then: the listener's port, the proxy's labels and namespace, the gateway, and (on a
sidecar's egress listener, which is bound to one address) the destination address.

- On a sidecar, a host's `tcp` rules are read in order; the first rule without a match,
  or with a match whose `port` is the listener's port (or unset), whose `sourceLabels`
  are among the proxy's labels, whose `sourceNamespace` is the proxy's, whose `gateways`
  (if any) include `mesh`, and whose `destinationSubnets` (if any) hold the listener's
  bind address, routes every connection of that listener.
- `tls` rules on a sidecar's TLS egress port give one route per SNI name their matches
  name (same predicates); the first rule to claim a name routes it.
- On a gateway, a TCP server is routed by the first VirtualService bound to that
  Gateway, oldest first, whose hosts the server admits and one of whose `tcp` rules has
  no match or a match on the server's port and gateway (Istio checks only those two on
  gateways). Later VirtualServices that would also route it are left out: the port is
  one claim (see `pilot.conflicts`).

A route's destinations become (cluster, weight) pairs; a destination without a port is
the host's service port; a host no service has becomes a cluster name Envoy lacks, so
the connection is closed (Istio's BlackHoleCluster for that host).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from api.gateway_api.translate import PARENT_ANNOTATION
from api.networking.virtual_service import (
    L4MatchAttributes,
    RouteDestination,
    TLSMatchAttributes,
    VirtualServiceSpec,
)
from api.resources import Resource
from pilot.config.index import gateway_ref
from pilot.networking.http_route import ClusterFor
from pilot.networking.tls_route import route_clusters

__all__ = [
    "L4Source",
    "SniRoute",
    "TcpRoute",
    "gateway_tcp_claims",
    "gateway_tcp_route",
    "sidecar_tcp_route",
    "sidecar_tls_routes",
]

log = logging.getLogger(__name__)

# (cluster name, weight): what a tcp_proxy relays to.
Clusters = tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class L4Source:
    """Where a connection comes from and arrives, as far as config generation knows it."""

    port: int  # the listener's port
    labels: Mapping[str, str]  # the proxy's labels ({} on a gateway)
    namespace: str  # the proxy's namespace
    gateway: str = "mesh"  # "mesh" for a sidecar, else the Gateway ("ns/name")
    # The sidecar listener's bind address; None: not known (a gateway, or a wildcard bind).
    destination: str | None = None


@dataclass(frozen=True, slots=True)
class TcpRoute:
    """The destinations of one rule and where that rule comes from."""

    clusters: Clusters
    source: str  # 'Kind/ns/name' of the VirtualService, for stats and logs


@dataclass(frozen=True, slots=True)
class SniRoute:
    """Connections whose SNI is one of `server_names` go to `clusters`."""

    server_names: tuple[str, ...]
    clusters: Clusters
    source: str


def _in_subnets(address: str | None, subnets: Sequence[str]) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(s, strict=False) for s in subnets)
    except ValueError:
        return False


def _matches(
    match: L4MatchAttributes | TLSMatchAttributes, vs_namespace: str, src: L4Source
) -> bool:
    """Istio's static L4 predicates (matchTCP / matchTLS) for one match block."""
    gateways = [gateway_ref(g, vs_namespace) for g in match.gateways or []]
    if gateways and src.gateway not in gateways:
        return False
    if match.port and match.port != src.port:
        return False
    if src.gateway != "mesh":  # gateways check the port and the gateway only
        return True
    if any(src.labels.get(k) != v for k, v in (match.source_labels or {}).items()):
        return False
    if match.source_namespace and match.source_namespace != src.namespace:
        return False
    # A subnet match is on the connection's destination address: on a listener bound to
    # one address, known now; otherwise it cannot be known, and the match does not apply.
    return not match.destination_subnets or _in_subnets(src.destination, match.destination_subnets)


def sidecar_tcp_route(
    vs: Resource, src: L4Source, cluster_for: Callable[[str], ClusterFor]
) -> TcpRoute | None:
    """The first `tcp` rule of `vs` that routes connections of this sidecar listener."""
    spec = vs.spec_as(VirtualServiceSpec)
    for rule in spec.tcp or []:
        if not rule.route:
            continue
        if rule.match and not any(_matches(m, vs.namespace, src) for m in rule.match):
            continue
        clusters = route_clusters(rule.route, cluster_for(vs.namespace))
        if clusters:
            return TcpRoute(clusters, vs.ref)
    return None


def sidecar_tls_routes(
    vs: Resource, src: L4Source, cluster_for: Callable[[str], ClusterFor], claimed: set[str]
) -> list[SniRoute]:
    """One route per `tls` rule of `vs` for the SNI names its matching matches name and
    no earlier rule (of this or an earlier host) took; `claimed` is updated."""
    spec = vs.spec_as(VirtualServiceSpec)
    out: list[SniRoute] = []
    for rule in spec.tls or []:
        names = [
            sni
            for m in rule.match or []
            if _matches(m, vs.namespace, src)
            for sni in m.sni_hosts or []
            if sni not in claimed
        ]
        clusters = route_clusters(rule.route or [], cluster_for(vs.namespace))
        if not names or not clusters:
            continue
        names = list(dict.fromkeys(names))
        claimed.update(names)
        out.append(SniRoute(tuple(names), clusters, vs.ref))
    return out


def _gateway_rule(vs: Resource, src: L4Source, terminated: bool) -> list[RouteDestination] | None:
    """The destinations of the first rule of `vs` that routes this gateway TCP server."""
    spec = vs.spec_as(VirtualServiceSpec)
    for rule in spec.tcp or []:
        if not rule.route:
            continue
        if not rule.match or any(_matches(m, vs.namespace, src) for m in rule.match):
            return list(rule.route)
    # Istio's rule for a Gateway API TLSRoute on a TLS listener that terminates: its `tls`
    # rules route the decrypted connection like `tcp` rules.
    if terminated and PARENT_ANNOTATION in vs.annotations:
        for tls in spec.tls or []:
            if tls.route and any(_matches(m, vs.namespace, src) for m in tls.match or []):
                return list(tls.route)
    return None


def gateway_tcp_claims(
    gateway: str,
    port: int,
    admits: Callable[[str, str], bool],
    virtual_services: Sequence[Resource],
    *,
    terminated: bool = False,
) -> list[tuple[Resource, list[RouteDestination]]]:
    """Every VirtualService bound to `gateway` (oldest first) that would route its TCP
    server on `port`, with the destinations it would use. The first one routes it; the
    others are left out (reported as conflicts). `admits(host, vs_namespace)` is the
    server's host check; `terminated`: the server terminates TLS (a TLS server)."""
    src = L4Source(port=port, labels={}, namespace="", gateway=gateway)
    out = []
    for vs in virtual_services:
        spec = vs.spec_as(VirtualServiceSpec)
        if not any(admits(h, vs.namespace) for h in spec.hosts or []):
            continue
        routes = _gateway_rule(vs, src, terminated)
        if routes is not None:
            out.append((vs, routes))
    return out


def gateway_tcp_route(
    gateway: str,
    port: int,
    admits: Callable[[str, str], bool],
    virtual_services: Sequence[Resource],
    cluster_for: Callable[[str], ClusterFor],
    *,
    terminated: bool = False,
) -> TcpRoute | None:
    """The route of a gateway TCP server: the oldest claim (see `gateway_tcp_claims`)."""
    claims = gateway_tcp_claims(gateway, port, admits, virtual_services, terminated=terminated)
    if not claims:
        return None
    for vs, _ in claims[1:]:
        log.debug(
            "gateway %s port %d: %s left out, %s routes it", gateway, port, vs.ref, claims[0][0].ref
        )
    vs, routes = claims[0]
    clusters = route_clusters(routes, cluster_for(vs.namespace))
    return TcpRoute(clusters, vs.ref) if clusters else None
