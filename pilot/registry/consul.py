"""Watch the Consul catalog with blocking queries.

One blocking query follows the service list; one per service follows its
passing instances. A query that returns with the same index, or with the
same instances, changes nothing and pushes nothing. When Consul is down the
last known catalog stays in force and the watches retry with backoff; when
its index goes backwards (a restarted agent) they start over from zero.
With several Consul addresses, a failed query moves every watch to the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import consul
import consul.aio

from api.catalog import Instance, instance_from_health_entry
from api.consul_endpoints import ConsulEndpoints
from pilot.metrics import Metrics
from pilot.registry import OnChange

__all__ = ["CONSUL_ERRORS", "ConsulRegistry"]

log = logging.getLogger(__name__)

_IGNORED_SERVICES = frozenset({"consul"})
# What a dead, restarting or overloaded Consul looks like from here.
CONSUL_ERRORS = (
    consul.ConsulException,
    aiohttp.ClientError,
    OSError,
    asyncio.TimeoutError,
    ValueError,
)


def _next_index(old: int, new: Any) -> int:
    """Consul's rules: an index that goes backwards, or isn't positive, resets."""
    try:
        idx = int(new)
    except (TypeError, ValueError):
        return 0
    if idx <= 0 or idx < old:
        return 0
    return idx


class ConsulRegistry:
    def __init__(
        self,
        consul_addrs: str,
        on_change: OnChange,
        metrics: Metrics,
        *,
        wait: str = "55s",
        retry_max: float = 5.0,
    ) -> None:
        self._consul = ConsulEndpoints.parse(consul_addrs, connections_limit=100_000)
        self._on_change = on_change
        self._metrics = metrics
        self._wait = wait
        self._retry_max = retry_max
        self._instances: dict[str, tuple[Instance, ...]] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self.synced = asyncio.Event()  # set once the first full catalog read is done

    def instances(self) -> Mapping[str, tuple[Instance, ...]]:
        return self._instances

    async def run(self) -> None:
        try:
            await self._watch_services()
        finally:
            for task in self._watchers.values():
                task.cancel()
            await asyncio.gather(*self._watchers.values(), return_exceptions=True)
            await self._consul.close()

    async def _backoff(self, delay: float, what: str, err: BaseException) -> float:
        self._metrics.registry_errors.inc()
        log.warning(
            "consul %s failed (%s); keeping the last known catalog, retrying in %.1fs",
            what,
            err or type(err).__name__,
            delay,
        )
        await asyncio.sleep(delay)
        return min(delay * 2, self._retry_max)

    async def _watch_services(self) -> None:
        index, delay = 0, 0.25
        while True:
            client = self._consul.client()
            try:
                new_index, services = await client.catalog.services(
                    index=index or None, wait=self._wait
                )
            except CONSUL_ERRORS as err:
                self._consul.failed(client, err)
                delay = await self._backoff(delay, "service list", err)
                continue
            delay = 0.25
            idx = _next_index(index, new_index)
            if index and idx == index:
                continue
            index = idx
            names = {n for n in services if n not in _IGNORED_SERVICES}
            await self._reconcile(names)

    async def _reconcile(self, names: set[str]) -> None:
        gone = [n for n in self._watchers if n not in names]
        for name in gone:
            self._watchers.pop(name).cancel()
            if self._instances.pop(name, None) is not None:
                self._changed(f"service {name} removed")
        new = [n for n in sorted(names) if n not in self._watchers]
        if not self.synced.is_set():
            # First sync: read every service once before announcing, so the
            # first snapshot is whole rather than built service by service.
            results = await asyncio.gather(*(self._read(n, 0) for n in new))
            for name, (index, instances) in zip(new, results, strict=True):
                self._store(name, instances)
                self._watchers[name] = asyncio.create_task(self._watch_service(name, index))
            self._changed("initial catalog")
        else:
            for name in new:
                self._watchers[name] = asyncio.create_task(self._watch_service(name, 0))
        self.synced.set()

    async def _read(self, name: str, index: int) -> tuple[int, tuple[Instance, ...] | None]:
        """One (blocking) read of a service's passing instances; None on failure."""
        client = self._consul.client()
        try:
            new_index, entries = await client.health.service(
                name, index=index or None, wait=self._wait, passing=True
            )
        except CONSUL_ERRORS as err:
            self._consul.failed(client, err)
            self._metrics.registry_errors.inc()
            log.warning("consul health query for %s failed: %s", name, err or type(err).__name__)
            return index, None
        found = (instance_from_health_entry(e) for e in entries or ())
        instances = tuple(sorted((i for i in found if i is not None), key=Instance.sort_key))
        return _next_index(index, new_index), instances

    def _store(self, name: str, instances: tuple[Instance, ...] | None) -> bool:
        if instances is None or self._instances.get(name, ()) == instances:
            return False
        if instances:
            self._instances[name] = instances
        else:
            self._instances.pop(name, None)
        return True

    async def _watch_service(self, name: str, index: int) -> None:
        delay = 0.25
        while True:
            new_index, instances = await self._read(name, index)
            if instances is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            delay = 0.25
            unchanged_index = index and new_index == index
            index = new_index
            if not unchanged_index and self._store(name, instances):
                self._changed(f"service {name} instances")

    def _changed(self, reason: str) -> None:
        self._metrics.registry_events.inc()
        self._on_change(reason)
