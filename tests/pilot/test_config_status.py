"""Config status tracking (pilot/config_status.py) driven through its hooks, case by case."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from api.resources import Resource, check_document
from pilot.config_status import ConfigStatus, answer
from pilot.xds import typeurls

CDS, EDS, LDS, RDS = typeurls.CLUSTER, typeurls.ENDPOINT, typeurls.LISTENER, typeurls.ROUTE
REVIEWS = "VirtualService/default/reviews"
RATINGS = "VirtualService/default/ratings"


def vs(name: str, revision: int) -> Resource:
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": name}}]}]},
    }
    checked = check_document(doc, "test", "default")
    assert checked.resource is not None, checked.errors
    return replace(checked.resource, resource_version=str(revision))


def push(status: ConfigStatus, conn: str, version: int, *sent: tuple[str, str]) -> None:
    """The pusher brings `conn` to snapshot `version`, writing (type, nonce) responses."""
    status.push_began(conn)
    for type_url, nonce in sent:
        status.sent(conn, type_url, nonce)
    status.push_ended(conn, version)


def resource(status: ConfigStatus, ref: str) -> dict[str, Any]:
    report = status.report(ref)
    assert report is not None
    return report["resources"][ref]  # type: ignore[no-any-return]


@pytest.fixture
def status() -> ConfigStatus:
    s = ConfigStatus()
    s.published(1, [vs("ratings", 5)])
    s.connected("a-1", "a", delta=False, version=1)
    s.connected("b-2", "b", delta=False, version=1)
    return s


def test_a_change_is_pending_until_every_response_of_its_push_is_acked(
    status: ConfigStatus,
) -> None:
    status.published(2, [vs("ratings", 5), vs("reviews", 7)])
    push(status, "a-1", 2, (LDS, "n1"), (RDS, "n2"))
    got = resource(status, REVIEWS)
    assert (got["revision"], got["snapshot"], got["affected"]) == (7, 2, 1)
    assert got["pending"] == ["a"] and got["acked"] == []
    status.acked("a-1", LDS, "n1")
    assert resource(status, REVIEWS)["pending"] == ["a"], "RDS is not ACKed yet"
    status.acked("a-1", RDS, "n2")
    got = resource(status, REVIEWS)
    assert got["acked"] == ["a"] and got["pending"] == [] and got["nacked"] == []


def test_a_type_envoy_unsubscribed_from_is_settled_though_never_acked(
    status: ConfigStatus,
) -> None:
    # A Sidecar narrows egress: the push's CDS drops every EDS cluster, Envoy unsubscribes
    # from EDS and drops the EDS response in flight unanswered (it holds none of it).
    status.published(2, [vs("ratings", 5), vs("reviews", 7)])
    push(status, "a-1", 2, (CDS, "n1"), (EDS, "n2"))
    status.acked("a-1", CDS, "n1")
    assert resource(status, REVIEWS)["pending"] == ["a"]
    status.unsubscribed("a-1", EDS)
    got = resource(status, REVIEWS)
    assert got["acked"] == ["a"] and got["pending"] == []
    # What it is sent once it subscribes again counts as usual.
    status.published(3, [vs("ratings", 5), vs("reviews", 8)])
    push(status, "a-1", 3, (CDS, "n3"), (EDS, "n4"))
    status.acked("a-1", CDS, "n3")
    assert resource(status, REVIEWS)["pending"] == ["a"]
    status.acked("a-1", EDS, "n4")
    assert resource(status, REVIEWS)["acked"] == ["a"]


def test_a_proxy_sent_nothing_or_only_endpoints_is_not_affected(status: ConfigStatus) -> None:
    status.published(2, [vs("ratings", 5), vs("reviews", 7)])
    push(status, "a-1", 2, (EDS, "n1"))  # endpoints that changed in the same push
    push(status, "b-2", 2)
    got = resource(status, REVIEWS)
    assert got["affected"] == 0 and got["acked"] == got["pending"] == []


def test_a_nack_names_the_proxy_the_type_and_envoys_error(status: ConfigStatus) -> None:
    status.published(2, [vs("ratings", 5), vs("reviews", 7)])
    push(status, "a-1", 2, (LDS, "n1"), (RDS, "n2"))
    push(status, "b-2", 2, (RDS, "n3"))
    status.acked("a-1", LDS, "n1")
    status.nacked("a-1", RDS, "n2", "Proto constraint validation failed")
    status.acked("b-2", RDS, "n3")
    got = resource(status, REVIEWS)
    assert got["affected"] == 2
    assert got["nacked"] == [
        {"proxy": "a", "type": "rds", "error": "Proto constraint validation failed"}
    ]
    assert got["acked"] == ["b"] and got["pending"] == []


def test_a_later_acked_push_counts_for_a_superseded_pending_one(status: ConfigStatus) -> None:
    status.published(2, [vs("ratings", 5), vs("reviews", 7)])
    push(status, "a-1", 2, (RDS, "n1"))
    status.published(3, [vs("ratings", 6), vs("reviews", 7)])
    push(status, "a-1", 3, (RDS, "n2"))
    status.acked("a-1", RDS, "n2")  # SotW: Envoy answers only the latest nonce
    assert resource(status, REVIEWS)["acked"] == ["a"]
    assert resource(status, RATINGS)["acked"] == ["a"]


def test_pushes_collapsed_into_one_cover_every_snapshot_they_skip(status: ConfigStatus) -> None:
    status.published(2, [vs("ratings", 5), vs("reviews", 7)])
    status.published(3, [vs("ratings", 6), vs("reviews", 7)])
    push(status, "a-1", 3, (RDS, "n1"))  # the pusher woke once, for both
    status.acked("a-1", RDS, "n1")
    assert resource(status, REVIEWS)["acked"] == ["a"]
    assert resource(status, RATINGS)["acked"] == ["a"]


def test_sotw_a_nack_stands_until_a_later_response_is_acked(status: ConfigStatus) -> None:
    status.published(2, [vs("ratings", 5), vs("reviews", 7)])
    push(status, "a-1", 2, (RDS, "n1"))
    status.nacked("a-1", RDS, "n1", "bad")
    status.acked("a-1", RDS, "n1")  # a stray answer to the refused response changes nothing
    assert resource(status, REVIEWS)["nacked"][0]["proxy"] == "a"
    status.published(3, [vs("ratings", 5), vs("reviews", 8)])  # the fix
    push(status, "a-1", 3, (RDS, "n2"))
    assert resource(status, REVIEWS)["pending"] == ["a"]
    status.acked("a-1", RDS, "n2")
    got = resource(status, REVIEWS)
    assert got["revision"] == 8 and got["acked"] == ["a"] and got["nacked"] == []


def test_delta_only_a_response_sent_after_the_nack_clears_it() -> None:
    status = ConfigStatus()
    status.published(1, [])
    status.connected("d-1", "d", delta=True, version=1)
    status.published(2, [vs("reviews", 7)])
    push(status, "d-1", 2, (RDS, "d1"))
    status.published(3, [vs("reviews", 7), vs("ratings", 9)])
    push(status, "d-1", 3, (RDS, "d2"))  # written before the NACK of d1 arrives
    status.nacked("d-1", RDS, "d1", "refused")
    status.acked("d-1", RDS, "d2")  # only d2's resources: d1's are still refused
    assert resource(status, REVIEWS)["nacked"] == [
        {"proxy": "d", "type": "rds", "error": "refused"}
    ]
    # Delta acks each response: ratings (d2) is applied, though the NACK of d1 stands.
    assert resource(status, RATINGS)["acked"] == ["d"]
    status.published(4, [vs("reviews", 7), vs("ratings", 10)])
    push(status, "d-1", 4, (RDS, "d3"))  # re-sends what was refused
    status.acked("d-1", RDS, "d3")
    assert resource(status, REVIEWS)["acked"] == ["d"]
    assert resource(status, RATINGS)["acked"] == ["d"]


def test_a_proxy_that_connects_later_is_not_affected_by_earlier_changes(
    status: ConfigStatus,
) -> None:
    status.published(2, [vs("ratings", 5), vs("reviews", 7)])
    status.connected("c-3", "c", delta=False, version=2)
    push(status, "c-3", 2, (LDS, "n1"))  # a push of a snapshot it already had
    assert resource(status, REVIEWS)["affected"] == 0


def test_a_disconnected_proxy_is_forgotten(status: ConfigStatus) -> None:
    status.published(2, [vs("ratings", 5), vs("reviews", 7)])
    push(status, "a-1", 2, (RDS, "n1"))
    status.disconnected("a-1")
    got = resource(status, REVIEWS)
    assert got["affected"] == 0 and got["pending"] == []
    status.acked("a-1", RDS, "n1")  # late hooks of a gone stream are ignored


def test_memory_stays_bounded_and_old_changes_are_never_reported_wrong() -> None:
    status = ConfigStatus(window=4)
    services = [vs(f"svc{i}", 1) for i in range(10)]
    status.published(1, [*services, vs("reviews", 1)])
    status.connected("a-1", "a", delta=False, version=1)
    status.connected("b-2", "b", delta=False, version=1)
    for version in range(2, 1002):
        services[version % 10] = vs(f"svc{version % 10}", version)  # one change a snapshot
        status.published(version, [*services, vs("reviews", 1)])
        push(status, "a-1", version, (RDS, f"a{version}"))
        status.acked("a-1", RDS, f"a{version}")
        push(status, "b-2", version, (RDS, f"b{version}"))
    assert [c.version for c in status._carriers] == [998, 999, 1000, 1001]
    assert len(status._by_version) == 4
    assert all(len(c.nonces) <= 128 for c in status._conns.values())
    old = resource(status, REVIEWS)  # carried by snapshot 1, long out of the window
    assert old["affected"] is None
    assert old["acked"] == ["a"] and old["unknown"] == ["b"], "b never ACKed anything"
    new = resource(status, "VirtualService/default/svc1")  # changed by snapshot 1001
    assert new["acked"] == ["a"] and new["pending"] == ["b"]


def test_a_snapshot_whose_changes_were_all_superseded_is_forgotten() -> None:
    status = ConfigStatus()
    status.published(1, [vs("ratings", 1), vs("reviews", 1)])
    for version in range(2, 500):
        status.published(version, [vs("ratings", version), vs("reviews", 1)])
    assert [c.version for c in status._carriers] == [1, 499]
    assert resource(status, REVIEWS)["snapshot"] == 1


def test_a_deleted_resource_is_no_longer_reported(status: ConfigStatus) -> None:
    status.published(2, [vs("reviews", 7)])
    assert status.report(RATINGS) is None
    assert list((status.report() or {})["resources"]) == [REVIEWS]


def test_answer_refuses_a_malformed_reference_and_says_what_is_unknown(
    status: ConfigStatus,
) -> None:
    assert answer(status, None)[0] == 200
    code, body = answer(status, "no-slashes")
    assert code == 400 and "KIND/NAMESPACE/NAME" in body["error"]
    code, body = answer(status, "VirtualService/default/nope")
    assert code == 404 and "nope" in body["error"]
    code, body = answer(status, RATINGS)
    assert code == 200 and RATINGS in body["resources"]
