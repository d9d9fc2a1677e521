"""EDS: endpoints of the clusters a proxy watches; an endpoint change sends only those.

Most clusters' endpoints are the same for every proxy (serialized once in the
PushContext). Where locality load balancing is in force, their priorities and
weights depend on the proxy's locality (and failoverPriority labels): those are
built once per context for each distinct `endpoint.locality_key`, so proxies
of one locality share the very same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilot.model import Proxy, Service
from pilot.networking import endpoint, names
from pilot.networking.traffic_policy import LocalityLb, locality_lb
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.resource import Resource, make_resource

__all__ = ["EndpointGenerator"]


class EndpointGenerator:
    type_url = typeurls.ENDPOINT

    def needs_push(self, change: Change, names: frozenset[str]) -> bool:
        return change.full or not change.endpoints.isdisjoint(names)

    def generate(
        self, ctx: PushContext, proxy: Proxy, names: frozenset[str], change: Change | None
    ) -> list[Resource]:
        wanted = names if change is None or change.full else names & change.endpoints
        by_locality = _by_locality(ctx)
        out = []
        for name in sorted(wanted):
            shared = ctx.assignments.get(name)
            if shared is None:
                continue
            cluster = by_locality.get(name)
            out.append(shared if cluster is None else _for_proxy(ctx, name, cluster, proxy))
        return out


@dataclass(frozen=True, slots=True)
class _LocalityCluster:
    """An EDS cluster whose endpoints depend on the proxy's locality."""

    service: Service
    subset: str
    labels: Mapping[str, str]
    lb: LocalityLb


def _by_locality(ctx: PushContext) -> Mapping[str, _LocalityCluster]:
    """The EDS clusters with locality load balancing in force, by name (once per context)."""

    def build() -> dict[str, _LocalityCluster]:
        out = {}
        for s in ctx.services.values():
            svc = s.service
            if svc.resolution == "DNS":  # no EDS
                continue
            for subset, labels, policy in s.variants:
                lb = locality_lb(policy)
                if lb is not None:
                    name = names.outbound_cluster(svc.key, svc.port, subset)
                    out[name] = _LocalityCluster(svc, subset, labels, lb)
        return out

    return ctx.memo(("eds-locality-clusters",), build)


def _for_proxy(ctx: PushContext, name: str, c: _LocalityCluster, proxy: Proxy) -> Resource:
    key = endpoint.locality_key(c.lb, proxy.locality, proxy.labels)
    return ctx.memo(
        ("eds-locality", name, key),
        lambda: make_resource(
            typeurls.ENDPOINT,
            name,
            endpoint.load_assignment(
                c.service, c.subset, c.labels, c.lb, proxy.locality, proxy.labels
            ),
        ),
    )
