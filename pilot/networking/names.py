"""Envoy resource names, in one place so that every builder agrees."""

from __future__ import annotations

from api import credential_names
from pilot.model import ServiceKey

__all__ = [
    "DEFAULT_ROUTE",
    "EXT_AUTHZ_FILTER",
    "EXT_AUTHZ_NONE_CLUSTER",
    "EXT_AUTHZ_RBAC_FILTER",
    "INBOUND_AUTH_FILTERS",
    "JWT_AUTHN_FILTER",
    "NETWORK_AUTH_FILTERS",
    "NETWORK_RBAC_ALLOW_FILTER",
    "NETWORK_RBAC_DENY_FILTER",
    "RBAC_ALLOW_FILTER",
    "RBAC_AUDIT_FILTER",
    "RBAC_DENY_FILTER",
    "ROOT_SECRET",
    "WORKLOAD_SECRET",
    "ZIPKIN_CLUSTER",
    "credential_ca_secret",
    "credential_secret",
    "egress_route",
    "gateway_https_route",
    "gateway_listener",
    "gateway_route",
    "gateway_stat_prefix",
    "gateway_tcp_chain",
    "gateway_tls_chain",
    "gateway_vhost",
    "inbound_cluster",
    "inbound_listener",
    "inbound_route",
    "inbound_vhost",
    "outbound_cluster",
    "outbound_listener",
    "outbound_route",
    "outbound_sni",
    "outbound_vhost",
    "unknown_cluster",
]


def outbound_cluster(key: ServiceKey, port: int, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{key.hostname}"


def outbound_sni(port: int, subset: str, hostname: str) -> str:
    """The SNI a sidecar sends with mesh mTLS (Istio's form)."""
    return f"outbound_.{port}_.{subset}_.{hostname}"


def outbound_vhost(hostname: str, port: int) -> str:
    return f"{hostname}:{port}"


def unknown_cluster(port: int | None, subset: str, hostname: str) -> str:
    """A destination host no service has: a cluster name Envoy lacks, so it answers 503
    (Istio's BlackHoleCluster, but for that host)."""
    return f"outbound|{port or 80}|{subset}|{hostname}"


def inbound_cluster(port: int) -> str:
    return f"inbound|{port}||"


def inbound_route(port: int) -> str:
    return f"inbound|{port}"


def inbound_vhost(port: int) -> str:
    return f"inbound|http|{port}"


def gateway_listener(address: str, port: int) -> str:
    return f"gateway_{address}_{port}"


def gateway_stat_prefix(port: int) -> str:
    return f"gateway_{port}"


def gateway_route(port: int) -> str:
    """One route table per gateway port: ``http.<port>``."""
    return f"http.{port}"


def gateway_https_route(port: int, port_name: str, gateway: str) -> str:
    """One route table per TLS-terminating server (Istio's ``https.<port>.<name>.<gw>.<ns>``):
    each server is its own SNI filter chain, so each routes only its own hosts."""
    namespace, _, name = gateway.partition("/")
    return f"https.{port}.{port_name}.{name}.{namespace}"


# The SDS secrets every mesh proxy gets from Citadel: its own certificate and key, and
# the mesh's trust bundle (Istio's names).
WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"

# The route of a virtual host that no VirtualService shapes.
DEFAULT_ROUTE = "default"

# The cluster an unused ext_authz filter names: it never exists, because the filter's
# gate matches nothing and so never calls it.
EXT_AUTHZ_NONE_CLUSTER = "ext-authz-none"


# A gateway's server certificate named by `credentialName`, and the CA that verifies
# its clients (`api.credential_names`): `kubernetes://NAME` of the gateway's own
# namespace, or `kubernetes-gateway://NS/NAME`, which Citadel serves to a gateway of
# another namespace only while a ReferenceGrant in NS allows it.
def credential_secret(credential: str) -> str:
    return credential_names.sds_name(credential)


def credential_ca_secret(credential: str) -> str:
    return credential_names.ca_sds_name(credential)


def gateway_vhost(gateway: str, namespace: str, virtual_service: str, port: int) -> str:
    return f"{gateway}|{namespace}/{virtual_service}:{port}"


# The cluster of the mesh's trace collector (Pilot's --zipkin-addr).
ZIPKIN_CLUSTER = "zipkin"


def outbound_listener(address: str, port: int) -> str:
    return f"outbound_{address}_{port}"


def inbound_listener(address: str, port: int) -> str:
    return f"inbound_{address}_{port}"


def egress_route(bind: str, port: int) -> str:
    """The route table of a Sidecar egress listener with an HTTP port (bind:port): it
    routes only that egress entry's hosts."""
    return f"outbound|{port}|{bind}|http"


def gateway_tcp_chain(port: int) -> str:
    """The filter chain of a gateway's plain TCP server on a port (one per port)."""
    return f"tcp.{port}"


def gateway_tls_chain(port: int, port_name: str, gateway: str) -> str:
    """The filter chain of a TLS server that terminates TLS and relays TCP."""
    namespace, _, name = gateway.partition("/")
    return f"tls.{port}.{port_name}.{name}.{namespace}"


def outbound_route(namespace: str) -> str:
    """One outbound route table per namespace: short names resolve within it."""
    return f"outbound|http|{namespace}"


# The inbound HTTP filters that enforce RequestAuthentication and
# AuthorizationPolicy, in the order they run. Each is also the name of the
# ECDS resource (TypedExtensionConfig) that carries its config: Envoy asks for
# a discovered filter's config by the filter's name.
EXT_AUTHZ_RBAC_FILTER = "envoy.filters.http.rbac.ext_authz"  # marks what CUSTOM rules match
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
JWT_AUTHN_FILTER = "envoy.filters.http.jwt_authn"
RBAC_AUDIT_FILTER = "envoy.filters.http.rbac.audit"
RBAC_DENY_FILTER = "envoy.filters.http.rbac.deny"
RBAC_ALLOW_FILTER = "envoy.filters.http.rbac"
# Istio's order: CUSTOM (an external authorizer), request authentication, AUDIT, DENY, ALLOW.
INBOUND_AUTH_FILTERS = (
    EXT_AUTHZ_RBAC_FILTER,
    EXT_AUTHZ_FILTER,
    JWT_AUTHN_FILTER,
    RBAC_AUDIT_FILTER,
    RBAC_DENY_FILTER,
    RBAC_ALLOW_FILTER,
)

# The network filters that enforce AuthorizationPolicy on TCP listeners (a sidecar's
# inbound TCP listener, a gateway's TCP servers), in the order they run; like the
# HTTP ones, each names the ECDS resource that carries its config.
NETWORK_RBAC_DENY_FILTER = "envoy.filters.network.rbac.deny"
NETWORK_RBAC_ALLOW_FILTER = "envoy.filters.network.rbac"
NETWORK_AUTH_FILTERS = (NETWORK_RBAC_DENY_FILTER, NETWORK_RBAC_ALLOW_FILTER)
