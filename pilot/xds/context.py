"""PushContext: one snapshot's resources, built once and shared by all proxies.

Resources of a service that did not change between snapshots are carried
over as the same objects, so a push re-serializes only what changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from pilot.model import MeshSnapshot, Proxy, Service, ServiceKey
from pilot.networking import cluster, endpoint, listener, names, route
from pilot.xds import typeurls
from pilot.xds.resource import Resource, make_resource

__all__ = ["Change", "PushContext", "diff"]

T = TypeVar("T")


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


def diff(old: MeshSnapshot | None, new: MeshSnapshot, started: float = 0.0) -> Change | None:
    """The Change from old to new, or None when nothing a proxy sees changed."""
    if old is None:
        return Change(full=True, started=started)
    if old.services.keys() != new.services.keys():
        return Change(full=True, started=started)
    changed: set[str] = set()
    for key, svc in new.services.items():
        before = old.services[key]
        if (before.port, before.protocol) != (svc.port, svc.protocol):
            return Change(full=True, started=started)
        if before.instances != svc.instances:
            changed.add(names.outbound_cluster(key, svc.port))
    if not changed:
        return None
    return Change(full=False, endpoints=frozenset(changed), started=started)


@dataclass(slots=True)
class PushContext:
    snapshot: MeshSnapshot
    clusters: tuple[Resource, ...]  # outbound clusters, shared by every sidecar
    assignments: dict[str, Resource]  # EDS, by cluster name
    _by_service: dict[ServiceKey, tuple[Service, Resource, Resource]]
    _memo: dict[tuple[object, ...], object] = field(default_factory=dict)

    @classmethod
    def build(cls, snapshot: MeshSnapshot, previous: PushContext | None = None) -> PushContext:
        carried = previous._by_service if previous else {}
        by_service: dict[ServiceKey, tuple[Service, Resource, Resource]] = {}
        for key, svc in snapshot.services.items():
            old = carried.get(key)
            if old is not None and old[0] == svc:
                by_service[key] = old
                continue
            cname = names.outbound_cluster(key, svc.port)
            by_service[key] = (
                svc,
                make_resource(typeurls.CLUSTER, cname, cluster.outbound_cluster(svc)),
                make_resource(typeurls.ENDPOINT, cname, endpoint.load_assignment(svc)),
            )
        return cls(
            snapshot=snapshot,
            clusters=tuple(c for _, c, _ in by_service.values()),
            assignments={e.name: e for _, _, e in by_service.values()},
            _by_service=by_service,
        )

    def memo(self, key: tuple[object, ...], build: Callable[[], T]) -> T:
        """Compute once per context: identical inputs give the very same object."""
        try:
            return self._memo[key]  # type: ignore[return-value]
        except KeyError:
            value = self._memo[key] = build()
            return value

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
        def build() -> tuple[Resource, ...]:
            out: list[Resource] = []
            if proxy.outbound_port is not None:
                lis = listener.outbound_listener("127.0.0.1", proxy.outbound_port, proxy.namespace)
                out.append(make_resource(typeurls.LISTENER, lis.name, lis))
            if (
                proxy.inbound_port is not None
                and proxy.app_port is not None
                and proxy.inbound_port != proxy.outbound_port
            ):
                lis = listener.inbound_listener("0.0.0.0", proxy.inbound_port)
                out.append(make_resource(typeurls.LISTENER, lis.name, lis))
            return tuple(out)

        return self.memo(("listeners", *proxy.shape), build)

    def route(self, name: str) -> Resource | None:
        """RDS by name; the outbound table of namespace ns is ``outbound|http|<ns>``."""
        prefix = names.outbound_route("")
        if not name.startswith(prefix):
            return None
        namespace = name[len(prefix) :]

        def build() -> Resource:
            services = [s for s, _, _ in self._by_service.values()]
            return make_resource(
                typeurls.ROUTE, name, route.outbound_route_config(services, namespace)
            )

        return self.memo(("route", name), build)

    # --- checks before anything is served ---

    def consistent(self, namespaces: Iterable[str] = ()) -> list[str]:
        """Problems that would make Envoy reject or half-apply this config."""
        problems: list[str] = []
        cluster_names = [c.name for c in self.clusters]
        for name, count in Counter(cluster_names).items():
            if count > 1:
                problems.append(f"cluster {name} generated {count} times")
        for name in cluster_names:
            if name not in self.assignments:
                problems.append(f"EDS cluster {name} has no ClusterLoadAssignment")
        services = [s for s, _, _ in self._by_service.values()]
        for ns in set(namespaces) | {k.namespace for k in self._by_service}:
            seen: Counter[str] = Counter()
            for svc in services:
                if svc.protocol == "http":
                    seen.update(route.domains_for(svc, ns))
            problems.extend(
                f"route table {names.outbound_route(ns)}: domain {d} in {n} virtual hosts"
                for d, n in seen.items()
                if n > 1
            )
        return problems
