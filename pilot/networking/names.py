"""Envoy resource names, in one place so that every builder agrees."""

from __future__ import annotations

from pilot.model import ServiceKey

__all__ = [
    "INBOUND_AUTH_FILTERS",
    "JWT_AUTHN_FILTER",
    "RBAC_ALLOW_FILTER",
    "RBAC_AUDIT_FILTER",
    "RBAC_DENY_FILTER",
    "inbound_cluster",
    "inbound_listener",
    "outbound_cluster",
    "outbound_listener",
    "outbound_route",
    "outbound_sni",
]


def outbound_cluster(key: ServiceKey, port: int, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{key.hostname}"


def outbound_sni(port: int, subset: str, hostname: str) -> str:
    """The SNI a sidecar sends with mesh mTLS (Istio's form)."""
    return f"outbound_.{port}_.{subset}_.{hostname}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}||"


def outbound_listener(address: str, port: int) -> str:
    return f"outbound_{address}_{port}"


def inbound_listener(address: str, port: int) -> str:
    return f"inbound_{address}_{port}"


def outbound_route(namespace: str) -> str:
    """One outbound route table per namespace: short names resolve within it."""
    return f"outbound|http|{namespace}"


# The inbound HTTP filters that enforce RequestAuthentication and
# AuthorizationPolicy, in the order they run. Each is also the name of the
# ECDS resource (TypedExtensionConfig) that carries its config: Envoy asks for
# a discovered filter's config by the filter's name.
JWT_AUTHN_FILTER = "envoy.filters.http.jwt_authn"
RBAC_AUDIT_FILTER = "envoy.filters.http.rbac.audit"
RBAC_DENY_FILTER = "envoy.filters.http.rbac.deny"
RBAC_ALLOW_FILTER = "envoy.filters.http.rbac"
INBOUND_AUTH_FILTERS = (JWT_AUTHN_FILTER, RBAC_AUDIT_FILTER, RBAC_DENY_FILTER, RBAC_ALLOW_FILTER)
