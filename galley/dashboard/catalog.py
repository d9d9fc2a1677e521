"""The mesh's workloads as the dashboard shows them: each catalog instance, its health
and where its sidecar's stats are."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import consul.aio

from api.catalog import Instance, instance_from_health_entry
from api.consul_endpoints import ConsulEndpoints

__all__ = ["PROMETHEUS_PORT_META", "Workload", "read_catalog", "workload_of"]

# The meta key `meshctl register --stats-port`, the registrator and `meshctl up` write.
PROMETHEUS_PORT_META = "prometheus_port"


@dataclass(frozen=True, slots=True)
class Workload:
    instance: Instance
    healthy: bool  # every check passing
    stats_port: int | None

    @property
    def version(self) -> str:
        return self.instance.labels.get("version", "")

    @property
    def stats_addr(self) -> str | None:
        if self.stats_port is None:
            return None
        return f"{self.instance.address}:{self.stats_port}"


def workload_of(entry: Mapping[str, Any]) -> Workload | None:
    """One element of /v1/health/service/<name>, or None when it is no mesh workload."""
    instance = instance_from_health_entry(entry)
    if instance is None:
        return None
    checks = entry.get("Checks") or []
    healthy = all(isinstance(c, Mapping) and c.get("Status") == "passing" for c in checks)
    raw = ((entry.get("Service") or {}).get("Meta") or {}).get(PROMETHEUS_PORT_META, "")
    port = int(raw) if isinstance(raw, str) and raw.isdigit() and 0 < int(raw) < 65536 else None
    return Workload(instance, healthy, port)


async def read_catalog(endpoints: ConsulEndpoints) -> list[Workload]:
    """Every instance of every service (Consul's own `consul` service left out)."""

    async def services(c: consul.aio.Consul) -> Any:
        return await c.catalog.services()

    _, names = await endpoints.read(services)

    async def one(name: str) -> list[Workload]:
        async def health(c: consul.aio.Consul) -> Any:
            return await c.health.service(name)

        _, entries = await endpoints.read(health)
        return [w for w in (workload_of(e) for e in entries or []) if w is not None]

    found = await asyncio.gather(*(one(n) for n in sorted(names or {}) if n != "consul"))
    return sorted(
        (w for ws in found for w in ws), key=lambda w: (w.instance.service, w.instance.id)
    )
