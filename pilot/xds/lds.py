"""LDS: the sidecar's outbound and inbound listeners."""

from __future__ import annotations

from pilot.model import Proxy
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.resource import Resource

__all__ = ["ListenerGenerator"]


class ListenerGenerator:
    type_url = typeurls.LISTENER

    def needs_push(self, change: Change, names: frozenset[str]) -> bool:
        return change.full

    def generate(
        self, ctx: PushContext, proxy: Proxy, names: frozenset[str], change: Change | None
    ) -> list[Resource]:
        return list(ctx.listeners(proxy))
