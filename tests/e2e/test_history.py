"""meshctl history / rollback end to end: a rollback changes what a client sees through
a real Envoy (90/10 canary -> all v1 -> rollback -> the canary again)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = pytest.mark.e2e

SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
CANARY = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
"""
ALL_V1 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}}
"""
V2_CLUSTER = "outbound|9080|v2|reviews.default.svc.cluster.local"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(Path(tmp_path_factory.mktemp("history")))
    try:
        m.start_consul()
        m.start_galley()
        m.start_pilot()
        yield m
    finally:
        m.stop()


def routes(w: Workload) -> str:
    return w.admin("/config_dump?resource=dynamic_route_configs")


def test_rollback_changes_what_the_client_sees(mesh: Mesh) -> None:
    mesh.add("reviews", "reviews-v1", version="v1")
    mesh.add("reviews", "reviews-v2", version="v2")
    client = mesh.client("client")
    g = mesh.galley_args()

    mesh.apply(SUBSETS + "---" + CANARY)
    eventually(lambda: '"weight": 90' in routes(client), what="canary pushed")
    eventually(
        lambda: set(mesh.instances_seen(client, "reviews", 60)) == {"reviews-v1", "reviews-v2"},
        what="both subsets serving",
    )

    mesh.apply(ALL_V1)
    eventually(lambda: V2_CLUSTER not in routes(client), what="all-v1 pushed")
    assert set(mesh.instances_seen(client, "reviews", 40)) == {"reviews-v1"}

    listed = mesh.meshctl("history", "vs", "reviews", *g)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("2", "admin", "update"),
        ("1", "admin", "create"),
    ]
    assert listed.stdout.splitlines()[1].endswith("(current)")
    shown = yaml.safe_load(mesh.meshctl("history", "vs", "reviews", "--show", "1", *g).stdout)
    assert [r["weight"] for r in shown["spec"]["http"][0]["route"]] == [90, 10]

    back = mesh.meshctl("rollback", "vs", "reviews", *g)
    assert back.returncode == 0, back.stderr
    assert "VirtualService/default/reviews rolled back to revision 1: now revision 3" in (
        back.stdout
    )
    eventually(
        lambda: '"weight": 90' in routes(client) and V2_CLUSTER in routes(client),
        what="canary pushed again",
    )
    # 10% to v2: in 200 requests, all v1 has odds of 0.9^200 (~7e-10).
    eventually(
        lambda: "reviews-v2" in mesh.instances_seen(client, "reviews", 200),
        timeout=30,
        what="v2 serving again",
    )

    as_json = json.loads(mesh.meshctl("history", "vs", "reviews", "-o", "json", *g).stdout)
    newest = as_json["items"][0]
    assert (newest["revision"], newest["operation"], newest["current"]) == (3, "rollback", True)

    # Bad input: one clear line each, exit 1.
    out = mesh.meshctl("rollback", "vs", "reviews", "--to", "99", *g)
    assert out.returncode == 1 and "no revision 99 (the kept ones: 1, 2, 3)" in out.stderr
    out = mesh.meshctl("history", "vs", "nothing-here", *g)
    assert out.returncode == 1 and "no such resource" in out.stderr
    out = mesh.meshctl("rollback", "vs", "reviews", f"--galley-addr=127.0.0.1:{mesh.galley_http}")
    assert out.returncode == 1 and "Bearer" in out.stderr
