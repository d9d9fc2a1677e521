"""The ADS server (State of the World) over grpc.aio.

Transport only: the ACK/NACK rule is `ack.decide`, the config comes from the
generators and the current `PushContext`. Responses are bytes assembled from
pre-serialized resources and written through a generic handler, so nothing
is re-serialized per stream.

Each stream handles its requests as it reads them and has a pusher task
that `publish` wakes; a lock per connection keeps the two apart. Pushes to
a slow stream collapse into one (latest wins).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from api import xds_ack as ack
from pilot.metrics import Metrics
from pilot.model import Proxy
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.delta import DeltaServer
from pilot.xds.generator import Generator
from pilot.xds.resource import encode_response, set_version
from pilot.xds.wire import NameSets, split_names

__all__ = ["ADS_METHOD", "AdsServer", "Connection"]

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
ADS_METHOD = f"/{ADS_SERVICE}/StreamAggregatedResources"


@dataclass(slots=True)
class Connection:
    """One ADS stream: who it is, what it watches, what it was sent."""

    id: str
    peer: str
    proxy: Proxy
    connected_at: float
    watches: dict[str, ack.Watch] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set when a push pends
    pending: Change | None = None
    # nonce -> when the change it carries was first seen, for convergence time
    inflight: dict[str, float] = field(default_factory=dict)
    nacks: int = 0
    last_nack: str | None = None

    def status(self) -> dict[str, Any]:
        return {
            "proxy": self.proxy.id,
            "connection": self.id,
            "peer": self.peer,
            "service": self.proxy.service,
            "namespace": self.proxy.namespace,
            "connected_seconds": round(time.monotonic() - self.connected_at, 1),
            "nacks": self.nacks,
            "last_nack": self.last_nack,
            "types": {
                typeurls.SHORT.get(t, t): {
                    "names": len(w.names),
                    "version_sent": w.version_sent,
                    "version_acked": w.version_acked,
                    "nonce_sent": w.nonce_sent,
                    "nack": w.nack,
                }
                for t, w in self.watches.items()
            },
        }


class AdsServer:
    def __init__(
        self,
        generators: Sequence[Generator],
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.generators: dict[str, Generator] = {g.type_url: g for g in generators}
        self._order = [t for t in typeurls.PUSH_ORDER if t in self.generators]
        self._metrics = metrics
        self._clock = clock
        self._ctx: PushContext | None = None
        self._conn_ids = itertools.count(1)
        self._nonces = itertools.count(1)
        self._names = NameSets()
        self.connections: dict[str, Connection] = {}
        self.delta = DeltaServer(generators, metrics, self)

    # --- wiring ---

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        handler = grpc.stream_stream_rpc_method_handler(
            self._stream, request_deserializer=None, response_serializer=None
        )
        return grpc.method_handlers_generic_handler(
            ADS_SERVICE,
            {
                "StreamAggregatedResources": handler,
                "DeltaAggregatedResources": self.delta.rpc_handler(),
            },
        )

    @property
    def context(self) -> PushContext | None:
        return self._ctx

    def publish(self, ctx: PushContext, change: Change) -> None:
        """Make ctx current and hand the change to every connection's pusher."""
        self._ctx = ctx
        self.delta.publish(change)
        for conn in self.connections.values():
            conn.pending = change if conn.pending is None else conn.pending.merge(change)
            conn.wake.set()

    # --- one stream ---

    async def _stream(self, _requests: object, context: grpc.aio.ServicerContext) -> None:
        """Requests are handled as they are read (so a flood of ACKs is flow-controlled
        by gRPC instead of queueing here); pushes run in a task of their own. The
        connection's lock keeps the two from interleaving writes or state."""
        conn: Connection | None = None
        pusher: asyncio.Task[None] | None = None
        try:
            while True:
                raw = await context.read()
                if raw is grpc.aio.EOF:
                    return
                parsed = self._parse(raw, first=conn is None)
                if parsed is None:
                    self._metrics.rejected_requests.inc()
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "malformed DiscoveryRequest"
                    )
                    return
                request, names = parsed
                if conn is None:
                    if not request.HasField("node") or not request.node.id:
                        self._metrics.rejected_requests.inc()
                        await context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            "the first DiscoveryRequest on a stream must carry node.id",
                        )
                        return
                    conn = self._connect(request, context)
                    pusher = asyncio.create_task(self._pusher(conn, context))
                async with conn.lock:
                    await self._on_request(conn, request, names, context)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AbortError:
            raise
        except (grpc.aio.AioRpcError, ConnectionError):
            log.debug("ADS stream ended", exc_info=True)
        except Exception:  # a bug must not take the server with it, but must be seen
            log.exception("ADS stream for %s failed", conn.proxy.id if conn else "unknown proxy")
        finally:
            if pusher is not None:
                pusher.cancel()
            if conn is not None:
                self.connections.pop(conn.id, None)
                self._metrics.connected.dec()
                log.info("proxy %s disconnected", conn.proxy.id)

    async def _pusher(self, conn: Connection, context: grpc.aio.ServicerContext) -> None:
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            async with conn.lock:
                try:
                    await self._push(conn, context)
                except (asyncio.CancelledError, grpc.aio.AioRpcError, ConnectionError):
                    raise
                except Exception:  # keep what the proxy has; a later push may succeed
                    self._metrics.push_errors.inc()
                    log.exception("push to %s failed; its last config stays", conn.proxy.id)

    def _parse(
        self, raw: bytes, first: bool
    ) -> tuple[discovery_pb2.DiscoveryRequest, frozenset[str]] | None:
        try:
            split = None if first else split_names(raw)
            if split is not None:
                names = self._names.from_wire(split[1])
                if names is not None:
                    return discovery_pb2.DiscoveryRequest.FromString(split[0]), names
            request = discovery_pb2.DiscoveryRequest.FromString(raw)
        except (DecodeError, TypeError):
            return None
        return request, self._names.intern(request.resource_names)

    def _connect(
        self, request: discovery_pb2.DiscoveryRequest, context: grpc.aio.ServicerContext
    ) -> Connection:
        node = request.node
        metadata = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
        proxy = Proxy.from_node(node.id, node.cluster, metadata)
        conn = Connection(
            id=f"{node.id}-{next(self._conn_ids)}",
            peer=context.peer() or "",
            proxy=proxy,
            connected_at=time.monotonic(),
        )
        self.connections[conn.id] = conn
        self._metrics.connected.inc()
        log.info(
            "proxy %s connected (service %s.%s) from %s",
            proxy.id,
            proxy.service,
            proxy.namespace,
            conn.peer,
        )
        return conn

    async def _on_request(
        self,
        conn: Connection,
        request: discovery_pb2.DiscoveryRequest,
        names: frozenset[str],
        context: grpc.aio.ServicerContext,
    ) -> None:
        type_url = request.type_url
        req = ack.Request(
            type_url=type_url,
            names=names,
            version_info=request.version_info,
            response_nonce=request.response_nonce,
            error_detail=request.error_detail.message if request.HasField("error_detail") else None,
        )
        decision = ack.decide(conn.watches.get(type_url), req)
        conn.watches[type_url] = decision.watch
        short = typeurls.SHORT.get(type_url, type_url)
        if decision.reason is ack.Reason.NACK:
            conn.nacks += 1
            conn.last_nack = f"{short}: {req.error_detail}"
            self._metrics.nacks.labels(short).inc()
            conn.inflight.pop(req.response_nonce, None)
            log.warning(
                "proxy %s NACKed %s version %s: %s",
                conn.proxy.id,
                short,
                decision.watch.version_sent,
                req.error_detail,
            )
            return
        if decision.reason in (ack.Reason.ACK, ack.Reason.ACK_NEW_NAMES):
            started = conn.inflight.pop(req.response_nonce, 0.0)
            if started:
                self._metrics.convergence.observe(max(0.0, self._clock() - started))
        if not decision.respond or type_url not in self.generators or self._ctx is None:
            return
        change = None if decision.only is None else Change(full=False, endpoints=decision.only)
        await self._send(conn, context, type_url, change)

    async def _push(self, conn: Connection, context: grpc.aio.ServicerContext) -> None:
        change, conn.pending = conn.pending, None
        if change is None or self._ctx is None:
            return
        sent_clusters = False
        for type_url in self._order:
            watch = conn.watches.get(type_url)
            if watch is None:
                continue
            gen = self.generators[type_url]
            if type_url == typeurls.ENDPOINT and sent_clusters:
                # A changed cluster warms until its endpoints arrive: always follow CDS with EDS.
                sent = await self._send(conn, context, type_url, None, change.started)
            elif not watch.nonce_sent or gen.needs_push(change, watch.names):
                narrowed = None if change.full or not watch.nonce_sent else change
                sent = await self._send(
                    conn, context, type_url, narrowed, change.started, skip_unchanged=change.full
                )
            else:
                continue
            if type_url == typeurls.CLUSTER:
                sent_clusters = sent

    async def _send(
        self,
        conn: Connection,
        context: grpc.aio.ServicerContext,
        type_url: str,
        change: Change | None,
        started: float = 0.0,
        skip_unchanged: bool = False,
    ) -> bool:
        """Generate, encode (once per identical response) and write; False if skipped."""
        ctx = self._ctx
        assert ctx is not None  # callers check; a push never precedes the first snapshot
        watch = conn.watches[type_url]
        gen = self.generators[type_url]
        memo_key = (
            "response",
            type_url,
            conn.proxy.shape,
            watch.names,
            None if change is None else change.endpoints,
        )

        def build() -> tuple[str, str, bytes]:
            resources = gen.generate(ctx, conn.proxy, watch.names, change)
            version = set_version(resources)
            nonce = f"{ctx.snapshot.version}-{next(self._nonces)}"
            return version, nonce, encode_response(version, type_url, nonce, resources)

        version, nonce, body = ctx.memo(memo_key, build)
        if skip_unchanged and watch.nonce_sent and version == watch.version_sent:
            return False
        await context.write(body)
        conn.watches[type_url] = ack.Watch(
            type_url=type_url,
            names=watch.names,
            nonce_sent=nonce,
            version_sent=version,
            version_acked=watch.version_acked,
            nack=watch.nack,
        )
        if started:
            conn.inflight[nonce] = started
            if len(conn.inflight) > 64:  # never ACKed (stale); don't grow without bound
                conn.inflight.pop(next(iter(conn.inflight)))
        short = typeurls.SHORT.get(type_url, type_url)
        self._metrics.pushes.labels(short).inc()
        self._metrics.push_bytes.labels(short).inc(len(body))
        return True
