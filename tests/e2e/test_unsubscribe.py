"""A sidecar that comes to watch no endpoints at all stays in sync (marker: e2e).

A Sidecar resource that hides every service takes all EDS clusters away from a
proxy; Envoy then unsubscribes from endpoints (an empty name list). Pilot must
send it no further endpoint responses: Envoy would neither apply nor ACK them,
and the proxy would show as out of sync for ever (a flake the corpus test hit).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Mesh, eventually

pytestmark = pytest.mark.e2e

HIDE_EVERYTHING = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: lonely}
spec:
  egress: [{hosts: ["./nothing.example.com"]}]
"""


@pytest.fixture
def mesh(envoy_bin: str, tmp_path: Path) -> Iterator[Mesh]:
    with Mesh.running(tmp_path, envoy_bin) as m:
        yield m


def _types(mesh: Mesh, proxy: str) -> dict[str, dict[str, object]]:
    for p in mesh.pilot_json("/debug/syncz")["proxies"]:
        if p["proxy"] == proxy:
            return dict(p["types"])
    return {}


def _in_sync(mesh: Mesh, proxy: str) -> bool:
    types = _types(mesh, proxy)
    return bool(types) and all(t["version_acked"] == t["version_sent"] for t in types.values())


def test_a_proxy_that_unsubscribes_from_endpoints_stays_in_sync(mesh: Mesh) -> None:
    mesh.add("svc-a", "a-1")
    client = mesh.client("loner", namespace="lonely")
    eventually(lambda: _types(mesh, "loner").get("eds", {}).get("names"), what="EDS watched")
    mesh.apply(HIDE_EVERYTHING)
    eventually(lambda: _types(mesh, "loner")["eds"]["names"] == 0, what="EDS unsubscribed")
    # Endpoint and config changes elsewhere (a full push): none may leave the loner unsynced.
    mesh.add("svc-a", "a-2")
    mesh.apply(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: svc-a, namespace: default}\n"
        "spec: {host: svc-a, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}\n"
    )
    mesh.add("svc-b", "b-1")
    eventually(lambda: _in_sync(mesh, "loner"), timeout=30, what="the loner in sync")
    rejected = client.admin("/stats?filter=update_rejected")
    assert all(line.endswith(": 0") for line in rejected.splitlines() if ": " in line), rejected
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0
