"""Writing a workload into the Consul catalog, the one way meshctl does it.

A WorkloadGroup is Istio's template for VM workloads: istiod makes a
WorkloadEntry from it when a VM's proxy connects. Here a workload joins by
registering in the catalog, so `meshctl register --workload-group` takes the
group's template instead: its namespace, service account and labels. The
instance is then a catalog instance like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api.catalog import DEFAULT_SERVICE_ACCOUNT, CatalogError

if TYPE_CHECKING:
    from api.networking.workload_entry import WorkloadGroupSpec

__all__ = [
    "PROMETHEUS_PORT_META",
    "FromGroup",
    "from_group",
    "read_group",
    "register",
    "with_stats",
]

# The instance meta key naming the port of its sidecar's /stats/prometheus (at the
# instance's address): Galley's dashboard scrapes it. (Pilot reads every meta key that
# api.catalog does not reserve as a label, so it is one too; no selector names it.)
PROMETHEUS_PORT_META = "prometheus_port"


def with_stats(body: dict[str, Any], stats_port: int | None) -> dict[str, Any]:
    """The registration body with its sidecar's stats port in the meta (None: unchanged)."""
    if stats_port is None:
        return body
    if not 1 <= stats_port <= 65535:
        raise CatalogError(f"stats port {stats_port}: must be within 1..65535")
    return {**body, "Meta": {**body["Meta"], PROMETHEUS_PORT_META: str(stats_port)}}


def register(host: str, port: int, body: dict[str, Any]) -> None:
    """PUT /v1/agent/service/register with a body from `api.catalog.registration_payload`."""
    import consul  # on use: the CLI's other commands start faster without it

    consul.Consul(host=host, port=port).agent.service.register(
        body["Name"],
        service_id=body["ID"],
        address=body["Address"],
        port=body["Port"],
        tags=body["Tags"],
        meta=body["Meta"],
        check=body.get("Check"),
    )


def read_group(host: str, port: int, namespace: str, name: str) -> WorkloadGroupSpec:
    """The WorkloadGroup Galley stored in Consul KV, validated again as Pilot reads config."""
    # Here, not at the top: every meshctl command imports this module.
    import consul

    from api.networking.workload_entry import WorkloadGroupSpec
    from api.store import StoredResource, decode, key_for

    key = key_for("WorkloadGroup", namespace, name)
    _, item = consul.Consul(host=host, port=port).kv.get(key)
    if item is None:
        raise CatalogError(f"WorkloadGroup {namespace}/{name} is not in the mesh config")
    decoded = decode(key, item.get("Value"), int(item.get("ModifyIndex") or 0))
    if not isinstance(decoded, StoredResource):
        issues = "; ".join(str(i) for i in decoded.errors)
        raise CatalogError(f"WorkloadGroup {namespace}/{name} is not valid: {issues}")
    return decoded.resource.spec_as(WorkloadGroupSpec)


@dataclass(frozen=True, slots=True)
class FromGroup:
    """What a registration takes from its WorkloadGroup."""

    service_account: str
    labels: dict[str, str]


def from_group(
    group: WorkloadGroupSpec, service_account: str, labels: Mapping[str, str]
) -> FromGroup:
    """Istio's precedence for an entry made from a group: the workload's own labels over
    the group's metadata labels over the template's; the template's service account, which
    the workload may leave at the default but not contradict."""
    template = group.template
    if template is None:  # refused by validation: a stored group always has one
        raise CatalogError("the WorkloadGroup has no template")
    account = template.service_account or service_account
    if service_account not in (DEFAULT_SERVICE_ACCOUNT, account):
        raise CatalogError(
            f"service account {service_account!r}: the WorkloadGroup's template says {account!r}"
        )
    meta = group.metadata.labels if group.metadata is not None else None
    return FromGroup(account, {**(template.labels or {}), **(meta or {}), **labels})
