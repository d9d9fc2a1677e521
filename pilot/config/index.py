"""ConfigIndex: the Istio resources in force, indexed the way generators ask.

Host names are resolved as Istio does: a short name in a resource means that
name in the resource's own namespace (``reviews`` in ``default`` is
``reviews.default.svc.cluster.local``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from api.analyze import fqdn
from api.networking.destination_rule import DestinationRuleSpec
from api.networking.service_entry import WorkloadEntry
from api.networking.sidecar import SidecarSpec
from api.networking.virtual_service import VirtualServiceSpec
from api.resources import Resource

__all__ = ["ConfigIndex", "fqdn", "gateway_ref", "workload_labels"]


def _dr(r: Resource) -> DestinationRuleSpec:
    return r.spec_as(DestinationRuleSpec)


def _vs(r: Resource) -> VirtualServiceSpec:
    return r.spec_as(VirtualServiceSpec)


def _host_matches(pattern: str, host: str) -> bool:
    return host.endswith(pattern[1:]) if pattern.startswith("*") else pattern == host


def workload_labels(entry: Resource) -> dict[str, str]:
    """A WorkloadEntry's labels as Istio reads them: its spec's, overlaid by its metadata's."""
    return {**(entry.spec_as(WorkloadEntry).labels or {}), **entry.labels}


def _export_tier(vs: Resource, namespace: str) -> int | None:
    """Where a VirtualService stands for proxies of `namespace` (VirtualServiceSpec.views):
    0 private to that namespace, 1 exported to it by name, 2 public; None: not seen there."""
    for ns, own in _vs(vs).views(vs.namespace):
        if ns == "*":
            return 2
        if ns == namespace:
            return 0 if own else 1
    return None


def _by_age(resources: Sequence[Resource]) -> list[Resource]:
    """Oldest first: Istio resolves conflicts by creation time, here Consul's CreateIndex
    (ties, and config that was never stored: by namespace and name)."""
    return sorted(resources, key=lambda r: (r.created, r.namespace, r.name))


@dataclass(frozen=True, slots=True)
class ConfigIndex:
    resources: tuple[Resource, ...] = ()
    _by_kind: Mapping[str, tuple[Resource, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # WorkloadEntries by namespace, by name: what a ServiceEntry's workloadSelector searches.
    _workload_entries: Mapping[str, tuple[Resource, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def build(cls, resources: Sequence[Resource]) -> ConfigIndex:
        by_kind: dict[str, list[Resource]] = {}
        for r in _by_age(resources):
            by_kind.setdefault(r.kind_id, []).append(r)
        entries: dict[str, list[Resource]] = {}
        for r in sorted(by_kind.get("WorkloadEntry", []), key=lambda r: r.name):
            entries.setdefault(r.namespace, []).append(r)
        return cls(
            tuple(resources),
            MappingProxyType({k: tuple(v) for k, v in by_kind.items()}),
            MappingProxyType({k: tuple(v) for k, v in entries.items()}),
        )

    def of(self, kind: str) -> tuple[Resource, ...]:
        """Resources of a kind, by `Resource.kind_id`, oldest first."""
        return self._by_kind.get(kind, ())

    def destination_rule(self, host: str, proxy_namespace: str) -> Resource | None:
        """The rule for a host: the proxy's namespace first, then the host's own, then any."""
        found = [
            r
            for r in self.of("DestinationRule")
            if _dr(r).workload_selector is None
            and _host_matches(fqdn(_dr(r).host or "", r.namespace), host)
        ]
        if not found:
            return None
        host_ns = host.split(".")[1] if host.count(".") >= 2 else ""
        for ns in (proxy_namespace, host_ns):
            for r in found:
                if r.namespace == ns:
                    return r
        return found[0]

    def virtual_service(
        self, host: str, gateway: str = "mesh", *, namespace: str
    ) -> tuple[Resource, VirtualServiceSpec] | None:
        """The VirtualService routing `host` for the mesh or a gateway ('ns/name') as a
        proxy of `namespace` sees it (`virtual_services`' order: the first one wins)."""
        for r in self.virtual_services(gateway, namespace):
            for h in _vs(r).hosts or []:
                if _host_matches(fqdn(h, r.namespace), host):
                    return r, _vs(r)
        return None

    def virtual_services(self, gateway: str, namespace: str) -> list[Resource]:
        """The VirtualServices bound to the mesh or a gateway ('ns/name') that a proxy of
        `namespace` sees, in Istio's order: those private to its own namespace, then those
        exported to it by name, then the public ones; oldest first within each."""
        ranked: list[tuple[int, Resource]] = []
        for r in self.of("VirtualService"):
            gateways = [gateway_ref(g, r.namespace) for g in (_vs(r).gateways or [])] or ["mesh"]
            if gateway not in gateways:
                continue
            tier = _export_tier(r, namespace)
            if tier is not None:
                ranked.append((tier, r))
        ranked.sort(key=lambda t: t[0])  # stable: age within a tier
        return [r for _, r in ranked]

    def workload_entries(self, namespace: str, selector: Mapping[str, str]) -> list[Resource]:
        """The WorkloadEntries of a namespace that carry every selector label (an empty
        selector: all of them), by name, as a ServiceEntry's workloadSelector picks them."""
        return [
            r
            for r in self._workload_entries.get(namespace, ())
            if all(workload_labels(r).get(k) == v for k, v in selector.items())
        ]

    def sidecar_for(self, namespace: str, labels: Mapping[str, str]) -> Resource | None:
        """A Sidecar whose selector matches the workload, else the namespace default."""
        default = None
        for r in self.of("Sidecar"):
            if r.namespace != namespace:
                continue
            selector = r.spec_as(SidecarSpec).workload_selector
            if selector is None or not selector.labels:
                default = default or r
            elif all(labels.get(k) == v for k, v in selector.labels.items()):
                return r
        return default


def gateway_ref(ref: str, namespace: str) -> str:
    """'mesh', 'ns/name', or a bare name meaning the resource's own namespace."""
    if ref == "mesh" or "/" in ref:
        return ref
    if "." in ref:  # the old name.namespace form
        name, _, ns = ref.partition(".")
        return f"{ns}/{name}"
    return f"{namespace}/{ref}"
