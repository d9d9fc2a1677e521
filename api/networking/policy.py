"""Models shared by DestinationRule, Gateway, ServiceEntry and Sidecar.

Traffic policy (load balancing, connection pool, outlier detection, client
TLS, tunnel, PROXY protocol, retry budget), server-side TLS options, ports
and workload selectors, as networking.istio.io/v1 spells them. Validation of
these pieces lives in `api.networking.policy_checks`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from api.model import Spec

__all__ = [
    "AlphaWorkloadSelector",
    "ClientTLSSettings",
    "ConnectionPoolSettings",
    "ConsistentHashLB",
    "Distribute",
    "Failover",
    "HTTPCookie",
    "HTTPSettings",
    "Http2KeepAlive",
    "Int32",
    "LoadBalancerSettings",
    "LocalityLoadBalancerSetting",
    "MagLev",
    "OutlierDetection",
    "Port",
    "PortSelector",
    "PortTrafficPolicy",
    "ProxyProtocol",
    "RetryBudget",
    "RingHash",
    "ServerTLSSettings",
    "TCPSettings",
    "TLSCertificate",
    "TcpKeepalive",
    "TrafficPolicy",
    "TunnelSettings",
    "UInt32",
    "WarmupConfiguration",
    "WorkloadSelector",
    "ZoneAwareLoadBalancerSetting",
]

# Protobuf integer types as YAML integers (wrapper types such as UInt32Value are plain values too).
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
UInt32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
UInt64 = Annotated[int, Field(ge=0, le=2**64 - 1)]


# --- selectors and ports -------------------------------------------------------------------------


class WorkloadSelector(Spec):
    """istio.type.v1beta1.WorkloadSelector (DestinationRule.workloadSelector)."""

    match_labels: dict[str, str] | None = None


class AlphaWorkloadSelector(Spec):
    """networking WorkloadSelector (ServiceEntry and Sidecar `workloadSelector.labels`)."""

    labels: dict[str, str] | None = None


class Port(Spec):
    """Gateway Port, ServiceEntry ServicePort and Sidecar SidecarPort (same shape)."""

    number: UInt32 | None = None
    protocol: str | None = None
    name: str | None = None
    target_port: UInt32 | None = None


class PortSelector(Spec):
    number: UInt32 | None = None


# --- load balancing ------------------------------------------------------------------------------

SimpleLB = Literal[
    "UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"
]


class CookieAttribute(Spec):
    name: str | None = None
    value: str | None = None


class HTTPCookie(Spec):
    name: str | None = None
    path: str | None = None
    ttl: str | None = None
    attributes: list[CookieAttribute] | None = None


class RingHash(Spec):
    minimum_ring_size: UInt64 | None = None


class MagLev(Spec):
    table_size: UInt64 | None = None


class ConsistentHashLB(Spec):
    # oneof hash_key
    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    # oneof hash_algorithm
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: UInt64 | None = None  # deprecated: use ringHash.minimumRingSize


class Distribute(Spec):
    from_: str | None = Field(default=None, alias="from")
    to: dict[str, UInt32] | None = None


class Failover(Spec):
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


class LocalityLoadBalancerSetting(Spec):
    distribute: list[Distribute] | None = None
    failover: list[Failover] | None = None
    failover_priority: list[str] | None = None
    enabled: bool | None = None


class ZoneAwareLoadBalancerSetting(Spec):
    enabled: bool | None = None
    failover: list[Failover] | None = None  # regions only: zones are handled automatically
    failover_priority: list[str] | None = None
    # UInt32Value (UInt64Value before istio/api 6d586ec); the CRD's range is 1..2^32-1,
    # unset means 6.
    min_cluster_size: Annotated[int, Field(ge=1, le=2**32 - 1)] | None = None


class WarmupConfiguration(Spec):
    duration: str
    minimum_percent: float | None = None
    aggression: float | None = None


class LoadBalancerSettings(Spec):
    # oneof lb_policy
    simple: SimpleLB | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    zone_aware_lb_setting: ZoneAwareLoadBalancerSetting | None = None
    warmup_duration_secs: str | None = None
    warmup: WarmupConfiguration | None = None


# --- connection pool -----------------------------------------------------------------------------


class TcpKeepalive(Spec):
    probes: UInt32 | None = None
    time: str | None = None
    interval: str | None = None


class TCPSettings(Spec):
    max_connections: Int32 | None = None
    connect_timeout: str | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: str | None = None
    idle_timeout: str | None = None


class Http2KeepAlive(Spec):
    interval: str | None = None
    timeout: str | None = None


class HTTPSettings(Spec):
    http1_max_pending_requests: Int32 | None = None
    http2_max_requests: Int32 | None = None
    max_requests_per_connection: Int32 | None = None
    max_retries: Int32 | None = None
    idle_timeout: str | None = None
    h2_upgrade_policy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: Int32 | None = None
    http2_keep_alive: Http2KeepAlive | None = None


class ConnectionPoolSettings(Spec):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


# --- outlier detection ---------------------------------------------------------------------------


class OutlierDetection(Spec):
    split_external_local_origin_errors: bool | None = None
    consecutive_local_origin_failures: UInt32 | None = None
    consecutive_gateway_errors: UInt32 | None = None
    consecutive_5xx_errors: UInt32 | None = Field(default=None, alias="consecutive5xxErrors")
    interval: str | None = None
    base_ejection_time: str | None = None
    max_ejection_percent: Int32 | None = None
    min_health_percent: Int32 | None = None
    consecutive_errors: Int32 | None = None  # deprecated
    outlier_detection_http_error_codes: list[UInt32] | None = None


# --- TLS -----------------------------------------------------------------------------------------

ClientTLSMode = Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]
ServerTLSMode = Literal[
    "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
]
TLSProtocol = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]


class ClientTLSSettings(Spec):
    mode: ClientTLSMode | None = None  # unset means DISABLE
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] | None = None
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    ca_crl: str | None = None


class TLSCertificate(Spec):
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None


class ServerTLSSettings(Spec):
    https_redirect: bool | None = None
    mode: ServerTLSMode | None = None  # unset means PASSTHROUGH
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: list[str] | None = None
    ca_cert_credential_name: str | None = None
    tls_certificates: list[TLSCertificate] | None = None
    subject_alt_names: list[str] | None = None
    verify_certificate_spki: list[str] | None = None
    verify_certificate_hash: list[str] | None = None
    min_protocol_version: TLSProtocol | None = None
    max_protocol_version: TLSProtocol | None = None
    cipher_suites: list[str] | None = None
    insecure_skip_verify: bool | None = None


# --- traffic policy ------------------------------------------------------------------------------


class TunnelSettings(Spec):
    protocol: str | None = None
    target_host: str | None = None
    target_port: UInt32 | None = None


class ProxyProtocol(Spec):
    version: Literal["V1", "V2"] | None = None


class RetryBudget(Spec):
    percent: float | None = None
    min_retry_concurrency: UInt32 | None = None
    budget_interval: str | None = None


class PortTrafficPolicy(Spec):
    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


class TrafficPolicy(Spec):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] | None = None
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: RetryBudget | None = None
