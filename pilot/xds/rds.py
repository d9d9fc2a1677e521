"""RDS: the route tables a proxy's listeners name.

A sidecar's outbound listener names its namespace's table (short hosts
resolve within it); a gateway's listener per port names that port's table,
routed by the VirtualServices bound to the Gateways on it.
"""

from __future__ import annotations

from api.networking.policy import LoadBalancerSettings
from api.networking.virtual_service import VirtualServiceSpec
from pilot.model import Proxy, ServiceKey
from pilot.networking import gateway, names, route
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
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


def _outbound_route(ctx: PushContext, name: str, proxy: Proxy) -> Resource | None:
    if name != names.outbound_route(proxy.namespace):
        return None
    labels = frozenset(proxy.labels.items()) if ctx.source_labels else frozenset()
    config = ctx.snapshot.config
    scope_key, scoped = ctx.scoped(proxy)

    def virtual_service(host: str) -> tuple[str, VirtualServiceSpec] | None:
        found = config.virtual_service(host)
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
        return make_resource(typeurls.ROUTE, name, table)

    return ctx.memo(("route", name, labels, scope_key), build)


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
