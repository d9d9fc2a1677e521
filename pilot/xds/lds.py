"""LDS: a sidecar's outbound and inbound listeners, and one per Sidecar egress port; a
gateway's, one per server port.

The inbound listener terminates mesh mTLS as the workload's PeerAuthentication
says; with STRICT and no identity to terminate it with, there is no inbound
listener at all (refused, never plaintext). It relays HTTP, or TCP for a workload
whose catalog protocol is `tcp` (`tcp_listener`).
"""

from __future__ import annotations

import logging

from api.networking.sidecar import SidecarSpec
from api.resources import Resource as ConfigResource
from pilot.model import Proxy, ServiceKey
from pilot.networking import gateway, listener, mtls, tcp_listener
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.resource import Resource, make_resource

__all__ = ["ListenerGenerator", "inbound_protocol"]

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
        protocol = inbound_protocol(ctx, proxy)
        return list(
            ctx.memo(
                ("listeners", *proxy.shape, protocol),
                lambda: _sidecar_listeners(ctx, proxy, protocol),
            )
        )


def inbound_protocol(ctx: PushContext, proxy: Proxy) -> str:
    """What the workload behind a sidecar speaks: its own catalog instance's protocol
    (the instance registered with the proxy's id), else its service's; "http" when the
    catalog does not know it (yet)."""
    svc = ctx.snapshot.services.get(ServiceKey(proxy.service, proxy.namespace))
    if svc is None:
        return "http"
    own = next((i for i in svc.instances if i.id == proxy.id), None)
    return own.protocol if own is not None else svc.protocol


def _sidecar_listeners(ctx: PushContext, proxy: Proxy, protocol: str) -> tuple[Resource, ...]:
    out: list[Resource] = []
    taken: list[tuple[str, int]] = []
    if proxy.outbound_port is not None:
        lis = listener.outbound_listener(
            "127.0.0.1", proxy.outbound_port, proxy.namespace, ctx.observability(proxy)
        )
        out.append(make_resource(typeurls.LISTENER, lis.name, lis))
        taken.append(("127.0.0.1", proxy.outbound_port))
    inbound = _inbound_listener(ctx, proxy, protocol)
    if inbound is not None:
        out.append(inbound)
        taken.append(("0.0.0.0", proxy.inbound_port or 0))
    if proxy.app_port is not None:
        taken.append(("0.0.0.0", proxy.app_port))  # the app's own socket, wherever it binds
    out.extend(_egress_listeners(ctx, proxy, taken))
    return tuple(out)


def _inbound_listener(ctx: PushContext, proxy: Proxy, protocol: str) -> Resource | None:
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
    if protocol == "tcp":
        lis = tcp_listener.inbound_tcp_listener("0.0.0.0", proxy.inbound_port, mode, tls)
    else:
        lis = listener.inbound_listener(
            "0.0.0.0", proxy.inbound_port, mode, tls, ctx.observability(proxy)
        )
    return make_resource(typeurls.LISTENER, lis.name, lis)


def egress_sidecar(ctx: PushContext, proxy: Proxy) -> ConfigResource | None:
    """The Sidecar resource whose egress entries give this proxy listeners, if any."""
    if proxy.kind != "sidecar":
        return None
    return ctx.snapshot.config.sidecar_for(proxy.namespace, proxy.labels)


def _egress_listeners(
    ctx: PushContext, proxy: Proxy, taken: list[tuple[str, int]]
) -> list[Resource]:
    """One listener per egress entry with a port (`tcp_listener`); an entry that could
    not bind on this proxy is left out, with a warning, rather than refused by Envoy."""
    sidecar = egress_sidecar(ctx, proxy)
    if sidecar is None:
        return []
    config = ctx.snapshot.config
    out: list[Resource] = []

    def virtual_service(host: str) -> ConfigResource | None:
        found = config.virtual_service(host, namespace=proxy.namespace)
        return found[0] if found is not None else None

    for entry in tcp_listener.egress_entries(sidecar.spec_as(SidecarSpec)):
        problem = tcp_listener.bind_problem(entry, proxy.instance_ip, taken)
        if problem is not None:
            log.warning(
                "proxy %s: %s egress[%d] not served: %s",
                proxy.id,
                sidecar.ref,
                entry.index,
                problem,
            )
            continue
        services = [
            s.service
            for s in ctx.services.values()
            if ctx._visible(s.service, proxy.namespace, entry.hosts)
        ]
        lis = tcp_listener.egress_listener(
            entry,
            services,
            sidecar=sidecar,
            labels=dict(proxy.labels),
            namespace=proxy.namespace,
            virtual_service=virtual_service,
            cluster_for=ctx.cluster_for,
            obs=ctx.observability(proxy),
        )
        if lis is not None:
            out.append(make_resource(typeurls.LISTENER, lis.name, lis))
            taken.append((entry.bind, entry.port))
    return out


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
