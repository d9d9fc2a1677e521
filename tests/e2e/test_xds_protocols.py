"""Both xDS protocols with real Envoy: incremental (Delta, the default) sends only changes,
State of the World (`meshctl bootstrap --sotw`) the whole watched set; the mesh behaves
the same on either."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["delta", "sotw"])
def mesh(
    envoy_bin: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Mesh]:
    workdir = Path(tmp_path_factory.mktemp(request.param))
    with Mesh.running(workdir, envoy_bin, delta=request.param == "delta") as m:
        yield m


@pytest.fixture(scope="module")
def client(mesh: Mesh) -> Workload:
    return mesh.client("xds-client")


def test_routing_follows_the_catalog(mesh: Mesh, client: Workload) -> None:
    mesh.add("dsvc", "dsvc-1")
    eventually(lambda: mesh.request(client.outbound_port, "dsvc").instance == "dsvc-1")
    second = mesh.add("dsvc", "dsvc-2", version="v2")
    eventually(lambda: mesh.instances_seen(client, "dsvc", 20).keys() == {"dsvc-1", "dsvc-2"})
    mesh.deregister(second)
    eventually(lambda: mesh.instances_seen(client, "dsvc", 20).keys() == {"dsvc-1"})
    assert mesh.instances_seen(client, "dsvc", 30) == {"dsvc-1": 30}
    proxies = mesh.pilot_json("/debug/syncz")["proxies"]
    mine = next(p for p in proxies if p["proxy"] == "xds-client")
    assert mine.get("delta", False) is mesh.delta


def test_subsets_warm_and_config_deletion_restores_defaults(mesh: Mesh, client: Workload) -> None:
    mesh.add("dwarm", "dwarm-1", version="v1")
    mesh.add("dwarm", "dwarm-2", version="v2")
    eventually(lambda: mesh.instances_seen(client, "dwarm", 20).keys() == {"dwarm-1", "dwarm-2"})
    mesh.apply("""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dwarm}
spec:
  host: dwarm
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: dwarm}
spec:
  hosts: [dwarm]
  http:
  - route:
    - destination: {host: dwarm, subset: v2}
""")
    # New subset clusters arrive through CDS and must get their endpoints to leave warming.
    eventually(
        lambda: mesh.instances_seen(client, "dwarm", 10) == {"dwarm-2": 10},
        timeout=10,
        what="subset v2 serving",
    )
    out = mesh.meshctl("delete", "vs", "dwarm", *mesh.galley_args())
    assert out.returncode == 0, out.stderr
    eventually(
        lambda: mesh.instances_seen(client, "dwarm", 20).keys() == {"dwarm-1", "dwarm-2"},
        what="default routing back",
    )
    status = mesh.meshctl("proxy-status", f"--pilot-http=127.0.0.1:{mesh.pilot_http}").stdout
    line = next(r for r in status.splitlines() if r.startswith("xds-client "))
    assert line.split()[2:6] == ["SYNCED"] * 4, status
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0
    rejected = client.admin("/stats?filter=update_rejected")
    assert all(x.rsplit(": ", 1)[1] == "0" for x in rejected.splitlines() if ": " in x), rejected
