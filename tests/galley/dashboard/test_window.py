"""Stats in, rates out: the Prometheus text Envoy serves, the window's arithmetic."""

from __future__ import annotations

import pytest

from galley.dashboard.promtext import parse
from galley.dashboard.window import WANTED, Counters, Window, p99_ms, snapshot

TAGS = (
    'source_workload="productpage-v1",envoy_cluster_name="outbound|9080|v1|reviews",'
    'destination_service="reviews.default.svc.cluster.local",destination_version="v1"'
)


def stats(total: int, errors: int, buckets: dict[str, int]) -> str:
    lines = [
        "# TYPE envoy_cluster_upstream_rq_total counter",
        f"envoy_cluster_upstream_rq_total{{{TAGS}}} {total}",
        f'envoy_cluster_upstream_rq_xx{{envoy_response_code_class="2",{TAGS}}} {total - errors}',
        f'envoy_cluster_upstream_rq_xx{{envoy_response_code_class="5",{TAGS}}} {errors}',
        'envoy_cluster_upstream_rq_total{envoy_cluster_name="xds-grpc"} 7',
        'envoy_server_live{label="a \\"quoted\\" value"} 1',
    ]
    lines += [
        f'envoy_cluster_upstream_rq_time_bucket{{{TAGS},le="{le}"}} {n}'
        for le, n in buckets.items()
    ]
    return "\n".join(lines) + "\n"


def test_parse_reads_labels_with_escapes_and_skips_the_rest() -> None:
    text = 'a_total{x="1",y="say \\"hi\\"\\n"} 3\n# HELP b\nbroken{x="1" 2\nb 4 1700000000\n'
    assert list(parse(text)) == [("a_total", {"x": "1", "y": 'say "hi"\n'}, 3.0), ("b", {}, 4.0)]
    assert [s[0] for s in parse(text, frozenset({"b"}))] == ["b"]


def test_snapshot_keeps_the_tagged_destinations_only() -> None:
    snap = snapshot(parse(stats(10, 1, {"5": 9, "+Inf": 10}), WANTED))
    assert list(snap) == [("reviews.default.svc.cluster.local", "v1")]
    c = snap[("reviews.default.svc.cluster.local", "v1")]
    assert (c.requests, c.errors, c.buckets) == (10, 1, {5.0: 9, float("inf"): 10})


def test_rates_error_share_and_p99_over_the_window() -> None:
    w = Window(60)
    dest = ("reviews.default.svc.cluster.local", "v1")
    w.add("pp", 0.0, snapshot(parse(stats(100, 0, {"10": 100, "100": 100, "+Inf": 100}))))
    assert w.stats("pp") == {}  # one snapshot: no rate yet
    later = {"10": 100 + 150, "100": 100 + 198, "+Inf": 100 + 200}
    w.add("pp", 10.0, snapshot(parse(stats(300, 4, later))))
    s = w.stats("pp")[dest]
    assert s.requests == 200 and s.rps == pytest.approx(20.0)
    assert s.error_rate == pytest.approx(0.02)
    # rank 198 of 200 falls at the top of the (10, 100] bucket
    assert s.p99_ms == pytest.approx(100.0)


def test_old_snapshots_leave_the_window_and_a_reset_counts_from_zero() -> None:
    w = Window(60)
    for t, total in ((0, 10), (30, 20), (70, 30), (100, 40)):
        w.add("pp", float(t), {("h", ""): Counters(total)})
    # The baseline is the newest snapshot at or before the window's start (t=30, 70 s ago).
    assert w.stats("pp")[("h", "")].rps == pytest.approx((40 - 20) / 70)
    w.add("pp", 101.0, {("h", ""): Counters(5)})  # Envoy restarted
    assert w.stats("pp")[("h", "")].requests == 5
    w.forget_older_than(200)
    assert w.samples("pp") == 0


def test_p99_without_requests_and_beyond_the_last_bucket() -> None:
    assert p99_ms({1.0: 0, float("inf"): 0}, {}) is None
    assert p99_ms({1.0: 0, 5.0: 0, float("inf"): 10}, {}) == 5.0
    assert p99_ms({1.0: 100, float("inf"): 100}, {}) == pytest.approx(0.99)
