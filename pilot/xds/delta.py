"""Delta (incremental) ADS: send each proxy only the resources that changed.

Per stream and type the server remembers what the proxy has (name →
version); a push sends resources whose version differs and names that are
gone. A NACKed response is forgotten, so the next push sends it again. As
with SotW, a cluster sent through CDS is always followed by its endpoints,
changed or not: Envoy keeps an updated cluster warming until they arrive.
The generators, the PushContext and the resource bytes are the same as
SotW's; only the bookkeeping differs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from pilot.metrics import Metrics
from pilot.model import Proxy
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.generator import Generator
from pilot.xds.resource import Resource, encode_delta_response

__all__ = ["DELTA_METHOD", "DeltaServer"]

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
DELTA_METHOD = f"/{ADS_SERVICE}/DeltaAggregatedResources"


@dataclass(slots=True)
class DeltaWatch:
    wildcard: bool
    names: set[str] = field(default_factory=set)
    known: dict[str, str] = field(default_factory=dict)  # what the proxy has: name -> version
    pending: dict[str, list[str]] = field(default_factory=dict)  # nonce -> names it carried
    nonce_sent: str = ""
    acked: bool = True
    nack: str | None = None


@dataclass(slots=True)
class DeltaConnection:
    id: str
    peer: str
    proxy: Proxy
    connected_at: float
    watches: dict[str, DeltaWatch] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pending: Change | None = None
    nacks: int = 0

    def status(self) -> dict[str, Any]:
        return {
            "proxy": self.proxy.id,
            "connection": self.id,
            "peer": self.peer,
            "delta": True,
            "service": self.proxy.service,
            "namespace": self.proxy.namespace,
            "connected_seconds": round(time.monotonic() - self.connected_at, 1),
            "nacks": self.nacks,
            "types": {
                typeurls.SHORT.get(t, t): {
                    "names": len(w.known),
                    # Delta has no set version: SYNCED means the last response was ACKed.
                    "version_sent": w.nonce_sent,
                    "version_acked": w.nonce_sent if w.acked else "",
                    "nack": w.nack,
                }
                for t, w in self.watches.items()
            },
        }


class DeltaServer:
    def __init__(self, generators: Sequence[Generator], metrics: Metrics, context: Any) -> None:
        self.generators = {g.type_url: g for g in generators}
        self._order = [t for t in typeurls.PUSH_ORDER if t in self.generators]
        self._metrics = metrics
        self._sotw = context  # the SotW server: owns the current PushContext
        self._ids = itertools.count(1)
        self._nonces = itertools.count(1)
        self.connections: dict[str, DeltaConnection] = {}

    def rpc_handler(self) -> grpc.RpcMethodHandler:
        return grpc.stream_stream_rpc_method_handler(
            self._stream, request_deserializer=None, response_serializer=None
        )

    def publish(self, change: Change) -> None:
        for conn in self.connections.values():
            conn.pending = change if conn.pending is None else conn.pending.merge(change)
            conn.wake.set()

    @property
    def _ctx(self) -> PushContext | None:
        return self._sotw.context  # type: ignore[no-any-return]

    async def _stream(self, _requests: object, context: grpc.aio.ServicerContext) -> None:
        conn: DeltaConnection | None = None
        pusher: asyncio.Task[None] | None = None
        try:
            while True:
                raw = await context.read()
                if raw is grpc.aio.EOF:
                    return
                try:
                    req = discovery_pb2.DeltaDiscoveryRequest.FromString(raw)
                except DecodeError:
                    self._metrics.rejected_requests.inc()
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "malformed DeltaDiscoveryRequest"
                    )
                    return
                if conn is None:
                    if not req.node.id:
                        self._metrics.rejected_requests.inc()
                        await context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            "the first request on a stream must carry node.id",
                        )
                        return
                    meta = (
                        json_format.MessageToDict(req.node.metadata)
                        if req.node.HasField("metadata")
                        else {}
                    )
                    proxy = Proxy.from_node(req.node.id, req.node.cluster, meta)
                    conn = DeltaConnection(
                        f"{proxy.id}-d{next(self._ids)}",
                        context.peer() or "",
                        proxy,
                        time.monotonic(),
                    )
                    self.connections[conn.id] = conn
                    self._metrics.connected.inc()
                    pusher = asyncio.create_task(self._pusher(conn, context))
                async with conn.lock:
                    await self._on_request(conn, req, context)
        except (grpc.aio.AioRpcError, ConnectionError):
            log.debug("delta ADS stream ended", exc_info=True)
        finally:
            if pusher is not None:
                pusher.cancel()
            if conn is not None:
                self.connections.pop(conn.id, None)
                self._metrics.connected.dec()

    async def _pusher(self, conn: DeltaConnection, context: grpc.aio.ServicerContext) -> None:
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            async with conn.lock:
                change, conn.pending = conn.pending, None
                if change is None or self._ctx is None:
                    continue
                try:
                    await self._push(conn, context, change)
                except (asyncio.CancelledError, grpc.aio.AioRpcError, ConnectionError):
                    raise
                except Exception:
                    self._metrics.push_errors.inc()
                    log.exception("delta push to %s failed; its last config stays", conn.proxy.id)

    async def _on_request(
        self,
        conn: DeltaConnection,
        req: discovery_pb2.DeltaDiscoveryRequest,
        context: grpc.aio.ServicerContext,
    ) -> None:
        type_url = req.type_url
        short = typeurls.SHORT.get(type_url, type_url)
        watch = conn.watches.get(type_url)
        subscribe, unsubscribe = (
            set(req.resource_names_subscribe),
            set(req.resource_names_unsubscribe),
        )
        if watch is None:
            wildcard = type_url in typeurls.WILDCARD_TYPES and (not subscribe or "*" in subscribe)
            watch = conn.watches[type_url] = DeltaWatch(
                wildcard=wildcard, known=dict(req.initial_resource_versions)
            )
        if req.response_nonce:
            names = watch.pending.pop(req.response_nonce, None)
            if req.HasField("error_detail"):
                conn.nacks += 1
                watch.nack = req.error_detail.message
                watch.acked = False
                self._metrics.nacks.labels(short).inc()
                log.warning("proxy %s NACKed delta %s: %s", conn.proxy.id, short, watch.nack)
                for name in names or []:  # not applied: send it again next time
                    watch.known.pop(name, None)
                return
            if req.response_nonce == watch.nonce_sent:
                watch.acked, watch.nack = True, None
        if "*" in subscribe:
            watch.wildcard = True
        watch.names |= subscribe - {"*"}
        watch.names -= unsubscribe
        for name in unsubscribe:
            watch.known.pop(name, None)
        new_names = subscribe - {"*"}
        if (req.response_nonce and not new_names) or type_url not in self.generators:
            return  # an ACK, or a type we don't serve
        if self._ctx is not None:
            await self._send(conn, context, type_url, force=new_names)

    def _current(
        self, conn: DeltaConnection, type_url: str, watch: DeltaWatch, only: frozenset[str] | None
    ) -> list[Resource]:
        ctx = self._ctx
        assert ctx is not None
        if only is not None:  # an endpoint-only push: just the clusters that changed
            return self.generators[type_url].generate(
                ctx, conn.proxy, frozenset(watch.names & only), None
            )
        names = frozenset() if watch.wildcard else frozenset(watch.names)
        return self.generators[type_url].generate(ctx, conn.proxy, names, None)

    async def _send(
        self,
        conn: DeltaConnection,
        context: grpc.aio.ServicerContext,
        type_url: str,
        force: set[str] | frozenset[str] = frozenset(),
        only: frozenset[str] | None = None,
    ) -> list[str]:
        """Send what changed (plus `force`d names); returns the names sent."""
        watch = conn.watches[type_url]
        current = self._current(conn, type_url, watch, only)
        changed = [r for r in current if watch.known.get(r.name) != r.version or r.name in force]
        removed: list[str] = []
        if only is None:
            present = {r.name for r in current}
            removed = [n for n in watch.known if n not in present]
        if not changed and not removed:
            return []
        ctx = self._ctx
        assert ctx is not None

        def encode() -> tuple[str, bytes]:
            nonce = f"d{next(self._nonces)}"
            return nonce, encode_delta_response("", type_url, nonce, changed, removed)

        # Proxies that need the same change share the encoded bytes (and the nonce).
        key = ("delta", type_url, tuple(id(r) for r in changed), tuple(removed))
        nonce, body = ctx.memo(key, encode)
        await context.write(body)
        for r in changed:
            watch.known[r.name] = r.version
        for name in removed:
            watch.known.pop(name, None)
        watch.pending[nonce] = [r.name for r in changed]
        if len(watch.pending) > 64:
            watch.pending.pop(next(iter(watch.pending)))
        watch.nonce_sent, watch.acked = nonce, False
        short = typeurls.SHORT.get(type_url, type_url)
        self._metrics.pushes.labels(short).inc()
        self._metrics.push_bytes.labels(short).inc(len(body))
        return [r.name for r in changed]

    async def _push(
        self, conn: DeltaConnection, context: grpc.aio.ServicerContext, change: Change
    ) -> None:
        sent_clusters: list[str] = []
        for type_url in self._order:
            if type_url not in conn.watches:
                continue
            force = frozenset(sent_clusters) if type_url == typeurls.ENDPOINT else frozenset()
            if not change.full and type_url != typeurls.ENDPOINT:
                continue
            only = None if change.full else change.endpoints
            sent = await self._send(conn, context, type_url, force, only)
            if type_url == typeurls.CLUSTER:
                sent_clusters = sent
