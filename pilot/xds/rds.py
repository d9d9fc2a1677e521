"""RDS: the outbound route tables that the proxy's listeners name."""

from __future__ import annotations

from pilot.model import Proxy
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.resource import Resource

__all__ = ["RouteGenerator"]


class RouteGenerator:
    type_url = typeurls.ROUTE

    def needs_push(self, change: Change, names: frozenset[str]) -> bool:
        return change.full

    def generate(
        self, ctx: PushContext, proxy: Proxy, names: frozenset[str], change: Change | None
    ) -> list[Resource]:
        found = (ctx.route(name, proxy) for name in sorted(names))
        return [res for res in found if res is not None]
