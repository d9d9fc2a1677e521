"""Route builders (RDS): the outbound table that routes by Host."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.route.v3 import route_components_pb2, route_pb2

from pilot.model import Service
from pilot.networking import names

__all__ = ["domains_for", "outbound_route_config"]


def domains_for(service: Service, proxy_namespace: str) -> list[str]:
    """Every Host a client may use for the service, with and without the port.

    Short names (``svc``) resolve only within the proxy's own namespace, as
    Kubernetes DNS would; ``svc.ns`` and the FQDN work from anywhere.
    """
    key = service.key
    hosts = [f"{key.name}.{key.namespace}", f"{key.name}.{key.namespace}.svc", key.hostname]
    if key.namespace == proxy_namespace:
        hosts.insert(0, key.name)
    domains: list[str] = []
    for host in hosts:
        domains.append(host)
        domains.append(f"{host}:{service.port}")
    return domains


def outbound_route_config(
    services: Iterable[Service], proxy_namespace: str
) -> route_pb2.RouteConfiguration:
    vhosts = []
    for service in services:
        if service.protocol != "http":
            continue
        cluster = names.outbound_cluster(service.key, service.port)
        vhosts.append(
            route_components_pb2.VirtualHost(
                name=f"{service.key.hostname}:{service.port}",
                domains=domains_for(service, proxy_namespace),
                routes=[
                    route_components_pb2.Route(
                        name="default",
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        route=route_components_pb2.RouteAction(cluster=cluster),
                    )
                ],
            )
        )
    return route_pb2.RouteConfiguration(
        name=names.outbound_route(proxy_namespace),
        virtual_hosts=vhosts,
        validate_clusters={"value": False},
    )
