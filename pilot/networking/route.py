"""Route builders (RDS): the outbound table that routes by Host.

One virtual host per HTTP service; its routes come from the VirtualService
for that host when there is one, else one default route to the service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from envoy.config.route.v3 import route_components_pb2, route_pb2

from api.networking.policy import HTTPCookie, LoadBalancerSettings
from api.networking.virtual_service import VirtualServiceSpec
from pilot.model import Service, ServiceKey
from pilot.networking import names
from pilot.networking.http_route import ClusterFor, default_route, http_routes
from pilot.networking.protos import duration

__all__ = ["bare_host_owners", "domains_for", "hash_policies", "outbound_route_config"]


def bare_host_owners(services: Iterable[Service]) -> set[ServiceKey]:
    """The services that answer a Host without a port: one per host name. A host
    served on several HTTP ports (a ServiceEntry) gives it to port 80, else the lowest."""
    best: dict[str, Service] = {}
    for svc in services:
        if svc.protocol != "http":
            continue
        current = best.get(svc.hostname)
        if current is None or (svc.port != 80, svc.port) < (current.port != 80, current.port):
            best[svc.hostname] = svc
    return {svc.key for svc in best.values()}


def domains_for(service: Service, proxy_namespace: str, bare: bool = True) -> list[str]:
    """Every Host a client may use for the service: with the port, and without it
    when `bare` (see `bare_host_owners`).

    Short names (``svc``) resolve only within the proxy's own namespace, as
    Kubernetes DNS would; ``svc.ns`` and the FQDN work from anywhere.
    ServiceEntry hosts are used exactly as declared.
    """
    key = service.key
    if key.host:
        hosts = [key.host]
    else:
        hosts = [f"{key.name}.{key.namespace}", f"{key.name}.{key.namespace}.svc", key.hostname]
        if key.namespace == proxy_namespace:
            hosts.insert(0, key.name)
    domains: list[str] = []
    for host in hosts:
        if bare:
            domains.append(host)
        domains.append(f"{host}:{service.port}")
    return domains


def hash_policies(
    load_balancer: LoadBalancerSettings | None,
) -> list[route_components_pb2.RouteAction.HashPolicy]:
    """DestinationRule consistentHash -> the route's hash policy."""
    ch = load_balancer.consistent_hash if load_balancer is not None else None
    if ch is None:
        return []
    policy = route_components_pb2.RouteAction.HashPolicy()
    if ch.http_header_name:
        policy.header.header_name = ch.http_header_name
    elif ch.http_cookie is not None:
        _cookie(policy.cookie, ch.http_cookie)
    elif ch.use_source_ip:
        policy.connection_properties.source_ip = True
    elif ch.http_query_parameter_name:
        policy.query_parameter.name = ch.http_query_parameter_name
    else:
        return []
    return [policy]


def _cookie(out: route_components_pb2.RouteAction.HashPolicy.Cookie, cookie: HTTPCookie) -> None:
    """As Istio: Envoy generates the cookie (with these attributes) only when a ttl is set,
    `0s` making it a session cookie; without one it hashes on the cookie if the client sent it."""
    out.name = cookie.name or ""
    if cookie.path:
        out.path = cookie.path
    if (ttl := duration(cookie.ttl)) is not None:
        out.ttl.CopyFrom(ttl)
    for attribute in cookie.attributes or []:
        out.attributes.add(name=attribute.name or "", value=attribute.value or "")


def outbound_route_config(
    services: Iterable[Service],
    proxy_namespace: str,
    *,
    proxy_labels: Mapping[str, str] | None = None,
    virtual_service: Callable[[str], tuple[str, VirtualServiceSpec] | None] = lambda host: None,
    cluster_for: Callable[[str], ClusterFor] | None = None,
    load_balancer: Callable[[Service], LoadBalancerSettings | None] = lambda svc: None,
) -> route_pb2.RouteConfiguration:
    """`virtual_service(host)` gives (namespace, spec) of the VS for a host, if any;
    `cluster_for(namespace)` resolves destination hosts as written in that namespace."""
    vhosts = []
    services = list(services)
    bare = bare_host_owners(services)
    for service in services:
        if service.protocol != "http":
            continue
        found = virtual_service(service.hostname)
        if found is not None and cluster_for is not None:
            vs_namespace, spec = found
            routes = http_routes(
                spec,
                cluster_for(vs_namespace),
                port=service.port,
                proxy_labels=proxy_labels or {},
                proxy_namespace=proxy_namespace,
            )
        else:
            routes = [default_route(names.outbound_cluster(service.key, service.port))]
        hashing = hash_policies(load_balancer(service))
        for r in routes:
            if hashing and r.HasField("route"):
                r.route.hash_policy.extend(hashing)
        vhosts.append(
            route_components_pb2.VirtualHost(
                name=names.outbound_vhost(service.hostname, service.port),
                domains=domains_for(service, proxy_namespace, service.key in bare),
                routes=routes,
            )
        )
    return route_pb2.RouteConfiguration(
        name=names.outbound_route(proxy_namespace),
        virtual_hosts=vhosts,
        validate_clusters={"value": False},
    )
