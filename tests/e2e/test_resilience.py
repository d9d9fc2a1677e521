"""Pilot and Consul restarts: Envoy keeps serving, and everything reconnects."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.procs import http_ok
from tests.e2e.harness import Mesh, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
def mesh(request: pytest.FixtureRequest, envoy_bin: str, tmp_path: Path) -> Iterator[Mesh]:
    # Only a Consul restart needs the catalog to persist (a dev agent keeps it in memory).
    persistent = "consul_restart" in request.node.name
    m = Mesh(tmp_path, envoy=envoy_bin, persistent_consul=persistent)
    try:
        m.start()
        if persistent:
            m.start_galley()
        yield m
    finally:
        m.stop()


def _steady(mesh: Mesh, port: int, host: str, seconds: float) -> set[str | None]:
    """Requests for `seconds`; every one must succeed. Returns the instances seen."""
    seen = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply = mesh.request(port, host)
        assert reply.status == 200, reply
        seen.add(reply.instance)
        time.sleep(0.05)
    return seen


def _connected(mesh: Mesh, proxy_id: str) -> bool:
    return any(p["proxy"] == proxy_id for p in mesh.pilot_json("/debug/syncz")["proxies"])


def test_envoy_survives_pilot_restart_and_reconnects(mesh: Mesh) -> None:
    client = mesh.client("client")
    mesh.add("svc-f", "f-1")
    eventually(lambda: mesh.request(client.outbound_port, "svc-f").instance == "f-1")

    mesh.sup.kill("pilot")
    assert _steady(mesh, client.outbound_port, "svc-f", 2.0) == {"f-1"}
    assert "control_plane.connected_state: 0" in client.admin(
        "/stats?filter=control_plane.connected_state"
    )

    mesh.start_pilot()
    eventually(lambda: _connected(mesh, "client"), what="client reconnected to the new pilot")
    eventually(
        lambda: (
            "control_plane.connected_state: 1"
            in client.admin("/stats?filter=control_plane.connected_state")
        )
    )
    # The new Pilot watches the catalog and pushes: a new instance gets traffic.
    mesh.add("svc-f", "f-2")
    eventually(
        lambda: mesh.instances_seen(client, "svc-f", 20).keys() == {"f-1", "f-2"},
        what="f-2 reached through the new pilot",
    )
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0


KEPT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-g, namespace: default}
spec:
  hosts: [svc-g]
  http:
  - route: [{destination: {host: svc-g}}]
    headers: {response: {add: {x-config: kept}}}
"""


def _config_in_force(mesh: Mesh, port: int) -> bool:
    return mesh.request(port, "svc-g").headers.get("x-config") == "kept"


def test_pilot_survives_consul_restart_and_resumes_watching(mesh: Mesh) -> None:
    """Consul keeps its data (a server with a data dir, as `meshctl up` and compose run
    it): registrations and applied config are still there, and in force, after it
    restarts. A -dev agent forgot both, and Pilot then pushed an empty config."""
    client = mesh.client("client")
    mesh.add("svc-g", "g-1")
    eventually(lambda: mesh.request(client.outbound_port, "svc-g").instance == "g-1")
    mesh.apply(KEPT)
    eventually(lambda: _config_in_force(mesh, client.outbound_port), what="the route applied")

    mesh.sup.stop("consul")
    assert _steady(mesh, client.outbound_port, "svc-g", 2.0) == {"g-1"}
    assert http_ok(f"http://127.0.0.1:{mesh.pilot_http}/healthz")
    eventually(
        lambda: mesh.pilot_metric("pilot_registry_errors_total") > 0,
        what="pilot noticed consul is gone",
    )

    mesh.start_consul()  # same ports, same data dir: the registrations persist
    assert _steady(mesh, client.outbound_port, "svc-g", 1.0) == {"g-1"}
    mesh.add("svc-g", "g-2")
    eventually(
        lambda: mesh.instances_seen(client, "svc-g", 20).keys() == {"g-1", "g-2"},
        timeout=30,
        what="g-2 reached after consul came back",
    )
    # The push that brought g-2 was built from the config read back from Consul.
    assert all(_config_in_force(mesh, client.outbound_port) for _ in range(10))
    assert mesh.pilot_metric("pilot_config_resources") == 1
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0
