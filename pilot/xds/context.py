"""PushContext: one snapshot's resources, built once and shared by all proxies.

Resources of a service whose instances and DestinationRule did not change
between snapshots are carried over as the same objects, so a push
re-serializes only what changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from envoy.config.core.v3 import extension_pb2

from pilot.config.index import ConfigIndex, fqdn
from pilot.model import MeshSnapshot, Proxy, Service, ServiceKey
from pilot.networking import (
    authz,
    cluster,
    endpoint,
    gateway,
    jwt,
    listener,
    mtls,
    names,
    route,
    telemetry,
)
from pilot.networking.protos import pack
from pilot.networking.traffic_policy import Policy, merged_policy
from pilot.xds import typeurls
from pilot.xds.resource import Resource, make_resource

__all__ = ["Change", "Problem", "PushContext", "cluster_names", "diff"]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    """What a push is about; generators decide from it whether they are concerned."""

    full: bool  # services or config changed: every type may differ
    endpoints: frozenset[str] = frozenset()  # EDS cluster names whose endpoints changed
    started: float = 0.0  # monotonic time the first event of this push was seen

    def merge(self, other: Change) -> Change:
        return Change(
            full=self.full or other.full,
            endpoints=self.endpoints | other.endpoints,
            started=min(self.started, other.started) if self.started else other.started,
        )


def _any_spec(r: Any) -> Any:
    return r.spec


def _subsets(config: ConfigIndex, svc: Service) -> list[Any]:
    dr = config.destination_rule(svc.hostname, svc.key.namespace)
    spec: Any = dr.spec if dr is not None else None
    return list(spec.subsets or []) if spec is not None else []


def cluster_names(config: ConfigIndex, svc: Service) -> list[str]:
    """The service's default cluster and one per DestinationRule subset."""
    return [names.outbound_cluster(svc.key, svc.port)] + [
        names.outbound_cluster(svc.key, svc.port, s.name) for s in _subsets(config, svc)
    ]


def _identities(svc: Service) -> frozenset[tuple[str, str]]:
    return frozenset((i.namespace, i.service_account) for i in svc.instances)


def diff(old: MeshSnapshot | None, new: MeshSnapshot, started: float = 0.0) -> Change | None:
    """The Change from old to new, or None when nothing a proxy sees changed."""
    if old is None or old.services.keys() != new.services.keys():
        return Change(full=True, started=started)
    if old.config.resources != new.config.resources or old.jwks != new.jwks:
        return Change(full=True, started=started)
    changed: set[str] = set()
    for key, svc in new.services.items():
        before = old.services[key]
        if (before.port, before.protocol, before.resolution) != (
            svc.port,
            svc.protocol,
            svc.resolution,
        ):
            return Change(full=True, started=started)
        if before.instances != svc.instances:
            if svc.resolution == "DNS":  # endpoints live in CDS for DNS clusters
                return Change(full=True, started=started)
            if _identities(before) != _identities(svc):  # SAN matchers live in CDS
                return Change(full=True, started=started)
            changed.update(cluster_names(new.config, svc))
    if not changed:
        return None
    return Change(full=False, endpoints=frozenset(changed), started=started)


@dataclass(frozen=True, slots=True)
class _ServiceResources:
    service: Service
    rule: tuple[str, Any] | None  # (ref, spec) of the DestinationRule in force
    clusters: tuple[Resource, ...]
    assignments: tuple[Resource, ...]
    load_balancer: Any
    # Per cluster: (subset, subset labels, merged policy), to build its mesh-mTLS form.
    variants: tuple[tuple[str, dict[str, str], Policy], ...] = ()


def _build_service(svc: Service, config: ConfigIndex) -> _ServiceResources:
    dr = config.destination_rule(svc.hostname, svc.key.namespace)
    spec: Any = dr.spec if dr is not None else None
    rule_policy = spec.traffic_policy if spec is not None else None
    variants: list[tuple[str, dict[str, str], Any]] = [("", {}, None)]
    variants += (
        [(s.name, dict(s.labels or {}), s.traffic_policy) for s in (spec.subsets or [])]
        if spec
        else []
    )
    clusters, assignments, merged = [], [], []
    for subset, labels, subset_policy in variants:
        name = names.outbound_cluster(svc.key, svc.port, subset)
        policy = merged_policy(rule_policy, svc.port, subset_policy)
        merged.append((subset, labels, policy))
        clusters.append(
            make_resource(
                typeurls.CLUSTER, name, cluster.outbound_cluster(svc, policy, subset, labels)
            )
        )
        if svc.resolution != "DNS":
            assignments.append(
                make_resource(
                    typeurls.ENDPOINT, name, endpoint.load_assignment(svc, subset, labels)
                )
            )
    lb = merged_policy(rule_policy, svc.port).load_balancer
    return _ServiceResources(
        svc,
        (dr.ref, spec) if dr is not None else None,
        tuple(clusters),
        tuple(assignments),
        lb,
        tuple(merged),
    )


@dataclass(slots=True)
class PushContext:
    snapshot: MeshSnapshot
    clusters: tuple[Resource, ...]  # outbound clusters, shared by every sidecar
    assignments: dict[str, Resource]  # EDS, by cluster name
    _by_service: dict[ServiceKey, _ServiceResources]
    _by_host: dict[str, list[Service]]
    _source_labels: bool  # does any VirtualService match on sourceLabels?
    _memo: dict[tuple[object, ...], object] = field(default_factory=dict)

    @classmethod
    def build(cls, snapshot: MeshSnapshot, previous: PushContext | None = None) -> PushContext:
        carried = previous._by_service if previous else {}
        config = snapshot.config
        by_service: dict[ServiceKey, _ServiceResources] = {}
        by_host: dict[str, list[Service]] = {}
        for key, svc in snapshot.services.items():
            by_host.setdefault(svc.hostname, []).append(svc)
            dr = config.destination_rule(svc.hostname, svc.key.namespace)
            rule = (dr.ref, dr.spec) if dr is not None else None
            old = carried.get(key)
            if old is not None and old.service == svc and old.rule == rule:
                by_service[key] = old
            else:
                by_service[key] = _build_service(svc, config)
        source_labels = any(
            m is not None and getattr(m, "source_labels", None)
            for vs in config.of("VirtualService")
            for rule in (_any_spec(vs).http or [])
            for m in (rule.match or [])
        )
        return cls(
            snapshot=snapshot,
            clusters=tuple(c for s in by_service.values() for c in s.clusters),
            assignments={e.name: e for s in by_service.values() for e in s.assignments},
            _by_service=by_service,
            _by_host=by_host,
            _source_labels=source_labels,
        )

    def memo(self, key: tuple[object, ...], build: Callable[[], T]) -> T:
        """Compute once per context: identical inputs give the very same object."""
        try:
            return self._memo[key]  # type: ignore[return-value]
        except KeyError:
            value = self._memo[key] = build()
            return value

    def cluster_for(self, namespace: str) -> Callable[[str, int | None, str], str]:
        """Resolve a destination host as written in `namespace` to a cluster name."""

        def resolve(host: str, port: int | None, subset: str) -> str:
            full = fqdn(host, namespace)
            candidates = self._by_host.get(full, [])
            svc = next((s for s in candidates if port in (None, s.port)), None)
            if svc is not None:
                return names.outbound_cluster(svc.key, svc.port, subset)
            # Unknown host: a name Envoy has no cluster for answers 503, as Istio's blackhole.
            return names.unknown_cluster(port, subset, full)

        return resolve

    # --- what a proxy may see: its Sidecar resource's egress hosts ---

    def scope(self, proxy: Proxy) -> tuple[str, Any] | None:
        """(ref, egress host patterns) of the Sidecar that narrows this proxy, if any."""
        if proxy.kind != "sidecar":
            return None
        sidecar = self.snapshot.config.sidecar_for(proxy.namespace, proxy.labels)
        if sidecar is None:
            return None
        spec: Any = sidecar.spec
        hosts = tuple(h for eg in (spec.egress or []) for h in (eg.hosts or []))
        return (sidecar.ref, hosts) if hosts else None

    def _visible(self, svc: Service, proxy_namespace: str, hosts: tuple[str, ...]) -> bool:
        for pattern in hosts:
            ns, _, host = pattern.partition("/")
            if ns.startswith("~"):
                continue
            if ns == ".":
                ns = proxy_namespace
            if ns != "*" and ns != svc.key.namespace:
                continue
            name = svc.hostname
            if host == "*" or host == name or (host.startswith("*.") and name.endswith(host[1:])):
                return True
        return False

    def _scoped(self, proxy: Proxy) -> tuple[object, list[_ServiceResources]]:
        scope = self.scope(proxy)
        if scope is None:
            return None, list(self._by_service.values())
        key = (scope[0], proxy.namespace)
        return key, self.memo(
            ("scoped", key),
            lambda: [
                s
                for s in self._by_service.values()
                if self._visible(s.service, proxy.namespace, scope[1])
            ],
        )

    def clusters_for(self, proxy: Proxy) -> tuple[Resource, ...]:
        return (*self._service_clusters(proxy), *self._extra_clusters())

    def _service_clusters(self, proxy: Proxy) -> tuple[Resource, ...]:
        key, services = self._scoped(proxy)
        sds = proxy.sds
        if sds is None:
            if key is None:
                return self.clusters
            return self.memo(
                ("clusters", key), lambda: tuple(c for s in services for c in s.clusters)
            )
        return self.memo(
            ("clusters", key, sds),
            lambda: tuple(
                self._mesh_tls(s, i, sds) for s in services for i in range(len(s.clusters))
            ),
        )

    def _extra_clusters(self) -> tuple[Resource, ...]:
        """Clusters the mesh config adds to every proxy (the trace collector)."""
        zipkin = self.snapshot.mesh.zipkin_addr
        if not zipkin:
            return ()
        return self.memo(
            ("zipkin",),
            lambda: (
                make_resource(
                    typeurls.CLUSTER, names.ZIPKIN_CLUSTER, telemetry.zipkin_cluster(zipkin)
                ),
            ),
        )

    def observability(self, proxy: Proxy) -> telemetry.Observability:
        mesh = self.snapshot.mesh
        return telemetry.effective(
            self.snapshot.config,
            proxy.namespace,
            proxy.labels,
            mesh.root_namespace,
            mesh.access_log_file,
            mesh.access_log_format,
            mesh.zipkin_addr,
            mesh.trace_sampling,
        )

    def _mesh_tls(self, s: _ServiceResources, index: int, sds: tuple[str, str, str]) -> Resource:
        """A cluster as an mTLS-capable proxy gets it: ISTIO_MUTUAL when the rule says so,
        automatic mTLS to instances that terminate it, unchanged otherwise."""
        subset, labels, policy = s.variants[index]
        mode = policy.tls.mode if policy.tls is not None else None
        svc = s.service
        if svc.external or mode in ("DISABLE", "SIMPLE", "MUTUAL"):
            return s.clusters[index]
        td = self.snapshot.mesh.trust_domain
        identities = tuple(mtls.spiffe_uri(td, ns, sa) for ns, sa in sorted(_identities(svc)))
        mesh = cluster.MeshTls(sds, identities, forced=mode == "ISTIO_MUTUAL")
        built = cluster.outbound_cluster(svc, policy, subset, labels, mesh)
        return make_resource(typeurls.CLUSTER, built.name, built)

    # --- resources that depend on the proxy (memoized by its shape) ---

    def inbound_cluster(self, proxy: Proxy) -> Resource | None:
        if proxy.inbound_port is None or proxy.app_port is None:
            return None
        port, app = proxy.inbound_port, proxy.app_port
        return self.memo(
            ("inbound-cluster", port, app),
            lambda: make_resource(
                typeurls.CLUSTER, names.inbound_cluster(port), cluster.inbound_cluster(port, app)
            ),
        )

    def listeners(self, proxy: Proxy) -> tuple[Resource, ...]:
        if proxy.kind == "gateway":
            return self._gateway_listeners(proxy)

        def build() -> tuple[Resource, ...]:
            out: list[Resource] = []
            if proxy.outbound_port is not None:
                lis = listener.outbound_listener(
                    "127.0.0.1", proxy.outbound_port, proxy.namespace, self.observability(proxy)
                )
                out.append(make_resource(typeurls.LISTENER, lis.name, lis))
            if (
                proxy.inbound_port is not None
                and proxy.app_port is not None
                and proxy.inbound_port != proxy.outbound_port
            ):
                mesh = self.snapshot.mesh
                mode = mtls.peer_auth_mode(
                    self.snapshot.config,
                    proxy.namespace,
                    proxy.labels,
                    proxy.app_port,
                    mesh.root_namespace,
                )
                tls = mtls.downstream_tls(proxy.sds, mesh.trust_domain) if proxy.sds else None
                if mode == "STRICT" and tls is None:
                    # No identity to terminate mTLS with: refuse rather than accept plaintext.
                    log.warning(
                        "proxy %s: STRICT mTLS but no mesh identity; no inbound listener", proxy.id
                    )
                else:
                    lis = listener.inbound_listener(
                        "0.0.0.0",
                        proxy.inbound_port,
                        mode,
                        tls,
                        self.observability(proxy),
                    )
                    out.append(make_resource(typeurls.LISTENER, lis.name, lis))
            return tuple(out)

        return self.memo(("listeners", *proxy.shape), build)

    def auth_filter_configs(self, proxy: Proxy) -> tuple[Resource, ...]:
        """ECDS: the config of each inbound authn/authz filter the inbound listener names.

        Request authentication first, then authorization (audit, deny, allow).
        """
        if proxy.kind != "sidecar" or proxy.inbound_port is None:
            return ()
        labels = frozenset(proxy.labels.items())

        def build() -> tuple[Resource, ...]:
            config, root = self.snapshot.config, self.snapshot.mesh.root_namespace
            policies = authz.applicable_policies(config, proxy.namespace, proxy.labels, root)
            authns = jwt.applicable_authentications(config, proxy.namespace, proxy.labels, root)
            configs: dict[str, Any] = {
                names.JWT_AUTHN_FILTER: jwt.jwt_config(
                    authns, authz.requires_token(policies), self.snapshot.jwks
                ),
                **authz.rbac_configs(policies, proxy.app_port),
            }
            return tuple(
                make_resource(
                    typeurls.EXTENSION_CONFIG,
                    name,
                    extension_pb2.TypedExtensionConfig(name=name, typed_config=pack(configs[name])),
                )
                for name in names.INBOUND_AUTH_FILTERS
            )

        return self.memo(("auth-filters", proxy.namespace, labels, proxy.app_port), build)

    def _gateway_listeners(self, proxy: Proxy) -> tuple[Resource, ...]:
        labels = frozenset(proxy.labels.items())

        def build() -> tuple[Resource, ...]:
            ports = gateway.servers_for(self.snapshot.config, dict(labels))
            return tuple(
                make_resource(typeurls.LISTENER, lis.name, lis)
                for lis in (
                    gateway.gateway_listener(proxy.instance_ip, p, self.observability(proxy))
                    for p in sorted(ports)
                )
            )

        return self.memo(("gateway-listeners", proxy.instance_ip, proxy.namespace, labels), build)

    def _gateway_servers(self, proxy: Proxy) -> dict[int, list[gateway.GatewayServer]]:
        labels = frozenset(proxy.labels.items())
        return self.memo(
            ("gateway-servers", labels),
            lambda: gateway.servers_for(self.snapshot.config, dict(labels)),
        )

    def _gateway_route(self, name: str, proxy: Proxy) -> Resource | None:
        servers = self._gateway_servers(proxy)
        port = next((p for p in servers if names.gateway_route(p) == name), None)
        if port is None:
            return None
        labels = frozenset(proxy.labels.items())

        def build() -> Resource | None:
            table = gateway.gateway_route_config(
                port, servers[port], self.snapshot.config, self.cluster_for
            )
            return make_resource(typeurls.ROUTE, name, table)

        return self.memo(("gateway-route", name, labels), build)

    def route(self, name: str, proxy: Proxy) -> Resource | None:
        """RDS by name: a gateway's table per port; a sidecar's outbound table, which
        its outbound listener names after the proxy's namespace."""
        if proxy.kind == "gateway":
            return self._gateway_route(name, proxy)
        if name != names.outbound_route(proxy.namespace):
            return None
        namespace = proxy.namespace
        labels = frozenset(proxy.labels.items()) if self._source_labels else frozenset()
        config = self.snapshot.config
        scope_key, scoped = self._scoped(proxy)

        def virtual_service(host: str) -> tuple[str, Any] | None:
            found = config.virtual_service(host)
            return (found[0].namespace, found[1]) if found is not None else None

        def build() -> Resource:
            services = [s.service for s in scoped]
            lbs = {s.service.key: s.load_balancer for s in scoped}
            table = route.outbound_route_config(
                services,
                namespace,
                proxy_labels=dict(labels),
                virtual_service=virtual_service,
                cluster_for=self.cluster_for,
                load_balancer=lambda svc: lbs.get(svc.key),
            )
            return make_resource(typeurls.ROUTE, name, table)

        return self.memo(("route", name, labels, scope_key), build)

    # --- checks before anything is served ---

    def consistent(self, namespaces: Iterable[str] = ()) -> list[Problem]:
        """Problems that would make Envoy reject or half-apply this config, each with the
        services whose withholding solves it (all but the first of those involved)."""
        problems: list[Problem] = []
        by_cluster: dict[str, list[ServiceKey]] = {}
        for key, s in sorted(self._by_service.items()):
            for c in s.clusters:
                by_cluster.setdefault(c.name, []).append(key)
                if s.service.resolution != "DNS" and c.name not in self.assignments:
                    problems.append(
                        Problem(f"EDS cluster {c.name} has no ClusterLoadAssignment", {key})
                    )
        problems.extend(
            Problem(f"cluster {name} generated {len(keys)} times", set(keys[1:]))
            for name, keys in by_cluster.items()
            if len(keys) > 1
        )
        services = [self._by_service[k].service for k in sorted(self._by_service)]
        bare = route.bare_host_owners(services)
        for ns in sorted(set(namespaces) | {k.namespace for k in self._by_service}):
            seen: dict[str, list[ServiceKey]] = {}
            for svc in services:
                if svc.protocol == "http":
                    for d in route.domains_for(svc, ns, svc.key in bare):
                        seen.setdefault(d, []).append(svc.key)
            problems.extend(
                Problem(
                    f"route table {names.outbound_route(ns)}: domain {d} in {len(keys)} "
                    "virtual hosts",
                    set(keys[1:]),
                )
                for d, keys in seen.items()
                if len(keys) > 1
            )
        return problems


@dataclass(frozen=True, slots=True)
class Problem:
    """A consistency problem and the services to withhold so that proxies never get it."""

    message: str
    services: set[ServiceKey]

    def __str__(self) -> str:
        return self.message
