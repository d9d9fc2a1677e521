"""The graph's edges, shares and layout, and the security pages' policy rule (pure)."""

from __future__ import annotations

import itertools

from api.catalog import Instance
from api.resources import check_document
from galley.dashboard.catalog import Workload
from galley.dashboard.graph import ROW_H, build, health
from galley.dashboard.policy import attached, mtls_mode
from galley.dashboard.targets import Target, parse_targets
from galley.dashboard.views import sync_state
from galley.dashboard.window import EdgeStats

MESH = ".default.svc.cluster.local"


def wl(service: str, version: str = "v1", healthy: bool = True, **labels: str) -> Workload:
    i = Instance(
        f"{service}-{version}",
        service,
        "default",
        "127.0.0.1",
        1000,
        labels={"app": service, "version": version, **labels},
    )
    return Workload(i, healthy, 2000)


def target(w: Workload) -> Target:
    i = w.instance
    return Target(i.service, i.namespace, w.version, i.id, "127.0.0.1:2000")


def test_a_canary_split_is_one_edge_per_version_with_its_share() -> None:
    page, r1, r3 = wl("productpage"), wl("reviews", "v1"), wl("reviews", "v3", healthy=False)
    gw = parse_targets("ingressgateway=127.0.0.1:15090")
    stats = {
        "ingressgateway": {(f"productpage{MESH}", ""): EdgeStats(100, 10.0, 0.0, 20.0)},
        "productpage-v1": {
            (f"reviews{MESH}", "v1"): EdgeStats(90, 9.0, 0.0, 30.0),
            (f"reviews{MESH}", "v3"): EdgeStats(10, 1.0, 0.1, 2000.0),
            ("httpbin.org", ""): EdgeStats(5, 0.5, 0.02, None),
        },
    }
    g = build([page, r1, r3], gw, [*gw, *map(target, (page, r1, r3))], stats)
    edges = {(e.source, e.destination, e.destination_version): e for e in g.edges}
    v1 = edges[("productpage.default", "reviews.default", "v1")]
    v3 = edges[("productpage.default", "reviews.default", "v3")]
    assert (v1.share, v3.share) == (0.9, 0.1)
    assert (v1.health, v3.health) == ("green", "red")
    assert edges[("productpage.default", "httpbin.org", "")].health == "amber"
    assert edges[("ingressgateway.istio-system", "productpage.default", "")].share is None
    nodes = {n.id: n for n in g.nodes}
    assert nodes["httpbin.org"].kind == "external"
    reviews = {v.version: (v.instances, v.healthy) for v in nodes["reviews.default"].versions}
    assert reviews == {"v1": (1, 1), "v3": (1, 0)}
    # Columns by call depth: gateway, productpage, then what it calls.
    columns = {n.id: n.column for n in g.nodes}
    assert columns["ingressgateway.istio-system"] == 0
    assert columns["productpage.default"] == 1
    assert columns["reviews.default"] == columns["httpbin.org"] == 2


def test_health_thresholds() -> None:
    assert health(0.0, 10.0) == "green"
    assert health(0.0, 1500.0) == health(0.02, None) == "amber"
    assert health(0.05, None) == "red"


def test_fifty_services_are_laid_out_without_overlap_and_alike_every_time() -> None:
    workloads = [wl(f"svc-{i:02d}", v) for i in range(50) for v in ("v1", "v2")[: 1 + i % 2]]
    by_id = {w.instance.id: w for w in workloads}
    stats = {  # a binary tree: svc-i calls svc-(2i+1) and svc-(2i+2)
        f"svc-{i:02d}-v1": {
            (f"svc-{c:02d}{MESH}", ""): EdgeStats(10, 1.0, 0.0, 5.0) for c in (2 * i + 1, 2 * i + 2)
        }
        for i in range(20)
    }
    targets = [target(by_id[p]) for p in stats]
    first = build(workloads, [], targets, stats)
    again = build(list(reversed(workloads)), [], targets, stats)
    assert [(n.id, n.x, n.y) for n in first.nodes] == [(n.id, n.x, n.y) for n in again.nodes]
    assert len(first.nodes) == 50 and len(first.edges) == 40
    for a, b in itertools.combinations(first.nodes, 2):
        if a.x == b.x:
            assert a.y + a.height <= b.y or b.y + b.height <= a.y, (a.id, b.id)
        assert a.x + a.width <= first.width and a.y + a.height <= first.height
    assert first.height < 2000  # columns, not one tall list
    two = next(n for n in first.nodes if n.id == "svc-01.default")
    assert [v.y - two.y for v in two.versions] == [26 + ROW_H / 2, 26 + ROW_H * 1.5]


def resource(doc: str, namespace: str, created: int) -> object:
    import yaml

    c = check_document(yaml.safe_load(doc), "test", namespace)
    assert c.resource is not None, c.errors
    from dataclasses import replace

    return replace(c.resource, created=created)


def test_policies_attach_as_istio_and_the_narrowest_mtls_mode_wins() -> None:
    mesh = resource(
        "{apiVersion: security.istio.io/v1, kind: PeerAuthentication,"
        " metadata: {name: mesh}, spec: {mtls: {mode: STRICT}}}",
        "istio-system",
        1,
    )
    ns_wide = resource(
        "{apiVersion: security.istio.io/v1, kind: PeerAuthentication,"
        " metadata: {name: ns}, spec: {mtls: {mode: UNSET}}}",
        "shop",
        2,
    )
    web = resource(
        "{apiVersion: security.istio.io/v1, kind: PeerAuthentication, metadata: {name: web},"
        " spec: {selector: {matchLabels: {app: web}}, mtls: {mode: PERMISSIVE},"
        " portLevelMtls: {'8080': {mode: DISABLE}}}}",
        "shop",
        3,
    )
    allow = resource(
        "{apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: {name: all},"
        " spec: {selector: {matchLabels: {app: web}}}}",
        "istio-system",
        4,
    )
    other_ns = resource(
        "{apiVersion: security.istio.io/v1, kind: AuthorizationPolicy, metadata: {name: x},"
        " spec: {}}",
        "elsewhere",
        5,
    )
    resources = [allow, web, other_ns, ns_wide, mesh]
    found = attached(resources, "shop", {"app": "web"}, "istio-system")  # type: ignore[arg-type]
    assert [(a.resource.name, a.level) for a in found] == [
        ("mesh", "mesh"),
        ("ns", "namespace"),
        ("web", "workload"),
        ("all", "workload"),
    ]
    mode = mtls_mode(found)
    assert (mode.mode, mode.source, dict(mode.ports)) == (
        "PERMISSIVE",
        "PeerAuthentication/shop/web",
        {"8080": "DISABLE"},
    )
    # Another workload of the namespace: UNSET there inherits the mesh's STRICT.
    db = attached(resources, "shop", {"app": "db"}, "istio-system")  # type: ignore[arg-type]
    assert mtls_mode(db).mode == "STRICT" and mtls_mode(db).source.endswith("istio-system/mesh")
    assert mtls_mode([]).mode == "PERMISSIVE"


def test_sync_states() -> None:
    assert sync_state(None) == sync_state({"version_sent": ""}) == "NOT SENT"
    assert sync_state({"version_sent": "2", "version_acked": "2"}) == "SYNCED"
    assert sync_state({"version_sent": "3", "version_acked": "2"}) == "STALE"
    assert sync_state({"version_sent": "3", "version_acked": "2", "nack": "bad"}) == "NACKED"


def test_stats_targets_setting() -> None:
    assert parse_targets(" gw=10.0.0.1:15090, egress.mesh=h:1 ")[1].namespace == "mesh"
    for bad in ("gw", "gw=nohost", "Bad_Name=h:1", "gw=h:99999"):
        try:
            parse_targets(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
