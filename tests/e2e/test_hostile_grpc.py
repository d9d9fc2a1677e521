"""Malformed, oversized and greedy gRPC against Pilot and Citadel (markers: hostile, e2e).

Every service answers a clear status, keeps serving, logs no traceback, and
does not grow without bound: Pilot's and Citadel's RSS are measured before
and after and printed, and must stay within a budget. One ADS stream naming
thousands of made-up resources per request once grew Pilot by ~2 MB a
request, for good.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from pilot.xds import typeurls
from pilot.xds.wire import MAX_NAMES
from tests.e2e.harness import Mesh, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.hostile]

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
SDS = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets"
CSR = "/meshpy.citadel.v1.CertificateService/CreateCertificate"
GROWTH_BUDGET_MB = 128  # the name caches are bounded at ~100 MB together


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with Mesh.running(Path(tmp_path_factory.mktemp("hostile")), "envoy", citadel=True) as m:
        yield m


def rss_mb(mesh: Mesh, name: str) -> float:
    pid = mesh.sup.procs[name].popen.pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {name}")


def stream_status(channel: grpc.Channel, method: str, messages: list[bytes]) -> grpc.StatusCode:
    call = channel.stream_stream(method, request_serializer=None, response_deserializer=None)
    try:
        for _ in call(iter(messages), timeout=10):
            pass
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def first_request(type_url: str, names: list[str]) -> bytes:
    request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
    request.node.id = f"hostile-{uuid.uuid4().hex[:6]}"
    request.node.cluster = "hostile"
    return request.SerializeToString()


def test_garbage_and_greed_get_clear_statuses_and_bounded_memory(mesh: Mesh) -> None:
    pilot_before, citadel_before = rss_mb(mesh, "pilot"), rss_mb(mesh, "citadel")
    with grpc.insecure_channel(f"127.0.0.1:{mesh.pilot_grpc}") as pilot:
        for method in ("StreamAggregatedResources", "DeltaAggregatedResources"):
            code = stream_status(pilot, ADS + method, [b"\xff\xfe\x00garbage"])
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code)
            code = stream_status(pilot, ADS + method, [b""])  # no node: refused
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code)
        too_many = [f"n{i}" for i in range(MAX_NAMES + 1)]
        code = stream_status(
            pilot, ADS + "StreamAggregatedResources", [first_request(typeurls.ENDPOINT, too_many)]
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        oversized = b"\x0a" + b"\xff\xff\xff\x0f" + b"x" * (17 * 1024 * 1024)
        code = stream_status(pilot, ADS + "StreamAggregatedResources", [oversized])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The greedy client: 300 requests, each naming 10,000 resources that do not exist.
        for round_ in range(30):
            requests = [
                first_request(
                    typeurls.ENDPOINT,
                    [f"outbound|80||ghost-{round_}-{i}-{n}" for n in range(10_000)],
                )
                for i in range(10)
            ]
            stream_status(pilot, ADS + "StreamAggregatedResources", requests[:1])
            for raw in requests[1:]:
                stream_status(pilot, ADS + "StreamAggregatedResources", [raw])
    with grpc.insecure_channel(f"127.0.0.1:{mesh.citadel_grpc}") as citadel:
        assert stream_status(citadel, SDS, [b"\xff\xfe"]) in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        unary = citadel.unary_unary(CSR, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            unary(b"\xff" * 1024, timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Both still serve, and did not keep what the greedy client sent.
    eventually(lambda: mesh.pilot_json("/debug/syncz") is not None, what="pilot serves")
    pilot_after, citadel_after = rss_mb(mesh, "pilot"), rss_mb(mesh, "citadel")
    print(
        f"\nRSS MB: pilot {pilot_before:.0f} -> {pilot_after:.0f}, "
        f"citadel {citadel_before:.0f} -> {citadel_after:.0f}"
    )
    assert pilot_after - pilot_before < GROWTH_BUDGET_MB
    assert citadel_after - citadel_before < GROWTH_BUDGET_MB
    logs = mesh.workdir / "logs"
    for name in ("pilot", "citadel"):
        assert "Traceback" not in (logs / f"{name}.log").read_text(), name
    assert os.path.exists(logs / "pilot.log")
