"""Watch Galley's config in Consul KV with one blocking query on the prefix.

Each stored value is validated again as it is read: a value that is not
valid config (written by hand, or by an older Galley) is logged, counted and
left out, never sent to Envoy. When Consul is down the last config stays;
with several Consul addresses the watch moves to the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from api.consul_endpoints import ConsulEndpoints
from api.resources import Resource
from api.store import PREFIX, StoredResource, decode
from pilot.metrics import Metrics
from pilot.registry import OnChange

__all__ = ["ConsulConfigSource"]

log = logging.getLogger(__name__)


class ConsulConfigSource:
    def __init__(
        self,
        consul_addrs: str,
        on_change: OnChange,
        metrics: Metrics,
        *,
        wait: str = "55s",
        retry_max: float = 5.0,
    ) -> None:
        self._consul = ConsulEndpoints.parse(consul_addrs)
        self._on_change = on_change
        self._metrics = metrics
        self._wait = wait
        self._retry_max = retry_max
        self._resources: tuple[Resource, ...] = ()
        self._raw: dict[str, int] = {}  # key -> ModifyIndex of what we hold
        self.synced = asyncio.Event()

    def resources(self) -> Sequence[Resource]:
        return self._resources

    async def run(self) -> None:
        try:
            await self._consul.watch_prefix(
                PREFIX, self._load, self._failed, wait=self._wait, retry_max=self._retry_max
            )
        finally:
            await self._consul.close()

    def _failed(self, err: BaseException, delay: float) -> None:
        self._metrics.registry_errors.inc()
        log.warning(
            "consul config watch failed (%s); keeping the last config, retrying in %.1fs",
            err or type(err).__name__,
            delay,
        )

    def _load(self, items: list[dict[str, object]]) -> None:
        versions = {str(i["Key"]): int(str(i["ModifyIndex"])) for i in items}
        if versions == self._raw and self.synced.is_set():
            return
        resources = []
        for item in items:
            key = str(item["Key"])
            created = int(str(item.get("CreateIndex") or 0))
            decoded = decode(key, item.get("Value"), versions[key], created)  # type: ignore[arg-type]
            if isinstance(decoded, StoredResource):
                resources.append(decoded.resource)
            else:
                self._metrics.config_invalid.inc()
                log.error(
                    "ignoring invalid config at %s: %s",
                    key,
                    "; ".join(str(i) for i in decoded.issues),
                )
        self._raw = versions
        self._resources = tuple(sorted(resources, key=lambda r: r.key))
        first = not self.synced.is_set()
        self.synced.set()
        self._on_change("initial config" if first else "config")
