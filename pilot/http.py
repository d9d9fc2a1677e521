"""Pilot's HTTP side: Prometheus /metrics, health, and istiod-style debug pages.

- ``/healthz``                   200 while the process serves
- ``/ready``                     200 once the first snapshot is published
- ``/metrics``                   Prometheus text format
- ``/debug/syncz``               connected proxies and, per xDS type, what was
                                 sent, ACKed or NACKed
- ``/debug/config_dump?proxy=ID`` the resources Pilot would send that proxy now
- ``POST /debug/plan``           what a config change would do to each connected proxy,
                                 checked by Envoy (see pilot/plan.py)
- ``/debug/conflicts``           config left out because older config claims the
                                 same thing or because it breaks the build, and
                                 anything the consistency check withheld
- ``/debug/config_status[?resource=KIND/NS/NAME]`` per config resource, the proxies that
                                 ACKed, NACKed (with Envoy's error) or have yet to apply it
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pilot import config_status
from pilot.plan import Planner
from pilot.xds import typeurls

if TYPE_CHECKING:
    from pilot.app import Pilot

__all__ = ["DebugServer"]


class DebugServer:
    def __init__(self, pilot: Pilot) -> None:
        self._pilot = pilot
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/debug/syncz", self._syncz)
        app.router.add_get("/debug/config_dump", self._config_dump)
        app.router.add_get("/debug/conflicts", self._conflicts)
        app.router.add_get("/debug/config_status", self._config_status)
        app.router.add_post("/debug/plan", Planner(pilot).handle)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self, host: str, port: int) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_port=False)
        await site.start()
        server = site._server  # aiohttp exposes no public accessor for the bound port
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _ready(self, _: web.Request) -> web.Response:
        if self._pilot.ready.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="waiting for the first catalog snapshot\n")

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._pilot.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _syncz(self, _: web.Request) -> web.Response:
        snapshot = self._pilot.snapshot
        body = {
            "snapshot": snapshot.version if snapshot else None,
            "proxies": self._pilot.ads.status(),
        }
        return web.json_response(body)

    async def _conflicts(self, _: web.Request) -> web.Response:
        snapshot = self._pilot.snapshot
        if snapshot is None:
            return web.json_response({"error": "no snapshot yet"}, status=503)
        return web.json_response(
            {
                "snapshot": snapshot.version,
                "rule": "the oldest resource wins (lowest Consul CreateIndex)",
                "conflicts": [c.to_dict() for c in snapshot.conflicts],
                "withheld": list(snapshot.withheld),
            }
        )

    async def _config_status(self, request: web.Request) -> web.Response:
        resource = request.query.get("resource")
        status, body = config_status.answer(self._pilot.ads.config_status, resource)
        return web.json_response(body, status=status)

    async def _config_dump(self, request: web.Request) -> web.Response:
        proxy_id = request.query.get("proxy", "")
        ads = self._pilot.ads
        conn = next((c for c in ads.connections.values() if c.proxy.id == proxy_id), None)
        if conn is None:
            return web.json_response({"error": f"no connected proxy {proxy_id!r}"}, status=404)
        ctx = ads.context
        if ctx is None:
            return web.json_response({"error": "no snapshot yet"}, status=503)
        dump: dict[str, Any] = {}
        for type_url, gen in ads.generators.items():
            watch = conn.watches.get(type_url)
            if watch is None:
                continue
            resources = gen.generate(ctx, conn.proxy, frozenset(watch.names), None)
            message = typeurls.MESSAGES[type_url]
            dump[typeurls.SHORT[type_url]] = [
                json_format.MessageToDict(message.FromString(r.value_bytes)) for r in resources
            ]
        return web.json_response(dump)
