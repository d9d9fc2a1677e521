"""Pilot's Prometheus metrics, on a registry of its own (several Pilots per test process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connected = Gauge(
            "pilot_xds_connected_proxies", "Proxies with an open ADS stream", registry=r
        )
        self.pushes = Counter("pilot_xds_pushes", "xDS responses sent", ["type"], registry=r)
        self.push_bytes = Counter(
            "pilot_xds_push_bytes", "Bytes of xDS responses sent", ["type"], registry=r
        )
        # Per written response: the labelled children, looked up once per type.
        self._sent: dict[str, tuple[Any, Any]] = {}
        self.nacks = Counter(
            "pilot_xds_nacks", "Responses Envoy rejected (NACK)", ["type"], registry=r
        )
        self.rejected_requests = Counter(
            "pilot_xds_rejected_requests", "Malformed or invalid xDS requests refused", registry=r
        )
        self.push_seconds = Histogram(
            "pilot_push_duration_seconds",
            "Time to build a snapshot and queue it to every connection",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.convergence = Histogram(
            "pilot_proxy_convergence_seconds",
            "From the first event of a push until a proxy ACKed it",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.push_errors = Counter(
            "pilot_xds_push_errors",
            "Pushes that failed to generate (bugs); config kept",
            registry=r,
        )
        self.snapshots = Counter("pilot_snapshots", "Mesh snapshots published", registry=r)
        self.push_failures = Counter(
            "pilot_push_failures",
            "Snapshots that could not be built (a bug; the last good config keeps being served)",
            registry=r,
        )
        self.inconsistent = Counter(
            "pilot_snapshot_inconsistent",
            "Consistency check failures (the services involved were withheld; a bug)",
            registry=r,
        )
        self.left_out = Gauge(
            "pilot_config_left_out",
            "Config resources left out because building the snapshot with them raised "
            "(a bug; see /debug/conflicts)",
            registry=r,
        )
        self.conflicts = Gauge(
            "pilot_config_conflicts",
            "Config left out because older config claims the same host (see /debug/conflicts)",
            registry=r,
        )
        self.registry_events = Counter(
            "pilot_registry_events", "Catalog changes seen by the watches", registry=r
        )
        self.registry_errors = Counter(
            "pilot_registry_errors", "Failed Consul queries (retried with backoff)", registry=r
        )
        self.config_invalid = Counter(
            "pilot_config_invalid", "Stored config values refused on read", registry=r
        )
        self.authz_failed_closed = Gauge(
            "pilot_authz_rules_failed_closed",
            "AuthorizationPolicy rules Pilot cannot translate: an ALLOW or AUDIT rule "
            "matches nothing, a DENY rule matches every request",
            registry=r,
        )
        self.config_resources = Gauge(
            "pilot_config_resources", "Config resources in force", registry=r
        )
        self.services = Gauge("pilot_services", "Mesh services in the current snapshot", registry=r)
        self.endpoints = Gauge(
            "pilot_endpoints", "Healthy endpoints in the current snapshot", registry=r
        )

    def sent(self, short_type: str, size: int) -> None:
        """One xDS response of `size` bytes written."""
        children = self._sent.get(short_type)
        if children is None:
            children = (self.pushes.labels(short_type), self.push_bytes.labels(short_type))
            self._sent[short_type] = children
        children[0].inc()
        children[1].inc(size)
