"""Certificates rotate under steady mTLS traffic: no failed request, no Envoy restart."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def mesh(envoy_bin: str, tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(tmp_path, envoy=envoy_bin)
    try:
        m.start_consul()
        m.start_citadel(ttl_seconds=6)  # rotation every ~3 s
        m.start_galley()
        m.start_pilot()
        yield m
    finally:
        m.stop()


def serial(w: Workload) -> str:
    certs = json.loads(w.admin("/certs"))["certificates"]
    for c in certs:
        for chain in c.get("cert_chain") or []:
            if any(
                "spiffe://" in (san.get("uri") or "") for san in chain.get("subject_alt_names", [])
            ):
                return str(chain["serial_number"])
    return ""


def test_rotation_under_steady_traffic(mesh: Mesh) -> None:
    server = mesh.add("steady", "steady-1", service_account="steady-sa")
    client = mesh.client("steady-client", service_account="client-sa")
    mesh.apply("""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
""")
    eventually(
        lambda: mesh.request(client.outbound_port, "steady").status == 200 and serial(server)
    )
    seen_server, seen_client = {serial(server)}, {serial(client)}
    failures, total = 0, 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        total += 1
        if mesh.request(client.outbound_port, "steady").status != 200:
            failures += 1
        seen_server.add(serial(server))
        seen_client.add(serial(client))
        time.sleep(0.02)
    assert failures == 0, f"{failures} of {total} requests failed during rotation"
    assert len(seen_server) >= 3 and len(seen_client) >= 3, (seen_server, seen_client)
    for w in (server, client):
        assert "ENVOY_SIGTERM" not in (mesh.sup.log_dir / f"envoy-{w.instance}.log").read_text()
