"""Every xDS type URL Pilot serves, in one file."""

from __future__ import annotations

__all__ = ["CLUSTER", "ENDPOINT", "LISTENER", "PUSH_ORDER", "ROUTE", "SHORT", "WILDCARD_TYPES"]

_PREFIX = "type.googleapis.com/envoy.config."
CLUSTER = _PREFIX + "cluster.v3.Cluster"
ENDPOINT = _PREFIX + "endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "listener.v3.Listener"
ROUTE = _PREFIX + "route.v3.RouteConfiguration"

# Make-before-break order for a full push, as Envoy's ADS docs prescribe.
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
# Types whose SotW responses carry the whole set; an empty name list = all.
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})
SHORT = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds"}
