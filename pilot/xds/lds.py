"""LDS: a sidecar's outbound and inbound listeners; a gateway's, one per server port.

The inbound listener terminates mesh mTLS as the workload's PeerAuthentication
says; with STRICT and no identity to terminate it with, there is no inbound
listener at all (refused, never plaintext).
"""

from __future__ import annotations

import logging

from pilot.model import Proxy
from pilot.networking import gateway, listener, mtls
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.resource import Resource, make_resource

__all__ = ["ListenerGenerator"]

log = logging.getLogger(__name__)


class ListenerGenerator:
    type_url = typeurls.LISTENER

    def needs_push(self, change: Change, names: frozenset[str]) -> bool:
        return change.full

    def generate(
        self, ctx: PushContext, proxy: Proxy, names: frozenset[str], change: Change | None
    ) -> list[Resource]:
        if proxy.kind == "gateway":
            return list(_gateway_listeners(ctx, proxy))
        return list(ctx.memo(("listeners", *proxy.shape), lambda: _sidecar_listeners(ctx, proxy)))


def _sidecar_listeners(ctx: PushContext, proxy: Proxy) -> tuple[Resource, ...]:
    out: list[Resource] = []
    if proxy.outbound_port is not None:
        lis = listener.outbound_listener(
            "127.0.0.1", proxy.outbound_port, proxy.namespace, ctx.observability(proxy)
        )
        out.append(make_resource(typeurls.LISTENER, lis.name, lis))
    inbound = _inbound_listener(ctx, proxy)
    if inbound is not None:
        out.append(inbound)
    return tuple(out)


def _inbound_listener(ctx: PushContext, proxy: Proxy) -> Resource | None:
    if (
        proxy.inbound_port is None
        or proxy.app_port is None
        or proxy.inbound_port == proxy.outbound_port
    ):
        return None
    mesh = ctx.snapshot.mesh
    mode = mtls.peer_auth_mode(
        ctx.snapshot.config, proxy.namespace, proxy.labels, proxy.app_port, mesh.root_namespace
    )
    tls = mtls.downstream_tls(proxy.sds, mesh.trust_domain) if proxy.sds else None
    if mode == "STRICT" and tls is None:
        log.warning("proxy %s: STRICT mTLS but no mesh identity; no inbound listener", proxy.id)
        return None
    lis = listener.inbound_listener(
        "0.0.0.0", proxy.inbound_port, mode, tls, ctx.observability(proxy)
    )
    return make_resource(typeurls.LISTENER, lis.name, lis)


def _gateway_listeners(ctx: PushContext, proxy: Proxy) -> tuple[Resource, ...]:
    labels = frozenset(proxy.labels.items())

    def build() -> tuple[Resource, ...]:
        ports = gateway.servers_for(ctx.snapshot.config, dict(labels), proxy.namespace)
        out = []
        for port in sorted(ports):
            lis = gateway.gateway_listener(
                proxy.instance_ip,
                port,
                ports[port],
                ctx.snapshot.config,
                ctx.cluster_for,
                sds=proxy.sds,
                trust_domain=ctx.snapshot.mesh.trust_domain,
                obs=ctx.observability(proxy),
            )
            if lis is not None:
                out.append(make_resource(typeurls.LISTENER, lis.name, lis))
        return tuple(out)

    key = ("gateway-listeners", proxy.instance_ip, proxy.namespace, labels, proxy.sds)
    return ctx.memo(key, build)
