"""Reading every sidecar's stats: concurrently, with short timeouts, only while watched.

The loop scrapes every `interval` seconds while someone looked at the dashboard in
the last `idle` seconds, and does nothing otherwise. A proxy whose stats cannot be
read is recorded as such (its error), never raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from api.consul_endpoints import ConsulEndpoints
from galley.bounded import read_bounded
from galley.dashboard.catalog import Workload, read_catalog
from galley.dashboard.promtext import parse
from galley.dashboard.targets import Target
from galley.dashboard.window import WANTED, Window, snapshot

__all__ = ["ScrapeResult", "Scraper"]

log = logging.getLogger(__name__)

MAX_STATS_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    ok: bool
    error: str
    at: float  # monotonic


class Scraper:
    def __init__(
        self,
        endpoints: Callable[[], ConsulEndpoints],
        static: list[Target],
        *,
        window_s: float = 60.0,
        interval_s: float = 5.0,
        timeout_s: float = 2.0,
        idle_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoints = endpoints
        self._static = static
        self.window = Window(window_s)
        self.interval_s = interval_s
        self._timeout = timeout_s
        self._idle = idle_s
        self._clock = clock
        self._watched_at: float | None = None
        self._lock = asyncio.Lock()
        self.workloads: list[Workload] = []
        self.catalog_error = ""
        self.results: dict[str, ScrapeResult] = {}
        self.scraped_at: float | None = None

    def watched(self) -> None:
        """A page or its JSON was asked for: keep scraping for a while."""
        self._watched_at = self._clock()

    def targets(self) -> list[Target]:
        out = list(self._static)
        for w in self.workloads:
            if w.stats_addr is not None:
                i = w.instance
                out.append(
                    Target(i.service, i.namespace, w.version, i.id, w.stats_addr, healthy=w.healthy)
                )
        return out

    async def fresh(self) -> None:
        """Scrape now unless a scrape finished within the interval (or one is under way)."""
        self.watched()
        now = self._clock()
        if self.scraped_at is not None and now - self.scraped_at < self.interval_s:
            return
        await self.scrape_once()

    async def scrape_once(self) -> None:
        if self._lock.locked():  # one round at a time; a caller waits for the running one
            async with self._lock:
                return
        async with self._lock:
            try:
                self.workloads = await asyncio.wait_for(
                    read_catalog(self._endpoints()), self._timeout * 2
                )
                self.catalog_error = ""
            except Exception as err:  # Consul down: keep the last catalog, say so
                self.catalog_error = f"catalog unavailable: {err or type(err).__name__}"
                log.debug("%s", self.catalog_error)
            targets = self.targets()
            limits = aiohttp.ClientTimeout(total=self._timeout)
            async with aiohttp.ClientSession(timeout=limits) as session:
                results = await asyncio.gather(*(self._one(session, t) for t in targets))
            now = self._clock()
            self.results = dict(zip((t.instance for t in targets), results, strict=True))
            self.window.forget_older_than(now - self.window.seconds * 2)
            self.scraped_at = now

    async def _one(self, session: aiohttp.ClientSession, target: Target) -> ScrapeResult:
        try:
            async with session.get(target.url) as resp:
                if resp.status != 200:
                    return ScrapeResult(False, f"HTTP {resp.status}", self._clock())
                raw = await read_bounded(resp, MAX_STATS_BYTES)
            if raw is None:
                return ScrapeResult(False, "stats over 16 MiB", self._clock())
            text = raw.decode("utf-8", errors="replace")
            snap = await asyncio.to_thread(lambda: snapshot(parse(text, WANTED)))
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
            return ScrapeResult(False, str(err) or type(err).__name__, self._clock())
        now = self._clock()
        self.window.add(target.instance, now, snap)
        return ScrapeResult(True, "", now)

    async def run(self) -> None:
        """Scrape while watched; owned by the router's lifespan, which cancels it."""
        while True:
            watched = self._watched_at is not None and self._clock() - self._watched_at < self._idle
            if watched:
                try:
                    await self.scrape_once()
                except Exception:  # never let one bad round end the loop
                    log.exception("dashboard scrape failed")
            await asyncio.sleep(self.interval_s)
