"""CDS: every outbound service cluster, plus the sidecar's inbound cluster."""

from __future__ import annotations

from pilot.model import Proxy
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.resource import Resource

__all__ = ["ClusterGenerator"]


class ClusterGenerator:
    type_url = typeurls.CLUSTER

    def needs_push(self, change: Change, names: frozenset[str]) -> bool:
        return change.full

    def generate(
        self, ctx: PushContext, proxy: Proxy, names: frozenset[str], change: Change | None
    ) -> list[Resource]:
        inbound = ctx.inbound_cluster(proxy)
        clusters = ctx.clusters_for(proxy)
        return [*clusters, inbound] if inbound else list(clusters)
