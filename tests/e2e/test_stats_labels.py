"""Istio's standard request labels on a real Envoy's /stats/prometheus (each supported
Envoy): the source from the bootstrap's fixed tags, the destination service and version
from the outbound cluster's name, the response code from Envoy's own tags; the stats
keep Envoy's usual names."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Mesh, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def mesh(envoy_bin: str, tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(tmp_path, envoy=envoy_bin)
    try:
        m.start_consul()
        m.start_galley()
        m.start_pilot()
        yield m
    finally:
        m.stop()


def _stats(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats/prometheus", timeout=5) as r:
        return str(r.read().decode())


def test_requests_carry_source_destination_version_and_code(mesh: Mesh) -> None:
    mesh.add("shelf", "shelf-v2", version="v2")
    client = mesh.client("buyer")
    eventually(lambda: mesh.request(client.outbound_port, "shelf").status == 200)
    mesh.apply("""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shelf, namespace: default}
spec:
  host: shelf
  subsets: [{name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shelf, namespace: default}
spec:
  hosts: [shelf]
  http: [{route: [{destination: {host: shelf, subset: v2}}]}]
""")
    eventually(
        lambda: (
            "outbound|80|v2|shelf" in client.admin("/config_dump?resource=dynamic_route_configs")
            or "outbound|9080|v2|shelf"
            in client.admin("/config_dump?resource=dynamic_route_configs")
        ),
        what="the subset route",
    )
    for _ in range(3):
        assert mesh.request(client.outbound_port, "shelf").status == 200

    def counted() -> str | None:
        text = _stats(client.stats_port)
        return next(
            (
                line
                for line in text.splitlines()
                if line.startswith("envoy_cluster_upstream_rq{")
                and 'destination_version="v2"' in line
                and float(line.rsplit(" ", 1)[1]) >= 3
            ),
            None,
        )

    line = eventually(counted, what="the v2 requests counted with their labels")
    labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
    assert labels["destination_service"] == "shelf.default.svc.cluster.local", line
    assert labels["destination_version"] == "v2" and labels["envoy_response_code"] == "200"
    assert labels["source_workload"] == "buyer" and labels["source_namespace"] == "default"
    assert labels["source_version"] == "unknown"  # the client has no version label
    text = _stats(client.stats_port)
    # The usual metric names: the destination's `.svc.cluster.local` leaves no trace in them.
    assert "envoy_cluster_upstream_rq_time_bucket{" in text
    assert "svc_cluster_local" not in "".join(
        line.split("{")[0] for line in text.splitlines() if not line.startswith("#")
    )
    # The server's own sidecar says who it is, on every stat.
    server = mesh.workloads["shelf-v2"]
    assert 'source_workload="shelf-v2",source_app="shelf",source_version="v2"' in _stats(
        server.stats_port
    )
