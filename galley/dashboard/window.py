"""The last minute of each proxy's outbound request counters, and what follows from them.

Every scrape of a proxy's stats leaves one snapshot: per destination (service host,
version), the cumulative requests, 5xx responses and latency histogram buckets that
Envoy counts per outbound cluster. Rates are the difference between the newest
snapshot and the oldest within the window, over the time between them; a counter
that went down (Envoy restarted) counts from zero. Memory is bounded: a few snapshots
per proxy, proxies not seen for a window forgotten.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from galley.dashboard.promtext import Sample

__all__ = ["WANTED", "Counters", "EdgeStats", "Window", "p99_ms", "snapshot"]

TOTAL = "envoy_cluster_upstream_rq_total"
CLASSES = "envoy_cluster_upstream_rq_xx"
BUCKETS = "envoy_cluster_upstream_rq_time_bucket"
WANTED = frozenset({TOTAL, CLASSES, BUCKETS})

Dest = tuple[str, str]  # (destination_service host, destination_version or "")


@dataclass(slots=True)
class Counters:
    requests: float = 0.0
    errors: float = 0.0  # 5xx
    buckets: dict[float, float] = field(default_factory=dict)  # le (ms) -> cumulative count


def snapshot(samples: Iterable[Sample]) -> dict[Dest, Counters]:
    """Per destination, from the stats the sidecar's bootstrap tags (meshctl/bootstrap.py)."""
    out: dict[Dest, Counters] = {}
    for name, labels, value in samples:
        host = labels.get("destination_service")
        if not host:
            continue
        c = out.setdefault((host, labels.get("destination_version", "")), Counters())
        if name == TOTAL:
            c.requests += value
        elif name == CLASSES and labels.get("envoy_response_code_class") == "5":
            c.errors += value
        elif name == BUCKETS:
            try:
                le = float(labels.get("le", ""))
            except ValueError:
                continue
            c.buckets[le] = c.buckets.get(le, 0.0) + value
    return out


def _delta(new: float, old: float) -> float:
    return new - old if new >= old else new  # a reset counts from zero


def p99_ms(new: Mapping[float, float], old: Mapping[float, float]) -> float | None:
    """The 99th percentile of the requests between two histogram readings, interpolated
    within its bucket (as Prometheus' histogram_quantile); None without requests."""
    bounds = sorted(new)
    counts = [_delta(new[b], old.get(b, 0.0)) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank = 0.99 * total
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is all we know
            inside = cumulative - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, cumulative
    return lower


@dataclass(frozen=True, slots=True)
class EdgeStats:
    requests: float  # in the window
    rps: float
    error_rate: float  # share of 5xx, 0..1
    p99_ms: float | None


class Window:
    """Snapshots per proxy over the last `seconds`."""

    def __init__(self, seconds: float = 60.0, keep: int = 32) -> None:
        self.seconds = seconds
        self._keep = keep
        self._seen: dict[str, deque[tuple[float, dict[Dest, Counters]]]] = {}

    def add(self, proxy: str, now: float, snap: dict[Dest, Counters]) -> None:
        series = self._seen.setdefault(proxy, deque(maxlen=self._keep))
        series.append((now, snap))
        # Keep one snapshot at or before the window's start: the baseline of its rates.
        while len(series) > 2 and series[1][0] <= now - self.seconds:
            series.popleft()

    def forget_older_than(self, when: float) -> None:
        for proxy in [p for p, s in self._seen.items() if not s or s[-1][0] < when]:
            del self._seen[proxy]

    def samples(self, proxy: str) -> int:
        return len(self._seen.get(proxy, ()))

    def stats(self, proxy: str) -> dict[Dest, EdgeStats]:
        """Per destination with requests in the window (none before two snapshots)."""
        series = self._seen.get(proxy)
        if not series or len(series) < 2:
            return {}
        (t_old, old), (t_new, new) = series[0], series[-1]
        elapsed = t_new - t_old
        if elapsed <= 0:
            return {}
        out: dict[Dest, EdgeStats] = {}
        for dest, c in new.items():
            before = old.get(dest, Counters())
            requests = _delta(c.requests, before.requests)
            if requests <= 0:
                continue
            errors = min(requests, _delta(c.errors, before.errors))
            out[dest] = EdgeStats(
                requests, requests / elapsed, errors / requests, p99_ms(c.buckets, before.buckets)
            )
        return out
