"""The ADS server: State-of-the-World and Delta over grpc.aio, on one stream core.

Transport only: the stream loop and bookkeeping are `stream.Streams`, the
ACK/NACK rules are `api.xds_ack.decide` (SotW) and `delta.decide` (Delta), the
config comes from the generators and the current `PushContext`. Responses are
bytes assembled from pre-serialized resources and written through a generic
handler, so nothing is re-serialized per stream. Pushes to a slow stream
collapse into one (latest wins).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from api import xds_ack as ack
from pilot.config_status import ConfigStatus
from pilot.metrics import Metrics
from pilot.xds import typeurls
from pilot.xds.context import Change, PushContext
from pilot.xds.delta import DeltaProtocol
from pilot.xds.generator import Generator
from pilot.xds.resource import encode_response, set_version
from pilot.xds.stream import Connection, Node, Streams, Writer, node_of, push_in_order
from pilot.xds.wire import NameSets, split_names

__all__ = ["ADS_METHOD", "DELTA_METHOD", "AdsServer", "SotwProtocol"]

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
ADS_METHOD = f"/{ADS_SERVICE}/StreamAggregatedResources"
DELTA_METHOD = f"/{ADS_SERVICE}/DeltaAggregatedResources"

_SotwRequest = tuple[discovery_pb2.DiscoveryRequest, frozenset[str]]


class SotwProtocol:
    """State of the World: every response carries the whole watched set of a type."""

    delta = False
    name = "ADS"

    def __init__(self, streams: Streams) -> None:
        self._streams = streams
        self._names = NameSets()

    def parse(self, raw: bytes, first: bool) -> _SotwRequest | None:
        try:
            split = None if first else split_names(raw)
            if split is not None:
                names = self._names.from_wire(split[1])
                if names is not None:
                    return discovery_pb2.DiscoveryRequest.FromString(split[0]), names
            request = discovery_pb2.DiscoveryRequest.FromString(raw)
            return request, self._names.intern(request.resource_names)
        except (DecodeError, TypeError, ValueError):  # ValueError: too many names
            return None

    def node(self, request: _SotwRequest) -> Node | None:
        return node_of(request[0])

    def watch_status(self, watch: ack.Watch) -> dict[str, Any]:
        return {
            "names": len(watch.names),
            "version_sent": watch.version_sent,
            "version_acked": watch.version_acked,
            "nonce_sent": watch.nonce_sent,
            "nack": watch.nack,
        }

    async def on_request(
        self, conn: Connection[ack.Watch], request: _SotwRequest, write: Writer
    ) -> None:
        message, names = request
        type_url = message.type_url
        req = ack.Request(
            type_url=type_url,
            names=names,
            version_info=message.version_info,
            response_nonce=message.response_nonce,
            error_detail=message.error_detail.message if message.HasField("error_detail") else None,
        )
        decision = ack.decide(
            conn.watches.get(type_url), req, wildcard_type=type_url in typeurls.WILDCARD_TYPES
        )
        conn.watches[type_url] = decision.watch
        streams = self._streams
        if decision.reason is ack.Reason.NACK:
            conn.inflight.pop(req.response_nonce, None)
            streams.record_nack(
                conn,
                type_url,
                req.response_nonce,
                req.error_detail or "",
                decision.watch.version_sent,
            )
            return
        if decision.reason in (ack.Reason.ACK, ack.Reason.ACK_NEW_NAMES):
            streams.record_ack(conn, type_url, req.response_nonce)
        elif decision.reason is ack.Reason.UNSUBSCRIBE:
            streams.record_unsubscribe(conn, type_url)
        if not decision.respond or type_url not in streams.generators or streams.context is None:
            return
        change = None if decision.only is None else Change(full=False, endpoints=decision.only)
        await self._send(conn, write, type_url, change)

    async def push(self, conn: Connection[ack.Watch], change: Change, write: Writer) -> None:
        streams = self._streams

        async def send(
            type_url: str, after_clusters: frozenset[str] | None
        ) -> frozenset[str] | None:
            watch = conn.watches[type_url]
            if not watch.names and type_url not in typeurls.WILDCARD_TYPES:
                return None  # Envoy watches nothing of this type: nothing to send
            if after_clusters is not None:  # the whole watched set: SotW has no partial EDS
                return await self._send(conn, write, type_url, None, change.started)
            if watch.nonce_sent and not streams.generators[type_url].needs_push(
                change, watch.names
            ):
                return None
            narrowed = None if change.full or not watch.nonce_sent else change
            return await self._send(
                conn, write, type_url, narrowed, change.started, skip_unchanged=change.full
            )

        await push_in_order(streams.order, lambda t: t in conn.watches, send)

    async def _send(
        self,
        conn: Connection[ack.Watch],
        write: Writer,
        type_url: str,
        change: Change | None,
        started: float = 0.0,
        skip_unchanged: bool = False,
    ) -> frozenset[str] | None:
        """Generate, encode (once per identical response) and write; the names sent,
        or None when the response is skipped as unchanged."""
        streams = self._streams
        ctx = streams.context
        assert ctx is not None  # callers check; a push never precedes the first snapshot
        watch = conn.watches[type_url]
        gen = streams.generators[type_url]
        memo_key = (
            "response",
            type_url,
            conn.proxy.shape,
            watch.names,
            None if change is None else change.endpoints,
        )

        def build() -> tuple[str, str, bytes, frozenset[str]]:
            resources = gen.generate(ctx, conn.proxy, watch.names, change)
            version = set_version(resources)
            nonce = f"{ctx.snapshot.version}-{streams.nonce()}"
            body = encode_response(version, type_url, nonce, resources)
            return version, nonce, body, frozenset(r.name for r in resources)

        version, nonce, body, names = ctx.memo(memo_key, build, subscription=watch.names)
        if skip_unchanged and watch.nonce_sent and version == watch.version_sent:
            return None
        await write(type_url, body)
        conn.watches[type_url] = ack.Watch(
            type_url=type_url,
            names=watch.names,
            nonce_sent=nonce,
            version_sent=version,
            version_acked=watch.version_acked,
            nack=watch.nack,
        )
        streams.track(conn, type_url, nonce, started)
        return names


class AdsServer:
    """Both protocols on one core: what the rest of Pilot talks to."""

    def __init__(
        self,
        generators: Sequence[Generator],
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.streams = Streams(generators, metrics, clock)
        self.sotw = SotwProtocol(self.streams)
        self.delta = DeltaProtocol(self.streams)

    @property
    def generators(self) -> dict[str, Generator]:
        return self.streams.generators

    @property
    def context(self) -> PushContext | None:
        return self.streams.context

    @property
    def config_status(self) -> ConfigStatus:
        """Per config resource, the proxies that applied it (GET /debug/config_status)."""
        return self.streams.config_status

    @property
    def connections(self) -> dict[str, Connection[Any]]:
        """Every connected proxy, SotW and Delta."""
        return self.streams.connections

    def status(self) -> list[dict[str, Any]]:
        return [
            self.streams.status(c, self.delta if c.delta else self.sotw)
            for c in self.streams.connections.values()
        ]

    def publish(self, ctx: PushContext, change: Change) -> None:
        self.streams.publish(ctx, change)

    def rpc_handlers(self) -> grpc.GenericRpcHandler:
        def handler(protocol: Any) -> grpc.RpcMethodHandler[bytes, bytes]:
            async def serve(
                _requests: object, context: grpc.aio.ServicerContext[Any, bytes]
            ) -> None:
                await self.streams.serve(protocol, context)

            return grpc.stream_stream_rpc_method_handler(
                serve, request_deserializer=None, response_serializer=None
            )

        return grpc.method_handlers_generic_handler(
            ADS_SERVICE,
            {
                "StreamAggregatedResources": handler(self.sotw),
                "DeltaAggregatedResources": handler(self.delta),
            },
        )
