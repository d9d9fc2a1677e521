"""Delta ADS in-process: proxies that hold the same config share one diff per push, and
one that NACKed (so holds something else) gets its own, right one."""

from __future__ import annotations

import asyncio

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from pilot.xds import typeurls
from pilot.xds.delta import DeltaWatch
from pilot.xds.server import DELTA_METHOD
from tests.pilot.fixtures import instance
from tests.pilot.xds.conftest import Running

CDS, EDS = typeurls.CLUSTER, typeurls.ENDPOINT
REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
RATINGS = "outbound|9080||ratings.default.svc.cluster.local"


class Proxy:
    """A Delta client of one stream: it ACKs by hand, as the test says."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str) -> None:
        self.id = node_id
        self.call = channel.stream_stream(
            DELTA_METHOD, request_serializer=None, response_deserializer=None
        )()

    async def send(
        self,
        type_url: str,
        subscribe: tuple[str, ...] = (),
        nonce: str = "",
        error: str | None = None,
        node: bool = False,
    ) -> None:
        msg = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url, resource_names_subscribe=subscribe, response_nonce=nonce
        )
        if node:
            meta = struct_pb2.Struct()
            meta.update({"NAMESPACE": "default", "OUTBOUND_PORT": "15001"})
            msg.node.CopyFrom(base_pb2.Node(id=self.id, cluster="productpage", metadata=meta))
        if error is not None:
            msg.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
        await self.call.write(msg.SerializeToString())

    async def recv(self) -> discovery_pb2.DeltaDiscoveryResponse:
        raw = await asyncio.wait_for(self.call.read(), 5.0)
        assert raw is not grpc.aio.EOF
        return discovery_pb2.DeltaDiscoveryResponse.FromString(raw)

    async def connect(self) -> None:
        """Clusters (wildcard), then the endpoints of reviews; both ACKed."""
        await self.send(CDS, node=True)
        cds = await self.recv()
        assert cds.type_url == CDS
        await self.send(CDS, nonce=cds.nonce)
        await self.send(EDS, subscribe=(REVIEWS,))
        eds = await self.recv()
        assert [r.name for r in eds.resources] == [REVIEWS]
        await self.send(EDS, nonce=eds.nonce)


def _watch(running: Running, node_id: str, type_url: str) -> DeltaWatch:
    (conn,) = [c for c in running.pilot.ads.connections.values() if c.proxy.id == node_id]
    watch = conn.watches[type_url]
    assert isinstance(watch, DeltaWatch)
    return watch


async def test_proxies_holding_the_same_config_share_a_diff(running: Running) -> None:
    a, b = Proxy(running.channel, "p-a"), Proxy(running.channel, "p-b")
    await a.connect()
    await b.connect()
    assert _watch(running, "p-a", CDS).basis == _watch(running, "p-b", CDS).basis is not None
    # Holding the same, they share one map of it, and one set of the names they watch.
    for type_url in (CDS, EDS):
        assert _watch(running, "p-a", type_url).known is _watch(running, "p-b", type_url).known
    assert _watch(running, "p-a", EDS).names is _watch(running, "p-b", EDS).names

    # An endpoint-only push: both get the new endpoint, and stay labelled alike.
    running.registry.set("reviews", [instance("reviews", 1), instance("reviews", 2)])
    pushes = [await a.recv(), await b.recv()]
    for p, push in zip((a, b), pushes, strict=True):
        assert push.type_url == EDS and [r.name for r in push.resources] == [REVIEWS]
        await p.send(EDS, nonce=push.nonce)
    assert pushes[0].nonce == pushes[1].nonce  # one encoded response for both
    assert _watch(running, "p-a", EDS).basis == _watch(running, "p-b", EDS).basis is not None

    # b refuses the next cluster change: it holds less than a from then on.
    running.registry.set("ratings", [instance("ratings", 3)])
    push_a, push_b = await a.recv(), await b.recv()
    assert [r.name for r in push_a.resources] == [RATINGS] == [r.name for r in push_b.resources]
    await a.send(CDS, nonce=push_a.nonce)
    await b.send(CDS, nonce=push_b.nonce, error="refused for the test")
    await asyncio.sleep(0)  # let the server read both
    for _ in range(100):
        if _watch(running, "p-b", CDS).basis is None:
            break
        await asyncio.sleep(0.01)
    assert _watch(running, "p-b", CDS).basis is None
    assert _watch(running, "p-a", CDS).basis is not None
    # b's map was copied before it forgot the refused cluster; a's still has it.
    assert RATINGS in _watch(running, "p-a", CDS).known
    assert RATINGS not in _watch(running, "p-b", CDS).known

    # The next cluster change: a gets just it; b gets it and, again, what it refused.
    running.registry.set("details", [instance("details", 4)])
    push_a, push_b = await a.recv(), await b.recv()
    details = "outbound|9080||details.default.svc.cluster.local"
    assert sorted(r.name for r in push_a.resources) == [details]
    assert sorted(r.name for r in push_b.resources) == [details, RATINGS]
    await a.send(CDS, nonce=push_a.nonce)
    await b.send(CDS, nonce=push_b.nonce)
    for _ in range(100):  # b holds all of it now: labelled like a again
        if _watch(running, "p-b", CDS).basis == _watch(running, "p-a", CDS).basis:
            break
        await asyncio.sleep(0.01)
    assert _watch(running, "p-b", CDS).basis == _watch(running, "p-a", CDS).basis
    assert _watch(running, "p-b", CDS).known == _watch(running, "p-a", CDS).known


async def test_the_first_answer_on_a_type_is_sent_even_when_empty(running: Running) -> None:
    """Envoy's initial fetch waits for one (a gateway without servers has no listeners)."""
    p = Proxy(running.channel, "p-empty")
    await p.connect()
    await p.send(typeurls.ROUTE, subscribe=("no-such-route",))
    first = await p.recv()
    assert first.type_url == typeurls.ROUTE
    assert not first.resources and not first.removed_resources and first.nonce
    await p.send(typeurls.ROUTE, nonce=first.nonce)
    await p.send(typeurls.LISTENER)  # answered after the ACK before it is handled
    assert (await p.recv()).type_url == typeurls.LISTENER
    assert _watch(running, "p-empty", typeurls.ROUTE).acked
