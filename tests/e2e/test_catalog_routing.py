"""Sidecars route real HTTP by service name to healthy instances found in Consul."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mesh(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(Path(tmp_path_factory.mktemp("mesh")), envoy=envoy_bin)
    try:
        m.start()
        yield m
    finally:
        m.stop()


@pytest.fixture(scope="module")
def client(mesh: Mesh) -> Workload:
    return mesh.client("client")


def _hosts_in_envoy(client: Workload, cluster_prefix: str) -> set[str]:
    """Host addresses Envoy's admin /clusters lists for a cluster."""
    hosts = set()
    for line in client.admin("/clusters").splitlines():
        if line.startswith(cluster_prefix) and "::cx_active::" in line:
            hosts.add(line.split("::")[1])
    return hosts


def test_request_reaches_service_by_every_name(mesh: Mesh, client: Workload) -> None:
    b = mesh.add("svc-b", "b-1")
    eventually(
        lambda: mesh.request(client.outbound_port, "svc-b").instance == "b-1",
        what="svc-b reachable",
    )
    for host in ("svc-b", "svc-b:9080", "svc-b.default", "svc-b.default.svc.cluster.local"):
        reply = mesh.request(client.outbound_port, host)
        assert (reply.status, reply.instance) == (200, "b-1"), host
    # The outbound listener also works as the app's http_proxy.
    reply = mesh.request(client.outbound_port, "svc-b", path="/x?y=1", proxy_form=True)
    assert (reply.status, reply.instance) == (200, "b-1")
    assert isinstance(reply.body, dict) and reply.body["path"] == "/x?y=1"
    # The request arrived through b's sidecar (inbound listener), not straight at the app.
    stats = b.admin("/stats?filter=inbound.*downstream_rq_total")
    assert any(int(line.rsplit(": ", 1)[1]) > 0 for line in stats.splitlines()), stats
    # A name the mesh doesn't know is Envoy's 404 (no route), not a hang.
    assert mesh.request(client.outbound_port, "nosuch").status == 404


def test_app_calls_the_next_hop_through_its_sidecar(mesh: Mesh, client: Workload) -> None:
    mesh.add("svc-back", "back-1")
    mesh.add("svc-front", "front-1", upstream="http://svc-back/")

    def two_hops() -> bool:
        reply = mesh.request(client.outbound_port, "svc-front")
        return (
            isinstance(reply.body, dict)
            and reply.body.get("upstream", {}).get("body", {}).get("instance") == "back-1"
        )

    eventually(two_hops, what="client -> svc-front -> svc-back")


def test_new_instance_gets_traffic(mesh: Mesh, client: Workload) -> None:
    mesh.add("svc-c", "c-1")
    eventually(lambda: mesh.request(client.outbound_port, "svc-c").instance == "c-1")
    mesh.add("svc-c", "c-2", version="v2")
    seen = eventually(
        lambda: (s := mesh.instances_seen(client, "svc-c", 20)).keys() == {"c-1", "c-2"} and s,
        what="both svc-c instances serve",
    )
    assert sum(seen.values()) == 20


def test_deregistered_instance_gets_nothing(mesh: Mesh, client: Workload) -> None:
    mesh.add("svc-d", "d-1")
    d2 = mesh.add("svc-d", "d-2")
    eventually(lambda: mesh.instances_seen(client, "svc-d", 20).keys() == {"d-1", "d-2"})
    mesh.deregister(d2)
    eventually(
        lambda: (
            _hosts_in_envoy(client, "outbound|9080||svc-d.")
            == {f"127.0.0.1:{mesh.workloads['d-1'].inbound_port}"}
        ),
        what="envoy lists only d-1",
    )
    assert mesh.instances_seen(client, "svc-d", 40) == {"d-1": 40}


def test_failing_health_check_removes_instance(mesh: Mesh, client: Workload) -> None:
    mesh.add("svc-e", "e-1")
    e2 = mesh.add("svc-e", "e-2")
    eventually(lambda: mesh.instances_seen(client, "svc-e", 20).keys() == {"e-1", "e-2"})
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{e2.app_port}/health/fail", method="POST"),
        timeout=5,
    ).close()
    eventually(
        lambda: len(_hosts_in_envoy(client, "outbound|9080||svc-e.")) == 1, what="e-2 ejected"
    )
    assert mesh.instances_seen(client, "svc-e", 40) == {"e-1": 40}
    urllib.request.urlopen(
        urllib.request.Request(f"http://127.0.0.1:{e2.app_port}/health/pass", method="POST"),
        timeout=5,
    ).close()
    eventually(
        lambda: mesh.instances_seen(client, "svc-e", 20).keys() == {"e-1", "e-2"},
        what="e-2 back after its check passes",
    )


def test_envoy_accepted_everything(mesh: Mesh, client: Workload) -> None:
    """No NACK anywhere, and Envoy's own config dump holds what Pilot built."""
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0
    dump = json.loads(client.admin("/config_dump"))
    dynamic = [c for section in dump["configs"] for c in section.get("dynamic_active_clusters", [])]
    names = {c["cluster"]["name"] for c in dynamic}
    assert "outbound|9080||svc-b.default.svc.cluster.local" in names
    syncz = mesh.pilot_json("/debug/syncz")
    mine = [p for p in syncz["proxies"] if p["proxy"] == "client"]
    assert len(mine) == 1 and set(mine[0]["types"]) == {"cds", "eds", "lds", "rds"}
    for kind, t in mine[0]["types"].items():
        assert t["version_sent"] and t["version_acked"] == t["version_sent"], (kind, t)
        assert t["nack"] is None
    rejected = client.admin("/stats?filter=update_rejected")
    assert all(line.rsplit(": ", 1)[1] == "0" for line in rejected.splitlines() if ": " in line), (
        rejected
    )


def test_proxy_status_and_proxy_config(mesh: Mesh, client: Workload) -> None:
    pilot = f"--pilot-http=127.0.0.1:{mesh.pilot_http}"
    p1 = mesh.add("svc-p", "p-1")
    eventually(lambda: "svc-p" in mesh.meshctl("proxy-config", "clusters", "client", pilot).stdout)
    eventually(lambda: mesh.request(client.outbound_port, "svc-p").status == 200)
    status = mesh.meshctl("proxy-status", pilot)
    assert status.returncode == 0, status.stderr
    line = next(row for row in status.stdout.splitlines() if row.startswith("client "))
    assert line.split()[2:6] == ["SYNCED"] * 4, status.stdout
    endpoints = mesh.meshctl("proxy-config", "endpoints", "client", pilot).stdout
    assert f"127.0.0.1:{p1.inbound_port}" in endpoints
    listeners = mesh.meshctl("proxy-config", "listeners", "client", pilot).stdout
    assert f"127.0.0.1:{client.outbound_port}" in listeners
    routes = json.loads(
        mesh.meshctl("proxy-config", "routes", "client", pilot, "-o", "json").stdout
    )
    assert routes[0]["name"] == "outbound|http|default"
    missing = mesh.meshctl("proxy-config", "clusters", "nobody", pilot)
    assert missing.returncode == 1 and "no connected proxy" in missing.stderr
