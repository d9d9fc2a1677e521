"""Snapshots, change detection and the consistency check."""

from __future__ import annotations

from api.catalog import Instance
from pilot.model import MeshSnapshot, ServiceKey
from pilot.xds.context import PushContext, diff
from tests.pilot.fixtures import instance, snapshot

REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"


def test_first_snapshot_is_a_full_push() -> None:
    change = diff(None, snapshot(), started=5.0)
    assert change is not None and change.full and change.started == 5.0


def test_same_catalog_changes_nothing() -> None:
    assert diff(snapshot(1), snapshot(2)) is None


def test_instance_change_is_an_endpoint_push_for_that_cluster_only() -> None:
    new = MeshSnapshot.build(
        2,
        {
            "reviews": (instance("reviews", 1),),
            "ratings": (instance("ratings", 3, namespace="backend"),),
        },
    )
    change = diff(snapshot(), new)
    assert change is not None and not change.full and change.endpoints == {REVIEWS}


def test_new_service_or_port_is_a_full_push() -> None:
    more = MeshSnapshot.build(
        2, {"x": (instance("x", 9),), "reviews": snapshot().services and (instance("reviews", 1),)}
    )
    assert diff(snapshot(), more).full  # type: ignore[union-attr]
    moved = MeshSnapshot.build(
        2,
        {
            "reviews": (
                instance("reviews", 1, port=8080),
                instance("reviews", 2, version="v2", port=8080),
            ),
            "ratings": (instance("ratings", 3, namespace="backend"),),
        },
    )
    assert diff(snapshot(), moved).full  # type: ignore[union-attr]


def test_one_consul_name_in_two_namespaces_is_two_services() -> None:
    snap = MeshSnapshot.build(
        1, {"api": (instance("api", 1, namespace="a"), instance("api", 2, namespace="b"))}
    )
    assert sorted(k.hostname for k in snap.services) == [
        "api.a.svc.cluster.local",
        "api.b.svc.cluster.local",
    ]


def test_service_port_is_what_most_instances_say() -> None:
    snap = MeshSnapshot.build(
        1,
        {
            "s": (
                instance("s", 1, port=80),
                instance("s", 2, port=9080),
                instance("s", 3, port=9080),
            )
        },
    )
    assert next(iter(snap.services.values())).port == 9080


def test_unchanged_services_keep_their_serialized_resources() -> None:
    first = PushContext.build(snapshot(1))
    new = MeshSnapshot.build(
        2,
        {
            "reviews": (instance("reviews", 1),),
            "ratings": (instance("ratings", 3, namespace="backend"),),
        },
    )
    second = PushContext.build(new, first)
    ratings = "outbound|9080||ratings.backend.svc.cluster.local"
    assert second.assignments[ratings] is first.assignments[ratings]
    assert second.assignments[REVIEWS] is not first.assignments[REVIEWS]
    assert second.assignments[REVIEWS].version != first.assignments[REVIEWS].version


def test_generated_config_is_consistent() -> None:
    assert PushContext.build(snapshot()).consistent({"default", "backend", "other"}) == []


def test_duplicate_domains_are_caught() -> None:
    # Not reachable from the catalog (names must be DNS labels), which is the point:
    # the check is the net under that rule.
    odd = Instance(
        id="x",
        service="reviews.default",
        namespace="default",
        address="10.0.0.9",
        port=1,
        service_port=9080,
    )
    snap = MeshSnapshot.build(1, {"reviews": (instance("reviews", 1),), "odd": (odd,)})
    problems = PushContext.build(snap).consistent()
    assert any("domain reviews.default" in p.message for p in problems), problems
    # Withholding one of the two (the later in key order) is the remedy, never both.
    assert {k for p in problems for k in p.services} == {ServiceKey("reviews.default", "default")}
