"""One tenant's conflicting config never freezes the mesh (real Consul, Galley, Envoy).

Two namespaces declare the same ServiceEntry host. Before conflicts were
resolved, the next snapshot failed the consistency check (duplicate cluster
and domains) and Pilot refused it and every later one: no endpoint change
reached any proxy again. Now the oldest declaration wins, the younger is
reported by Galley when applied and by Pilot, and pushes keep flowing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Mesh, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mesh(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = Path(tmp_path_factory.mktemp("conflicts"))
    with Mesh.running(workdir, envoy_bin) as m:
        yield m


def entry(namespace: str, port: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: payments, namespace: {namespace}}}
spec:
  hosts: [payments.example.com]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
"""


def test_two_tenants_claiming_one_host_do_not_stop_pushes(mesh: Mesh) -> None:
    first = mesh.add("pay-first", "pay-first-1", register=False, sidecar=False)
    second = mesh.add("pay-second", "pay-second-1", register=False, sidecar=False)
    mesh.add("reviews", "reviews-1")
    client = mesh.client("shopper")
    eventually(lambda: mesh.request(client.outbound_port, "reviews").status == 200)

    mesh.apply(entry("team-first", first.app_port))
    reply = eventually(
        lambda: (
            (r := mesh.request(client.outbound_port, "payments.example.com")).status == 200 and r
        ),
        what="the first declaration routes",
    )
    assert reply.instance == "pay-first-1"
    applied = mesh.apply(entry("team-second", second.app_port))
    assert "already declared by ServiceEntry/team-first/payments" in applied.stdout + applied.stderr

    conflicts = eventually(
        lambda: mesh.pilot_json("/debug/conflicts")["conflicts"], what="Pilot reports it"
    )
    assert conflicts == [
        {
            "subject": "host payments.example.com",
            "winner": "ServiceEntry/team-first/payments",
            "loser": "ServiceEntry/team-second/payments",
        }
    ]
    assert mesh.pilot_metric("pilot_config_conflicts") == 1
    # The oldest declaration keeps the host...
    for _ in range(5):
        assert mesh.request(client.outbound_port, "payments.example.com").instance == "pay-first-1"
    # ...and the rest of the mesh still gets every change: a new instance takes traffic.
    mesh.add("reviews", "reviews-2")
    eventually(
        lambda: "reviews-2" in mesh.instances_seen(client, "reviews"),
        what="an endpoint change reached the proxy after the conflict",
    )
    assert mesh.pilot_metric("pilot_snapshot_inconsistent_total") == 0
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0

    # Deleting the winner hands the host to the other tenant.
    out = mesh.meshctl("delete", "se", "payments", "-n", "team-first", *mesh.galley_args())
    assert out.returncode == 0, out.stderr
    eventually(
        lambda: (
            mesh.request(client.outbound_port, "payments.example.com").instance == "pay-second-1"
        ),
        what="the remaining declaration takes over",
    )
    assert mesh.pilot_json("/debug/conflicts")["conflicts"] == []
