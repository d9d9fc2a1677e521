"""Locality load balancing on the wire: instances registered in two zones of the Consul
datacenter (`meshctl register --zone`), clients whose Envoy node says their zone
(`meshctl bootstrap --region --zone`), DestinationRules applied through Galley.

- Failover: with outlier detection (Istio's default locality failover), a zone-A client
  sends everything to the zone-A instance; when that instance answers 5xx, Envoy ejects
  it and the traffic moves to zone B; when it recovers, the traffic comes back.
- Distribute: weights per locality, relative to the client's own zone.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = pytest.mark.e2e

REGION = "dc1"  # the harness's Consul datacenter: the region of every registered instance
EJECTION_S = 15  # long enough to measure while the bad instance is out, short enough to wait


@pytest.fixture(scope="module")
def mesh(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with Mesh.running(Path(tmp_path_factory.mktemp("locality")), envoy_bin) as m:
        yield m


@pytest.fixture(scope="module")
def client(mesh: Mesh) -> Workload:
    return mesh.client("client-a", locality=f"{REGION}/zone-a")


def cluster(service: str) -> str:
    return f"outbound|9080||{service}.default.svc.cluster.local"


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5).close()


def in_zone(mesh: Mesh, service: str, instance: str, zone: str) -> Workload:
    """An app with its sidecar, registered with a zone (its region: the datacenter)."""
    w = mesh.add(service, instance, register=False)
    mesh.register(w, zone=zone)
    return w


def hosts(client: Workload, name: str) -> dict[str, dict[str, Any]]:
    """The client Envoy's view of a cluster's hosts, by port: locality, priority, health."""
    status = json.loads(client.admin("/clusters?format=json"))
    for c in status.get("cluster_statuses", []):
        if c["name"] == name:
            return {
                str(h["address"]["socket_address"]["port_value"]): h
                for h in c.get("host_statuses", [])
            }
    return {}


def priorities(client: Workload, name: str) -> dict[int, int]:
    """{inbound port: priority} as the client's Envoy has them."""
    return {int(port): h.get("priority", 0) for port, h in hosts(client, name).items()}


@pytest.mark.compat
def test_failover_to_the_other_zone_when_the_local_instance_is_ejected(
    mesh: Mesh, client: Workload
) -> None:
    near = in_zone(mesh, "stock", "stock-a", "zone-a")
    far = in_zone(mesh, "stock", "stock-b", "zone-b")
    # No DestinationRule: no locality load balancing, both zones serve.
    eventually(
        lambda: mesh.instances_seen(client, "stock", 20).keys() == {"stock-a", "stock-b"},
        what="both zones serve without a rule",
    )
    located = hosts(client, cluster("stock"))[str(near.inbound_port)]["locality"]
    assert located == {"region": REGION, "zone": "zone-a"}
    # Outlier detection alone puts Istio's default locality failover in force.
    mesh.apply(f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: stock}}
spec:
  host: stock
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 1s
      baseEjectionTime: {EJECTION_S}s
      maxEjectionPercent: 100
""")
    eventually(
        lambda: priorities(client, cluster("stock")) == {near.inbound_port: 0, far.inbound_port: 1},
        what="zone A first, zone B second",
    )
    assert mesh.instances_seen(client, "stock", 30) == {"stock-a": 30}

    post(f"http://127.0.0.1:{near.app_port}/fail/on")

    def ejected() -> bool:
        for _ in range(5):  # ejection happens on the data path: keep traffic flowing
            mesh.request(client.outbound_port, "stock")
        health = hosts(client, cluster("stock"))[str(near.inbound_port)]["health_status"]
        return bool(health.get("failed_outlier_check"))

    eventually(ejected, timeout=20, interval=0.05, what="zone-A instance ejected")
    assert mesh.instances_seen(client, "stock", 30) == {"stock-b": 30}

    # Recovered: once its ejection ends, zone A has the traffic again.
    post(f"http://127.0.0.1:{near.app_port}/fail/off")
    eventually(
        lambda: mesh.instances_seen(client, "stock", 10) == {"stock-a": 10},
        timeout=EJECTION_S + 45,
        interval=0.5,
        what="traffic back in zone A",
    )


def test_distribute_weighs_zones_relative_to_the_client(mesh: Mesh, client: Workload) -> None:
    in_zone(mesh, "basket", "basket-a", "zone-a")
    in_zone(mesh, "basket", "basket-b", "zone-b")
    client_b = mesh.client("client-b", locality=f"{REGION}/zone-b")
    mesh.apply(f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: basket}}
spec:
  host: basket
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
        distribute:
        - from: {REGION}/zone-a/*
          to: {{"{REGION}/zone-a/*": 80, "{REGION}/zone-b/*": 20}}
        - from: {REGION}/zone-b/*
          to: {{"{REGION}/zone-b/*": 100}}
""")
    # A zone-B client: all of it stays in zone B (zone A has no share from there).
    eventually(
        lambda: mesh.instances_seen(client_b, "basket", 20) == {"basket-b": 20},
        what="zone B keeps its traffic",
    )

    def share_a(n: int) -> float:
        return mesh.instances_seen(client, "basket", n).get("basket-a", 0) / n

    # A zone-A client: 80 % in zone A, 20 % to zone B (Envoy picks localities by weight).
    eventually(lambda: 0.7 <= share_a(50) <= 0.9, what="80/20 pushed")
    share = share_a(500)
    assert 0.75 <= share <= 0.85, share
