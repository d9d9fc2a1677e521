"""Every xDS type URL Pilot serves, in one file."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import extension_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "EXTENSION_CONFIG",
    "LISTENER",
    "MESSAGES",
    "PUSH_ORDER",
    "ROUTE",
    "SHORT",
    "WILDCARD_TYPES",
]

_PREFIX = "type.googleapis.com/envoy.config."
CLUSTER = _PREFIX + "cluster.v3.Cluster"
ENDPOINT = _PREFIX + "endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "listener.v3.Listener"
ROUTE = _PREFIX + "route.v3.RouteConfiguration"
# ECDS: the config of filters that listeners name but do not carry (authn, authz).
EXTENSION_CONFIG = _PREFIX + "core.v3.TypedExtensionConfig"

# Make-before-break order for a full push, as Envoy's ADS docs prescribe; filter
# configs go before the listeners that name them.
PUSH_ORDER = (CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE)
# Types whose SotW responses carry the whole set; an empty name list = all.
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})
SHORT = {
    CLUSTER: "cds",
    ENDPOINT: "eds",
    EXTENSION_CONFIG: "ecds",
    LISTENER: "lds",
    ROUTE: "rds",
}
# The message each type's resources are (to decode them for debug pages and plans).
MESSAGES: dict[str, type[Message]] = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    EXTENSION_CONFIG: extension_pb2.TypedExtensionConfig,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
}
