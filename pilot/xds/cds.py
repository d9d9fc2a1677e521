"""CDS: the outbound service clusters a proxy may see, the mesh's extra clusters
(the trace collector) and the sidecar's inbound cluster.

A proxy with a mesh identity gets each service cluster in its mTLS form
(automatic mTLS, or ISTIO_MUTUAL), built from the same policy as the shared
plain one; proxies of one identity source and scope share those bytes.
"""

from __future__ import annotations

from pilot.model import Proxy
from pilot.networking import cluster, names, telemetry
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext, ServiceResources
from pilot.xds.resource import Resource, make_resource

__all__ = ["ClusterGenerator"]


class ClusterGenerator:
    type_url = typeurls.CLUSTER

    def needs_push(self, change: Change, names: frozenset[str]) -> bool:
        return change.full

    def generate(
        self, ctx: PushContext, proxy: Proxy, names: frozenset[str], change: Change | None
    ) -> list[Resource]:
        inbound = _inbound_cluster(ctx, proxy)
        clusters = [*_service_clusters(ctx, proxy), *_extra_clusters(ctx)]
        return [*clusters, inbound] if inbound else clusters


def _service_clusters(ctx: PushContext, proxy: Proxy) -> tuple[Resource, ...]:
    key, services = ctx.scoped(proxy)
    sds = proxy.sds
    if sds is None:
        if key is None:
            return ctx.clusters
        return ctx.memo(("clusters", key), lambda: tuple(c for s in services for c in s.clusters))
    return ctx.memo(
        ("clusters", key, sds),
        lambda: tuple(_mesh_tls(ctx, s, i, sds) for s in services for i in range(len(s.clusters))),
    )


def _mesh_tls(
    ctx: PushContext, s: ServiceResources, index: int, sds: tuple[str, str, str]
) -> Resource:
    """A cluster as an mTLS-capable proxy gets it: ISTIO_MUTUAL when the rule says so,
    automatic mTLS to instances that terminate it (never to a MESH_EXTERNAL ServiceEntry,
    as Istio), unchanged otherwise. The server must present one of the identities
    `cluster.server_identities` names."""
    subset, labels, policy = s.variants[index]
    tls = policy.tls
    mode = tls.mode if tls is not None else None
    svc = s.service
    if mode in ("DISABLE", "SIMPLE", "MUTUAL") or (svc.mesh_external and mode != "ISTIO_MUTUAL"):
        return s.clusters[index]
    sans = cluster.server_identities(svc, tls, ctx.snapshot.mesh.trust_domain)
    mesh = cluster.MeshTls(sds, sans, forced=mode == "ISTIO_MUTUAL")
    built = cluster.outbound_cluster(svc, policy, subset, labels, mesh)
    return make_resource(typeurls.CLUSTER, built.name, built)


def _extra_clusters(ctx: PushContext) -> tuple[Resource, ...]:
    """Clusters the mesh config adds to every proxy (the trace collector)."""
    zipkin = ctx.snapshot.mesh.zipkin_addr
    if not zipkin:
        return ()
    return ctx.memo(
        ("zipkin",),
        lambda: (
            make_resource(typeurls.CLUSTER, names.ZIPKIN_CLUSTER, telemetry.zipkin_cluster(zipkin)),
        ),
    )


def _inbound_cluster(ctx: PushContext, proxy: Proxy) -> Resource | None:
    if proxy.inbound_port is None or proxy.app_port is None:
        return None
    port, app = proxy.inbound_port, proxy.app_port
    return ctx.memo(
        ("inbound-cluster", port, app),
        lambda: make_resource(
            typeurls.CLUSTER, names.inbound_cluster(port), cluster.inbound_cluster(port, app)
        ),
    )
