"""RDS: the route tables a proxy's listeners name.

A sidecar's outbound listener names its namespace's table (short hosts
resolve within it), and the listener of a Sidecar egress entry with an HTTP port the
table of that entry's hosts only; a gateway's listener per port names that port's table,
routed by the VirtualServices bound to the Gateways on it.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_pb2

from api.networking.policy import LoadBalancerSettings
from api.networking.sidecar import SidecarSpec
from api.networking.virtual_service import VirtualServiceSpec
from pilot.model import Proxy, ServiceKey
from pilot.networking import gateway, names, route, tcp_listener
from pilot.xds import lds, typeurls
from pilot.xds.context import Change, PushContext, ServiceResources
from pilot.xds.resource import Resource, make_resource

__all__ = ["RouteGenerator"]


class RouteGenerator:
    type_url = typeurls.ROUTE

    def needs_push(self, change: Change, names: frozenset[str]) -> bool:
        return change.full

    def generate(
        self, ctx: PushContext, proxy: Proxy, names: frozenset[str], change: Change | None
    ) -> list[Resource]:
        table = _gateway_route if proxy.kind == "gateway" else _outbound_route
        found = (table(ctx, name, proxy) for name in sorted(names))
        return [res for res in found if res is not None]


def _egress_services(
    ctx: PushContext, name: str, proxy: Proxy
) -> tuple[object, list[ServiceResources], int] | None:
    """(scope key, services, listener port) of the Sidecar egress entry whose HTTP
    listener names this route table: only that entry's hosts."""
    sidecar = lds.egress_sidecar(ctx, proxy)
    if sidecar is None:
        return None
    entries = tcp_listener.egress_entries(sidecar.spec_as(SidecarSpec))
    entry = next(
        (e for e in entries if e.protocol == "http" and names.egress_route(e.bind, e.port) == name),
        None,
    )
    if entry is None:
        return None
    key = (sidecar.ref, proxy.namespace, entry.index)
    hosts = entry.hosts
    scoped = ctx.memo(
        ("egress-scoped", key),
        lambda: [
            s for s in ctx.services.values() if ctx._visible(s.service, proxy.namespace, hosts)
        ],
    )
    return key, scoped, entry.port


def _with_listener_port(table: route_pb2.RouteConfiguration, port: int) -> None:
    """An egress listener's clients may name its own port in the Host (`svc:<port>`): each
    host a client may use without a port answers with that port too."""
    for vhost in table.virtual_hosts:
        bare = [d for d in vhost.domains if ":" not in d]
        vhost.domains.extend(f"{d}:{port}" for d in bare if f"{d}:{port}" not in vhost.domains)


def _outbound_route(ctx: PushContext, name: str, proxy: Proxy) -> Resource | None:
    listener_port: int | None = None
    if name == names.outbound_route(proxy.namespace):
        scope_key, scoped = ctx.scoped(proxy)
    elif (egress := _egress_services(ctx, name, proxy)) is not None:
        scope_key, scoped, listener_port = egress
    else:
        return None
    labels = frozenset(proxy.labels.items()) if ctx.source_labels else frozenset()
    config = ctx.snapshot.config

    def virtual_service(host: str) -> tuple[str, VirtualServiceSpec] | None:
        found = config.virtual_service(host, namespace=proxy.namespace)
        return (found[0].namespace, found[1]) if found is not None else None

    def build() -> Resource:
        lbs: dict[ServiceKey, LoadBalancerSettings | None] = {
            s.service.key: s.load_balancer for s in scoped
        }
        table = route.outbound_route_config(
            [s.service for s in scoped],
            proxy.namespace,
            proxy_labels=dict(labels),
            virtual_service=virtual_service,
            cluster_for=ctx.cluster_for,
            load_balancer=lambda svc: lbs.get(svc.key),
        )
        table.name = name
        if listener_port is not None:
            _with_listener_port(table, listener_port)
        return make_resource(typeurls.ROUTE, name, table)

    return ctx.memo(("route", name, proxy.namespace, labels, scope_key), build)


def _gateway_route(ctx: PushContext, name: str, proxy: Proxy) -> Resource | None:
    labels = frozenset(proxy.labels.items())
    tables = ctx.memo(
        ("gateway-route-tables", labels, proxy.namespace),
        lambda: gateway.route_tables(
            gateway.servers_for(ctx.snapshot.config, dict(labels), proxy.namespace)
        ),
    )
    table = tables.get(name)
    if table is None:
        return None

    def build() -> Resource:
        config = gateway.gateway_route_config(name, table, ctx.snapshot.config, ctx.cluster_for)
        return make_resource(typeurls.ROUTE, name, config)

    return ctx.memo(("gateway-route", name, labels, proxy.namespace), build)
