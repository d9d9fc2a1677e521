"""EDS: endpoints of the clusters a proxy watches; an endpoint change sends only those."""

from __future__ import annotations

from pilot.model import Proxy
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.resource import Resource

__all__ = ["EndpointGenerator"]


class EndpointGenerator:
    type_url = typeurls.ENDPOINT

    def needs_push(self, change: Change, names: frozenset[str]) -> bool:
        return change.full or not change.endpoints.isdisjoint(names)

    def generate(
        self, ctx: PushContext, proxy: Proxy, names: frozenset[str], change: Change | None
    ) -> list[Resource]:
        wanted = names if change is None or change.full else names & change.endpoints
        found = (ctx.assignments.get(name) for name in sorted(wanted))
        return [res for res in found if res is not None]
