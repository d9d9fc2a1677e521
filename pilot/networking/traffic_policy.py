"""DestinationRule traffic policy -> Envoy cluster settings.

Load balancing, connection pool (circuit breakers, HTTP protocol options),
outlier detection and client TLS. Port-level settings win over the rule's
for their port, and a subset's policy over both, field block by block, as
Istio merges them. `locality_lb` says which locality load balancing a merged
policy puts in force (its endpoints are built per proxy locality, see endpoint).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2
from envoy.type.v3 import percent_pb2

from api.networking.policy import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    HTTPSettings,
    LoadBalancerSettings,
    LocalityLoadBalancerSetting,
    OutlierDetection,
    PortTrafficPolicy,
    TCPSettings,
    TrafficPolicy,
)
from pilot.networking.protos import duration, pack
from pilot.networking.tls_files import loadable

__all__ = [
    "MESH_LOCALITY_LB",
    "LocalityLb",
    "Policy",
    "apply_policy",
    "locality_lb",
    "merged_policy",
    "san_matchers",
]

_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_SIMPLE_LB = {
    "ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN,
    "LEAST_REQUEST": cluster_pb2.Cluster.LEAST_REQUEST,
    "LEAST_CONN": cluster_pb2.Cluster.LEAST_REQUEST,
    "RANDOM": cluster_pb2.Cluster.RANDOM,
}


@dataclass(frozen=True, slots=True)
class Policy:
    """The effective policy blocks for one cluster (None: not set anywhere)."""

    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


_T = TypeVar("_T")


def _over(value: _T | None, below: _T | None) -> _T | None:
    """A block set on a layer replaces the one set below it."""
    return value if value is not None else below


def merged_policy(
    rule_policy: TrafficPolicy | None, port: int, subset_policy: TrafficPolicy | None = None
) -> Policy:
    policy = Policy()
    layers: tuple[TrafficPolicy | PortTrafficPolicy | None, ...] = (
        rule_policy,
        _port_level(rule_policy, port),
        subset_policy,
        _port_level(subset_policy, port),
    )
    for layer in layers:
        if layer is None:
            continue
        policy = Policy(
            load_balancer=_over(layer.load_balancer, policy.load_balancer),
            connection_pool=_over(layer.connection_pool, policy.connection_pool),
            outlier_detection=_over(layer.outlier_detection, policy.outlier_detection),
            tls=_over(layer.tls, policy.tls),
        )
    return policy


# Istio's default MeshConfig.localityLbSetting: enabled, with nothing else set. So a rule
# that sets outlier detection fails over by locality without asking for it.
MESH_LOCALITY_LB = LocalityLoadBalancerSetting(enabled=True)


@dataclass(frozen=True, slots=True)
class LocalityLb:
    """The locality load balancing in force for one cluster (Istio's effective setting)."""

    setting: LocalityLoadBalancerSetting
    # Outlier detection is set: only then can Envoy see a priority go unhealthy, so only
    # then are priorities (failover) given, as Istio does.
    failover: bool

    @property
    def weighted(self) -> bool:
        """Whether the cluster weighs localities (Envoy's locality_weighted_lb_config), as
        Istio decides it; every locality then needs a weight, or it gets no traffic."""
        s = self.setting
        return bool(s.distribute) or (self.failover and bool(s.failover or s.failover_priority))


def locality_lb(
    policy: Policy, mesh: LocalityLoadBalancerSetting = MESH_LOCALITY_LB
) -> LocalityLb | None:
    """Istio's rule: the policy's localityLbSetting, else the mesh's; none when that says
    `enabled: false`, or when nothing would depend on the proxy's locality (no
    `distribute`, and no outlier detection for failover). `zoneAwareLbSetting` is not
    applied here (validation says so): the mesh's setting stands in for it."""
    lb = policy.load_balancer
    setting = (lb.locality_lb_setting if lb is not None else None) or mesh
    if setting.enabled is False:
        return None
    failover = policy.outlier_detection is not None
    if not setting.distribute and not failover:
        return None
    return LocalityLb(setting, failover)


def _port_level(policy: TrafficPolicy | None, port: int) -> PortTrafficPolicy | None:
    if policy is None:
        return None
    for pls in policy.port_level_settings or []:
        if pls.port is not None and pls.port.number == port:
            return pls
    return None


def apply_policy(
    cluster: cluster_pb2.Cluster, policy: Policy, sni: str, server_names: Sequence[str] = ()
) -> bool:
    """False when the policy's TLS cannot be honoured here (see `_tls`). `server_names`:
    what the server certificate must carry when the rule names no subjectAltNames."""
    _load_balancer(cluster, policy.load_balancer)
    _connection_pool(cluster, policy.connection_pool)
    _outlier(cluster, policy.outlier_detection)
    return _tls(cluster, policy.tls, sni, server_names)


def _load_balancer(cluster: cluster_pb2.Cluster, lb: LoadBalancerSettings | None) -> None:
    if lb is None:
        return
    if lb.simple is not None and lb.simple in _SIMPLE_LB:
        cluster.lb_policy = _SIMPLE_LB[lb.simple]
    ch = lb.consistent_hash
    if ch is not None:
        maglev = ch.maglev
        if maglev is not None:
            cluster.lb_policy = cluster_pb2.Cluster.MAGLEV
            if maglev.table_size:
                cluster.maglev_lb_config.table_size.value = maglev.table_size
        else:
            cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
            ring = ch.ring_hash
            size = (ring.minimum_ring_size if ring is not None else None) or ch.minimum_ring_size
            if size:
                cluster.ring_hash_lb_config.minimum_ring_size.value = size


def _tcp_settings(
    cluster: cluster_pb2.Cluster,
    tcp: TCPSettings,
    thresholds: circuit_breaker_pb2.CircuitBreakers.Thresholds,
) -> bool:
    """Apply the TCP settings; True when a circuit-breaker threshold was set."""
    touched = False
    if tcp.max_connections:
        thresholds.max_connections.value = tcp.max_connections
        touched = True
    if (timeout := duration(tcp.connect_timeout)) is not None:
        cluster.connect_timeout.CopyFrom(timeout)
    keepalive = tcp.tcp_keepalive
    if keepalive is not None:
        ka = cluster.upstream_connection_options.tcp_keepalive
        if keepalive.probes:
            ka.keepalive_probes.value = keepalive.probes
        if (t := duration(keepalive.time)) is not None:
            ka.keepalive_time.value = max(1, t.seconds)
        if (t := duration(keepalive.interval)) is not None:
            ka.keepalive_interval.value = max(1, t.seconds)
    return touched


def _http_thresholds(
    http: HTTPSettings, thresholds: circuit_breaker_pb2.CircuitBreakers.Thresholds
) -> bool:
    """Apply the HTTP circuit-breaker limits; True when one was set."""
    touched = False
    if http.http1_max_pending_requests:
        thresholds.max_pending_requests.value = http.http1_max_pending_requests
        touched = True
    if http.http2_max_requests:
        thresholds.max_requests.value = http.http2_max_requests
        touched = True
    if http.max_retries:
        thresholds.max_retries.value = http.max_retries
        touched = True
    return touched


def _http_options(http: HTTPSettings) -> hpo_pb2.HttpProtocolOptions | None:
    """Upstream HTTP protocol options, or None when the settings need none."""
    common = protocol_pb2.HttpProtocolOptions()
    if http.max_requests_per_connection:
        common.max_requests_per_connection.value = http.max_requests_per_connection
    if (idle := duration(http.idle_timeout)) is not None:
        common.idle_timeout.CopyFrom(idle)
    if not (common.ByteSize() or http.h2_upgrade_policy == "UPGRADE" or http.use_client_protocol):
        return None
    options = hpo_pb2.HttpProtocolOptions(common_http_protocol_options=common)
    if http.use_client_protocol:
        options.use_downstream_protocol_config.SetInParent()
    elif http.h2_upgrade_policy == "UPGRADE":
        options.explicit_http_config.http2_protocol_options.SetInParent()
    else:
        options.explicit_http_config.http_protocol_options.SetInParent()
    return options


def _connection_pool(cluster: cluster_pb2.Cluster, pool: ConnectionPoolSettings | None) -> None:
    if pool is None:
        return
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds()
    touched = False
    tcp, http = pool.tcp, pool.http
    if tcp is not None:
        touched = _tcp_settings(cluster, tcp, thresholds)
    options = None
    if http is not None:
        touched = _http_thresholds(http, thresholds) or touched
        options = _http_options(http)
    if touched:
        cluster.circuit_breakers.thresholds.append(thresholds)
    if options is not None:
        cluster.typed_extension_protocol_options[_HTTP_OPTIONS].CopyFrom(pack(options))


def _outlier(cluster: cluster_pb2.Cluster, od: OutlierDetection | None) -> None:
    """Istio's outlier detection: consecutive errors eject, success-rate ejection is off,
    and Envoy's panic mode is off unless minHealthPercent asks for it (with Envoy's
    default of 50 %, half the hosts ejected would send traffic to all of them again)."""
    if od is None:
        return
    out = outlier_detection_pb2.OutlierDetection()
    out.enforcing_success_rate.value = 0
    five = od.consecutive_5xx_errors
    if five is None and od.consecutive_errors is not None and od.consecutive_errors >= 0:
        five = od.consecutive_errors  # deprecated; a negative one (only warned about) is unset
    if five is not None:
        out.consecutive_5xx.value = five
        out.enforcing_consecutive_5xx.value = 100 if five else 0
    gateway = od.consecutive_gateway_errors
    if gateway:
        out.consecutive_gateway_failure.value = gateway
        out.enforcing_consecutive_gateway_failure.value = 100
    if od.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        out.enforcing_local_origin_success_rate.value = 0
        local = od.consecutive_local_origin_failures
        if local:
            out.consecutive_local_origin_failure.value = local
            out.enforcing_consecutive_local_origin_failure.value = 100
    if (d := duration(od.interval)) is not None:
        out.interval.CopyFrom(d)
    if (d := duration(od.base_ejection_time)) is not None:
        out.base_ejection_time.CopyFrom(d)
    if od.max_ejection_percent:  # 0 leaves Envoy's default (10 %), as Istio does
        out.max_ejection_percent.value = od.max_ejection_percent
    cluster.outlier_detection.CopyFrom(out)
    cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
        percent_pb2.Percent(value=od.min_health_percent or 0)
    )


# Where Debian (and the images this repo builds) keep the system's trusted CAs.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def san_matchers(names: Iterable[str]) -> list[common_pb2.SubjectAltNameMatcher]:
    """Exact matchers for the names a server certificate must carry one of (any).

    Istio matches each name against every SAN type; typed matchers are narrower, so each
    name is matched as the one type its form allows: an IP address, a URI (it has a
    scheme, as `spiffe://...`), an email (it has `@`), else a DNS name.
    """
    out = []
    for name in dict.fromkeys(names):
        matcher = common_pb2.SubjectAltNameMatcher(san_type=_san_type(name))
        matcher.matcher.exact = name
        out.append(matcher)
    return out


def _san_type(name: str) -> common_pb2.SubjectAltNameMatcher.SanType.ValueType:
    try:
        ipaddress.ip_address(name)
        return common_pb2.SubjectAltNameMatcher.IP_ADDRESS
    except ValueError:
        pass
    if ":" in name:
        return common_pb2.SubjectAltNameMatcher.URI
    if "@" in name:
        return common_pb2.SubjectAltNameMatcher.EMAIL
    return common_pb2.SubjectAltNameMatcher.DNS


def _tls(
    cluster: cluster_pb2.Cluster,
    tls: ClientTLSSettings | None,
    sni: str,
    server_names: Sequence[str],
) -> bool:
    """SIMPLE and MUTUAL with files; ISTIO_MUTUAL is mesh mTLS (SDS, from Citadel).

    Envoy refuses a whole CDS update when one cluster names a certificate or
    revocation-list file it cannot read, so a policy whose files are missing (or
    that needs a Kubernetes secret, credentialName) is reported as not
    honourable: the caller then sends a cluster with no endpoints, never a
    plaintext one. As Istio does, a server verified against a CA must carry
    one of the rule's subjectAltNames, else one of `server_names` (a
    ServiceEntry's), and must not be revoked by caCrl; insecureSkipVerify
    turns all of that off.
    """
    if tls is None or tls.mode not in ("SIMPLE", "MUTUAL"):
        return True
    # The server is verified, as Istio does: against caCertificates, else the system's
    # CA bundle; only insecureSkipVerify turns that off.
    ca = tls.ca_certificates or ("" if tls.insecure_skip_verify else SYSTEM_CA_BUNDLE)
    crl = tls.ca_crl if ca else ""
    mutual = tls.mode == "MUTUAL"
    chain_file = (tls.client_certificate or "") if mutual else ""
    key_file = (tls.private_key or "") if mutual else ""
    if tls.credential_name or not loadable(ca, crl or "", chain_file, key_file):
        return False
    ctx = tls_pb2.UpstreamTlsContext(sni=tls.sni or sni)
    common = ctx.common_tls_context
    if ca:
        validation = common.validation_context
        validation.trusted_ca.filename = ca
        if crl:
            validation.crl.filename = crl
        names = tls.subject_alt_names or server_names
        validation.match_typed_subject_alt_names.extend(san_matchers(names))
    if tls.mode == "MUTUAL" and tls.client_certificate and tls.private_key:
        cert = common.tls_certificates.add()
        cert.certificate_chain.filename = tls.client_certificate
        cert.private_key.filename = tls.private_key
    cluster.transport_socket.name = "envoy.transport_sockets.tls"
    cluster.transport_socket.typed_config.CopyFrom(pack(ctx))
    return True
