"""PushContext: one snapshot, indexed the way the generators ask, built once.

It holds the services (each with its clusters and load assignments already
serialized), the hosts, the Sidecar scopes and a memo; it assembles nothing
for a proxy: each xDS type's module (cds, eds, ecds, lds, rds) does that,
memoizing here so that proxies of one shape share the very same bytes.

Resources of a service whose instances and DestinationRule did not change
between snapshots are carried over as the same objects, so a push
re-serializes only what changed.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from api.networking.destination_rule import DestinationRuleSpec, Subset
from api.networking.policy import LoadBalancerSettings, TrafficPolicy
from api.networking.sidecar import SidecarSpec
from api.networking.virtual_service import VirtualServiceSpec
from pilot.config.index import ConfigIndex, fqdn
from pilot.model import MeshSnapshot, Proxy, Service, ServiceKey
from pilot.networking import (
    cluster,
    endpoint,
    names,
    route,
    telemetry,
)
from pilot.networking.traffic_policy import Policy, merged_policy
from pilot.xds import typeurls
from pilot.xds.resource import Resource, make_resource

__all__ = [
    "Change",
    "Problem",
    "PushContext",
    "ServiceResources",
    "cluster_names",
    "diff",
    "identities",
]

T = TypeVar("T")
MEMO_NAMES = 200_000
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


def _rule(config: ConfigIndex, svc: Service) -> tuple[str, DestinationRuleSpec] | None:
    """(ref, spec) of the DestinationRule in force for a service, if any."""
    dr = config.destination_rule(svc.hostname, svc.key.namespace)
    return (dr.ref, dr.spec_as(DestinationRuleSpec)) if dr is not None else None


def _subsets(config: ConfigIndex, svc: Service) -> list[Subset]:
    rule = _rule(config, svc)
    return list(rule[1].subsets or []) if rule is not None else []


def cluster_names(config: ConfigIndex, svc: Service) -> list[str]:
    """The service's default cluster and one per DestinationRule subset."""
    return [names.outbound_cluster(svc.key, svc.port)] + [
        names.outbound_cluster(svc.key, svc.port, s.name or "") for s in _subsets(config, svc)
    ]


def identities(svc: Service) -> frozenset[tuple[str, str]]:
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
            if identities(before) != identities(svc):  # SAN matchers live in CDS
                return Change(full=True, started=started)
            changed.update(cluster_names(new.config, svc))
    if not changed:
        return None
    return Change(full=False, endpoints=frozenset(changed), started=started)


@dataclass(frozen=True, slots=True)
class ServiceResources:
    service: Service
    rule: tuple[str, DestinationRuleSpec] | None  # (ref, spec) of the DestinationRule in force
    clusters: tuple[Resource, ...]
    assignments: tuple[Resource, ...]
    load_balancer: LoadBalancerSettings | None
    # Per cluster: (subset, subset labels, merged policy), to build its mesh-mTLS form.
    variants: tuple[tuple[str, dict[str, str], Policy], ...] = ()


def _build_service(svc: Service, config: ConfigIndex) -> ServiceResources:
    rule = _rule(config, svc)
    spec = rule[1] if rule is not None else None
    rule_policy = spec.traffic_policy if spec is not None else None
    variants: list[tuple[str, dict[str, str], TrafficPolicy | None]] = [("", {}, None)]
    variants += [
        (s.name or "", dict(s.labels or {}), s.traffic_policy)
        for s in (spec.subsets or [] if spec is not None else [])
    ]
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
    return ServiceResources(
        svc,
        rule,
        tuple(clusters),
        tuple(assignments),
        lb,
        tuple(merged),
    )


@dataclass(frozen=True, slots=True)
class PushContext:
    snapshot: MeshSnapshot
    clusters: tuple[Resource, ...]  # outbound clusters, shared by every sidecar
    assignments: Mapping[str, Resource]  # EDS, by cluster name
    services: Mapping[ServiceKey, ServiceResources]
    _by_host: Mapping[str, list[Service]]
    source_labels: bool  # does any VirtualService match on sourceLabels?
    _memo: dict[tuple[object, ...], object] = field(default_factory=dict)
    # The subscriptions memo keys hold, and their names in all: bounded, so that
    # made-up subscriptions cannot grow a context that no push replaces.
    _memo_sets: set[frozenset[str]] = field(default_factory=set)
    _memo_names: list[int] = field(default_factory=lambda: [0])

    @classmethod
    def build(cls, snapshot: MeshSnapshot, previous: PushContext | None = None) -> PushContext:
        carried = previous.services if previous else {}
        config = snapshot.config
        by_service: dict[ServiceKey, ServiceResources] = {}
        by_host: dict[str, list[Service]] = {}
        for key, svc in snapshot.services.items():
            by_host.setdefault(svc.hostname, []).append(svc)
            rule = _rule(config, svc)
            old = carried.get(key)
            if old is not None and old.service == svc and old.rule == rule:
                by_service[key] = old
            else:
                by_service[key] = _build_service(svc, config)
        source_labels = any(
            m is not None and m.source_labels
            for vs in config.of("VirtualService")
            for http in (vs.spec_as(VirtualServiceSpec).http or [])
            if http is not None
            for m in (http.match or [])
        )
        return cls(
            snapshot=snapshot,
            clusters=tuple(c for s in by_service.values() for c in s.clusters),
            assignments={e.name: e for s in by_service.values() for e in s.assignments},
            services=MappingProxyType(by_service),
            _by_host=MappingProxyType(by_host),
            source_labels=source_labels,
        )

    def memo(
        self,
        key: tuple[object, ...],
        build: Callable[[], T],
        subscription: frozenset[str] | None = None,
    ) -> T:
        """Compute once per context: identical inputs give the very same object.

        `subscription` is a name set the key carries. Past MEMO_NAMES names in
        distinct sets, results for a new set are computed and not kept: real
        proxies share a handful of subscriptions, only made-up ones are new each time."""
        try:
            return self._memo[key]  # type: ignore[return-value]
        except KeyError:
            value = build()
            if subscription and subscription not in self._memo_sets:
                if self._memo_names[0] + len(subscription) > MEMO_NAMES:
                    return value
                self._memo_sets.add(subscription)
                self._memo_names[0] += len(subscription)
            self._memo[key] = value
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

    def scope(self, proxy: Proxy) -> tuple[str, tuple[str, ...]] | None:
        """(ref, egress host patterns) of the Sidecar that narrows this proxy, if any."""
        if proxy.kind != "sidecar":
            return None
        sidecar = self.snapshot.config.sidecar_for(proxy.namespace, proxy.labels)
        if sidecar is None:
            return None
        spec = sidecar.spec_as(SidecarSpec)
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

    def scoped(self, proxy: Proxy) -> tuple[object, list[ServiceResources]]:
        """(scope key, the services this proxy may see): all of them without a Sidecar."""
        scope = self.scope(proxy)
        if scope is None:
            return None, list(self.services.values())
        key = (scope[0], proxy.namespace)
        return key, self.memo(
            ("scoped", key),
            lambda: [
                s
                for s in self.services.values()
                if self._visible(s.service, proxy.namespace, scope[1])
            ],
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

    # --- checks before anything is served ---

    def consistent(self, namespaces: Iterable[str] = ()) -> list[Problem]:
        """Problems that would make Envoy reject or half-apply this config, each with the
        services whose withholding solves it (all but the first of those involved).

        Runs on every push: counts first (in C), and looks for offenders only when a
        count is off."""
        problems: list[Problem] = []
        for key, s in self.services.items():
            if s.service.resolution != "DNS":
                for c in s.clusters:
                    if c.name not in self.assignments:
                        problems.append(
                            Problem(f"EDS cluster {c.name} has no ClusterLoadAssignment", {key})
                        )
        counts = Counter(c.name for c in self.clusters)
        for name, n in counts.items():
            if n > 1:
                keys = sorted(
                    k for k, s in self.services.items() for c in s.clusters if c.name == name
                )
                problems.append(Problem(f"cluster {name} generated {n} times", set(keys[1:])))
        services = [s.service for s in self.services.values() if s.service.protocol == "http"]
        bare = route.bare_host_owners(services)
        for ns in set(namespaces) | {k.namespace for k in self.services}:
            seen: Counter[str] = Counter()
            for svc in services:
                seen.update(route.domains_for(svc, ns, svc.key in bare))
            for d, n in seen.items():
                if n > 1:
                    keys = sorted(
                        svc.key
                        for svc in services
                        if d in route.domains_for(svc, ns, svc.key in bare)
                    )
                    problems.append(
                        Problem(
                            f"route table {names.outbound_route(ns)}: domain {d} in {n} "
                            "virtual hosts",
                            set(keys[1:]),
                        )
                    )
        return problems


@dataclass(frozen=True, slots=True)
class Problem:
    """A consistency problem and the services to withhold so that proxies never get it."""

    message: str
    services: set[ServiceKey]

    def __str__(self) -> str:
        return self.message
