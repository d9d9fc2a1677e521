"""The stream core shared by State-of-the-World and Delta ADS.

One `Streams` owns what both protocols need once: the current PushContext,
the connections (who each proxy is, its watches, its pending change), the
per-stream loop (read, validate the first request's node, handle, and a
pusher task that `publish` wakes), the bookkeeping and metrics of every
response written, and the push order with the "EDS follows CDS" rule.

A protocol (`Protocol`) brings only what differs: how a request is parsed,
how it is answered (its own pure ACK/NACK decision), how a push is sent and
how its watches read in the sync status. Each connection's lock keeps its
request handling and its pushes from interleaving writes or state.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import grpc
from google.protobuf import json_format

from pilot.config_status import ConfigStatus
from pilot.metrics import Metrics
from pilot.model import Proxy
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.generator import Generator

__all__ = ["Connection", "Node", "Refused", "StreamProtocol", "Streams", "push_in_order"]

log = logging.getLogger(__name__)

R = TypeVar("R")  # a protocol's parsed request
W = TypeVar("W")  # a protocol's per-type watch state


class Refused(Exception):
    """A request the stream cannot take (it would grow without bound): the stream ends
    with INVALID_ARGUMENT and this message."""


@dataclass(slots=True)
class Connection(Generic[W]):
    """One ADS stream: who it is, what it watches, what is pending for it."""

    id: str
    peer: str
    proxy: Proxy
    connected_at: float
    delta: bool
    watches: dict[str, W] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set when a push pends
    pending: Change | None = None
    # nonce -> when the change it carries was first seen, for convergence time
    inflight: dict[str, float] = field(default_factory=dict)
    nacks: int = 0
    last_nack: str | None = None


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    cluster: str
    metadata: dict[str, Any]
    locality: tuple[str, str, str] = ("", "", "")  # region, zone, sub_zone


class StreamProtocol(Protocol[R, W]):
    """What one xDS protocol adds to the core."""

    delta: bool
    name: str  # for log lines: "ADS", "delta ADS"

    def parse(self, raw: bytes, first: bool) -> R | None: ...

    def node(self, request: R) -> Node | None: ...

    async def on_request(self, conn: Connection[W], request: R, write: Writer) -> None: ...

    async def push(self, conn: Connection[W], change: Change, write: Writer) -> None: ...

    def watch_status(self, watch: W) -> dict[str, Any]: ...


# Writes one encoded response for a type and accounts for it.
Writer = Callable[[str, bytes], Awaitable[None]]


async def push_in_order(
    order: Sequence[str],
    watched: Callable[[str], bool],
    send: Callable[[str, frozenset[str] | None], Awaitable[frozenset[str] | None]],
) -> None:
    """Send each watched type in push order (CDS, EDS, ECDS, LDS, RDS).

    `send(type_url, after_clusters)` returns the names it sent, or None when it
    sent nothing. EDS gets the names CDS just sent (None if CDS sent nothing),
    because Envoy keeps a changed cluster warming until its endpoints arrive:
    a cluster update is always followed by its EDS.
    """
    sent_clusters: frozenset[str] | None = None
    for type_url in order:
        if not watched(type_url):
            continue
        after = sent_clusters if type_url == typeurls.ENDPOINT else None
        sent = await send(type_url, after)
        if type_url == typeurls.CLUSTER:
            sent_clusters = sent


class Streams:
    def __init__(
        self,
        generators: Sequence[Generator],
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        config_status: ConfigStatus | None = None,
    ) -> None:
        self.generators: dict[str, Generator] = {g.type_url: g for g in generators}
        self.order = [t for t in typeurls.PUSH_ORDER if t in self.generators]
        self.metrics = metrics
        self.clock = clock
        self.context: PushContext | None = None
        # Which proxies applied each config resource (fed by the hooks below).
        self.config_status = config_status or ConfigStatus()
        self.connections: dict[str, Connection[Any]] = {}
        self._ids = itertools.count(1)
        self._nonces = itertools.count(1)
        self.requests = 0  # read on every stream so far: how busy they are

    def nonce(self, prefix: str = "") -> str:
        return f"{prefix}{next(self._nonces)}"

    def publish(self, ctx: PushContext, change: Change) -> None:
        """Make ctx current and hand the change to every connection's pusher."""
        self.context = ctx
        for conn in self.connections.values():
            conn.pending = change if conn.pending is None else conn.pending.merge(change)
            conn.wake.set()

    def status(self, conn: Connection[Any], protocol: StreamProtocol[Any, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "proxy": conn.proxy.id,
            "connection": conn.id,
            "peer": conn.peer,
            "service": conn.proxy.service,
            "namespace": conn.proxy.namespace,
            "connected_seconds": round(time.monotonic() - conn.connected_at, 1),
            "nacks": conn.nacks,
            "last_nack": conn.last_nack,
            "types": {
                typeurls.SHORT.get(t, t): protocol.watch_status(w) for t, w in conn.watches.items()
            },
        }
        if conn.delta:
            out["delta"] = True
        return out

    def record_nack(
        self, conn: Connection[Any], type_url: str, nonce: str, error: str, version: str
    ) -> None:
        short = typeurls.SHORT.get(type_url, type_url)
        self.config_status.nacked(conn.id, type_url, nonce, error)
        conn.nacks += 1
        conn.last_nack = f"{short}: {error}"
        self.metrics.nacks.labels(short).inc()
        log.warning("proxy %s NACKed %s version %s: %s", conn.proxy.id, short, version, error)

    def record_ack(self, conn: Connection[Any], type_url: str, nonce: str) -> None:
        self.config_status.acked(conn.id, type_url, nonce)
        started = conn.inflight.pop(nonce, 0.0)
        if started:
            self.metrics.convergence.observe(max(0.0, self.clock() - started))

    def record_unsubscribe(self, conn: Connection[Any], type_url: str) -> None:
        self.config_status.unsubscribed(conn.id, type_url)

    def track(self, conn: Connection[Any], type_url: str, nonce: str, started: float) -> None:
        """A response was written: remember it for the config status, and when the change
        it carries began, to time its ACK."""
        self.config_status.sent(conn.id, type_url, nonce)
        if started:
            conn.inflight[nonce] = started
            if len(conn.inflight) > 64:  # never ACKed (stale); don't grow without bound
                conn.inflight.pop(next(iter(conn.inflight)))

    async def serve(
        self, protocol: StreamProtocol[Any, Any], context: grpc.aio.ServicerContext[Any, bytes]
    ) -> None:
        """Requests are handled as they are read (so a flood of ACKs is flow-controlled
        by gRPC instead of queueing here); pushes run in a task of their own."""
        conn: Connection[Any] | None = None
        pusher: asyncio.Task[None] | None = None

        async def write(type_url: str, body: bytes) -> None:
            await context.write(body)
            self.metrics.sent(typeurls.SHORT.get(type_url, type_url), len(body))

        try:
            while True:
                raw = await context.read()
                if raw is grpc.aio.EOF:
                    return
                self.requests += 1
                request = protocol.parse(raw, first=conn is None)
                # A SotW ACK repeats every watched name (tens of KB at 1,000 services):
                # not kept alive through the wait for the next one, on every stream.
                del raw
                if request is None:
                    await self._refuse(context, f"malformed request on the {protocol.name} stream")
                    return
                if conn is None:
                    node = protocol.node(request)
                    if node is None:
                        await self._refuse(
                            context, "the first request on a stream must carry node.id"
                        )
                        return
                    conn = self._connect(node, context, protocol.delta)
                    pusher = asyncio.create_task(self._pusher(protocol, conn, write))
                async with conn.lock:
                    try:
                        await protocol.on_request(conn, request, write)
                    except Refused as err:
                        log.warning("proxy %s: %s", conn.proxy.id, err)
                        await self._refuse(context, str(err))
                        return
        except asyncio.CancelledError:
            raise
        except grpc.aio.AbortError:
            raise
        except (grpc.aio.AioRpcError, ConnectionError):
            log.debug("%s stream ended", protocol.name, exc_info=True)
        except Exception:  # a bug must not take the server with it, but must be seen
            who = conn.proxy.id if conn else "unknown proxy"
            log.exception("%s stream for %s failed", protocol.name, who)
        finally:
            if pusher is not None:
                pusher.cancel()
            if conn is not None:
                self.connections.pop(conn.id, None)
                self.config_status.disconnected(conn.id)
                self.metrics.connected.dec()
                log.info("proxy %s disconnected", conn.proxy.id)

    async def _refuse(self, context: grpc.aio.ServicerContext[Any, bytes], message: str) -> None:
        self.metrics.rejected_requests.inc()
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)

    def _connect(
        self, node: Node, context: grpc.aio.ServicerContext[Any, bytes], delta: bool
    ) -> Connection[Any]:
        proxy = Proxy.from_node(node.id, node.cluster, node.metadata, node.locality)
        conn: Connection[Any] = Connection(
            id=f"{node.id}-{'d' if delta else ''}{next(self._ids)}",
            peer=context.peer() or "",
            proxy=proxy,
            connected_at=time.monotonic(),
            delta=delta,
        )
        self.connections[conn.id] = conn
        # It gets the current snapshot's config on request, not as a push of its changes.
        version = self.context.snapshot.version if self.context is not None else 0
        self.config_status.connected(conn.id, proxy.id, delta, version)
        self.metrics.connected.inc()
        log.info(
            "proxy %s connected (service %s.%s) from %s%s",
            proxy.id,
            proxy.service,
            proxy.namespace,
            conn.peer,
            " (delta)" if delta else "",
        )
        return conn

    async def _pusher(
        self, protocol: StreamProtocol[Any, Any], conn: Connection[Any], write: Writer
    ) -> None:
        while True:
            await conn.wake.wait()
            conn.wake.clear()
            async with conn.lock:
                change, conn.pending = conn.pending, None
                if change is None or self.context is None:
                    continue
                # What it is sent may come from a later snapshot, never an earlier one.
                version = self.context.snapshot.version
                self.config_status.push_began(conn.id)
                try:
                    await protocol.push(conn, change, write)
                    self.config_status.push_ended(conn.id, version)
                except (asyncio.CancelledError, grpc.aio.AioRpcError, ConnectionError):
                    raise
                except Exception:  # keep what the proxy has; a later push may succeed
                    self.metrics.push_errors.inc()
                    log.exception("push to %s failed; its last config stays", conn.proxy.id)


def node_of(message: Any) -> Node | None:
    """The Node of a first request (SotW or Delta), if it names the proxy."""
    node = message.node
    if not node.id:
        return None
    metadata = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
    where = node.locality
    return Node(node.id, node.cluster, metadata, (where.region, where.zone, where.sub_zone))
