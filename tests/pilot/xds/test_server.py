"""The ADS server in-process, driven by a raw gRPC client (unit level: fake registry)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from pilot.xds import typeurls
from pilot.xds.server import ADS_METHOD
from tests.pilot.fixtures import instance
from tests.pilot.xds.conftest import Running

CDS, EDS = typeurls.CLUSTER, typeurls.ENDPOINT
REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"


def _node() -> base_pb2.Node:
    meta = struct_pb2.Struct()
    meta.update({"NAMESPACE": "default", "OUTBOUND_PORT": "15001"})
    return base_pb2.Node(id="p-1", cluster="productpage", metadata=meta)


def _req(
    type_url: str,
    names: tuple[str, ...] = (),
    nonce: str = "",
    version: str = "",
    error: str | None = None,
    node: bool = False,
) -> bytes:
    msg = discovery_pb2.DiscoveryRequest(
        type_url=type_url, resource_names=names, response_nonce=nonce, version_info=version
    )
    if node:
        msg.node.CopyFrom(_node())
    if error is not None:
        msg.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
    return msg.SerializeToString()


def _stream(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    return channel.stream_stream(ADS_METHOD, request_serializer=None, response_deserializer=None)()


async def _recv(
    call: grpc.aio.StreamStreamCall, wait: float = 5.0
) -> discovery_pb2.DiscoveryResponse:
    raw = await asyncio.wait_for(call.read(), wait)
    assert raw is not grpc.aio.EOF
    return discovery_pb2.DiscoveryResponse.FromString(raw)


async def test_handshake_ack_and_endpoint_only_push(running: Running) -> None:
    call = _stream(running.channel)
    await call.write(_req(CDS, node=True))
    cds = await _recv(call)
    clusters = [cluster_pb2.Cluster.FromString(r.value).name for r in cds.resources]
    assert clusters == [REVIEWS]
    await call.write(_req(CDS, nonce=cds.nonce, version=cds.version_info))
    await call.write(_req(EDS, (REVIEWS,)))
    eds = await _recv(call)
    assert eds.type_url == EDS and len(eds.resources) == 1
    await call.write(_req(EDS, (REVIEWS,), nonce=eds.nonce, version=eds.version_info))

    running.registry.set("reviews", [instance("reviews", 1), instance("reviews", 2)])
    push = await _recv(call)
    assert push.type_url == EDS, "an endpoint change sends EDS only"
    assert push.nonce != eds.nonce and push.version_info != eds.version_info
    call.cancel()


async def test_unchanged_catalog_pushes_nothing(running: Running) -> None:
    call = _stream(running.channel)
    await call.write(_req(CDS, node=True))
    cds = await _recv(call)
    await call.write(_req(CDS, nonce=cds.nonce, version=cds.version_info))
    running.registry.set("reviews", [instance("reviews", 1)])  # the same instances again
    with pytest.raises(asyncio.TimeoutError):
        await _recv(call, wait=0.5)
    call.cancel()


async def test_nack_is_counted_and_the_config_not_resent(running: Running) -> None:
    call = _stream(running.channel)
    await call.write(_req(CDS, node=True))
    cds = await _recv(call)
    await call.write(_req(CDS, nonce=cds.nonce, error="cluster rejected: bad thing"))
    await asyncio.sleep(0.2)
    metrics = running.pilot.metrics
    assert metrics.nacks.labels("cds")._value.get() == 1
    (conn,) = running.pilot.ads.connections.values()
    assert conn.watches[CDS].nack == "cluster rejected: bad thing"
    assert conn.last_nack == "cds: cluster rejected: bad thing"
    with pytest.raises(asyncio.TimeoutError):
        await _recv(call, wait=0.3)
    call.cancel()


@pytest.mark.parametrize("first", [b"\xff\xff\xff garbage", _req(CDS)])
async def test_garbage_or_nodeless_request_is_refused(running: Running, first: bytes) -> None:
    call = _stream(running.channel)
    await call.write(first)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), 5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert running.pilot.metrics.rejected_requests._value.get() == 1
    # The server is fine afterwards.
    ok = _stream(running.channel)
    await ok.write(_req(CDS, node=True))
    assert (await _recv(ok)).resources
    ok.cancel()
