"""Validation of the shared networking pieces (traffic policy, selectors, exportTo, unix sockets).

Each function reports through an `Issues` rooted at the piece it checks, so
the same code serves `spec.trafficPolicy`, `spec.subsets[0].trafficPolicy`
and a Sidecar's `spec.ingress[0].connectionPool`. Server-side TLS is in
`api.networking.policy_tls`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from api import checks
from api.issues import Issues
from api.networking.policy import (
    AlphaWorkloadSelector,
    ClientTLSSettings,
    ConnectionPoolSettings,
    ConsistentHashLB,
    HTTPCookie,
    LoadBalancerSettings,
    LocalityLoadBalancerSetting,
    MagLev,
    OutlierDetection,
    TrafficPolicy,
    TunnelSettings,
    WarmupConfiguration,
    WorkloadSelector,
    ZoneAwareLoadBalancerSetting,
)

__all__ = [
    "UNIX_PREFIX",
    "check_alpha_selector",
    "check_client_tls",
    "check_connection_pool",
    "check_export_to",
    "check_load_balancer",
    "check_locality",
    "check_outlier_detection",
    "check_selector",
    "check_traffic_policy",
    "check_zone_aware",
    "unix_address",
]

UNIX_PREFIX = "unix://"
_TOPOLOGY_LABELS = frozenset(
    {"topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone"}
)
_MAX_MAGLEV_TABLE = 5000011
# Envoy's limits: a ring of at most 8M entries; keepalive seconds in a 32-bit integer.
_MAX_RING_SIZE = 8_388_608
_MAX_KEEPALIVE_SECONDS = 2**32 - 1


def duration(issues: Issues, value: str | None, *path: str | int, allow_zero: bool = False) -> None:
    if value is not None and (m := checks.duration(value, allow_zero=allow_zero)) is not None:
        issues.error(m, *path)


def unix_address(address: str) -> str | None:
    """The part after unix://: an absolute file path, or '@name' for an abstract socket."""
    if not address:
        return "unix address must not be empty"
    if address.startswith("@"):
        return None
    if not posixpath.isabs(address) or address.endswith("/"):
        return f"{address!r} is not an absolute path to a file"
    return None


# --- selectors and exportTo ----------------------------------------------------------------------


def check_selector(selector: WorkloadSelector | None, issues: Issues) -> None:
    """`workloadSelector.matchLabels` (DestinationRule)."""
    if selector is None:
        return
    errors, warnings = checks.workload_selector(selector.match_labels)
    for message in errors:
        issues.error(message, "workloadSelector", "matchLabels")
    for message in warnings:
        issues.warn(message, "workloadSelector")
    for key, message in checks.selector_limits(selector.match_labels, 4096):
        issues.error(message, "workloadSelector", "matchLabels", *([key] if key else []))


def check_alpha_selector(selector: AlphaWorkloadSelector | None, issues: Issues) -> bool:
    """`workloadSelector.labels` (ServiceEntry, Sidecar); False when it has errors."""
    if selector is None:
        return True
    errors, warnings = checks.workload_selector(selector.labels)
    for message in errors:
        issues.error(message, "workloadSelector", "labels")
    for message in warnings:
        issues.warn(message, "workloadSelector")
    for key, message in checks.selector_limits(selector.labels, 256):
        issues.error(message, "workloadSelector", "labels", *([key] if key else []))
    return not errors


def check_export_to(
    export_to: list[str] | None,
    namespace: str,
    issues: Issues,
    *,
    allow_none: bool = False,
    with_selector: bool = False,
) -> None:
    """'.', '*' or namespaces, no duplicates; '~' (ServiceEntry only) and '*' stand alone."""
    if not export_to:
        return
    seen: set[str] = set()
    for i, entry in enumerate(export_to):
        key = namespace if entry == "." else entry
        if key in seen:
            issues.error(f"duplicate entries in exportTo: {entry!r}", "exportTo", i)
        elif key == "~" and not allow_none:
            issues.error("exportTo '~' (none) is not allowed for this kind", "exportTo", i)
        elif key not in ("*", "~") and checks.dns_label(key) is not None:
            issues.error(f"{entry!r} must be '.', '*' or a namespace name", "exportTo", i)
        else:
            seen.add(key)
    if "*" in seen and len(seen) > 1:
        issues.error("'*' (all namespaces) cannot be combined with other entries", "exportTo")
    if "~" in seen and len(seen) > 1:
        issues.error("'~' (not exported) cannot be combined with other entries", "exportTo")
    if with_selector and (len(seen) > 1 or (seen and namespace not in seen)):
        issues.error(
            "a destination rule with a workloadSelector can only be exported to its own "
            "namespace ('.')",
            "exportTo",
        )


# --- traffic policy ------------------------------------------------------------------------------


def check_traffic_policy(policy: TrafficPolicy | None, namespace: str, issues: Issues) -> None:
    """Issues rooted at the trafficPolicy itself."""
    if policy is None:
        return
    if (
        policy.outlier_detection is None
        and policy.connection_pool is None
        and policy.load_balancer is None
        and policy.tls is None
        and not policy.port_level_settings
        and policy.tunnel is None
        and policy.proxy_protocol is None
        and policy.retry_budget is None
    ):
        issues.error("traffic policy must set at least one field")
    if policy.tunnel is not None and policy.proxy_protocol is not None:
        issues.error("tunnel and proxyProtocol cannot both be set")
    if (m := checks.max_items(policy.port_level_settings, 4096)) is not None:
        issues.error(m, "portLevelSettings")
    check_outlier_detection(policy.outlier_detection, issues.at("outlierDetection"))
    check_connection_pool(policy.connection_pool, issues.at("connectionPool"))
    check_load_balancer(policy.load_balancer, policy.outlier_detection, issues.at("loadBalancer"))
    check_client_tls(policy.tls, namespace, issues.at("tls"))
    for i, port_policy in enumerate(policy.port_level_settings or []):
        at = issues.at("portLevelSettings", i)
        if port_policy.port is None:
            at.error("required field is missing", "port")
        if (
            port_policy.outlier_detection is None
            and port_policy.connection_pool is None
            and port_policy.load_balancer is None
            and port_policy.tls is None
        ):
            at.error(
                "port traffic policy must set at least one of outlierDetection, "
                "connectionPool, loadBalancer or tls"
            )
        check_outlier_detection(port_policy.outlier_detection, at.at("outlierDetection"))
        check_connection_pool(port_policy.connection_pool, at.at("connectionPool"))
        check_load_balancer(
            port_policy.load_balancer, port_policy.outlier_detection, at.at("loadBalancer")
        )
        check_client_tls(port_policy.tls, namespace, at.at("tls"))
    _check_tunnel(policy.tunnel, issues.at("tunnel"))
    budget = policy.retry_budget
    if budget is not None and budget.percent is not None and not 0 <= budget.percent <= 100:
        issues.error(f"percent {budget.percent} must be in 0..100", "retryBudget", "percent")
    # Any protobuf duration: Istio does not apply its 1ms rule here, and 0 is the default.
    interval = budget.budget_interval if budget is not None else None
    if interval is not None and checks.duration_seconds(interval) is None:
        issues.error(f"invalid duration {interval!r}", "retryBudget", "budgetInterval")
    elif interval is not None and (m := checks.duration_beyond_range(interval)) is not None:
        issues.error(m, "retryBudget", "budgetInterval")


def _check_tunnel(tunnel: TunnelSettings | None, issues: Issues) -> None:
    if tunnel is None:
        return
    if tunnel.protocol and tunnel.protocol not in ("CONNECT", "POST"):
        issues.error(f"tunnel protocol {tunnel.protocol!r} must be CONNECT or POST", "protocol")
    host = tunnel.target_host or ""
    if not host:
        issues.error("required field is missing", "targetHost")
    elif not checks.is_ip(host) and checks.fqdn(host) is not None:
        issues.error(f"{host!r} must be a fully qualified domain name or an IP", "targetHost")
    if (m := checks.port(tunnel.target_port or 0)) is not None:
        issues.error(m, "targetPort")


def check_connection_pool(pool: ConnectionPoolSettings | None, issues: Issues) -> None:
    if pool is None:
        return
    if pool.http is None and pool.tcp is None:
        issues.error("connection pool must set http and/or tcp")
    if (http := pool.http) is not None:
        at = issues.at("http")
        for name, value in (
            ("http1MaxPendingRequests", http.http1_max_pending_requests),
            ("http2MaxRequests", http.http2_max_requests),
            ("maxRequestsPerConnection", http.max_requests_per_connection),
            ("maxRetries", http.max_retries),
            ("maxConcurrentStreams", http.max_concurrent_streams),
        ):
            if value is not None and value < 0:
                at.error(f"must not be negative, not {value}", name)
        duration(at, http.idle_timeout, "idleTimeout")
        if http.use_client_protocol and http.h2_upgrade_policy == "UPGRADE":
            at.error(
                "useClientProtocol cannot be true with h2UpgradePolicy UPGRADE", "useClientProtocol"
            )
        if (keep := http.http2_keep_alive) is not None:
            for name, text in (("interval", keep.interval), ("timeout", keep.timeout)):
                if text is None:
                    at.error(
                        "http2 keepalive needs both interval and timeout", "http2KeepAlive", name
                    )
                duration(at, text, "http2KeepAlive", name)
    if (tcp := pool.tcp) is not None:
        at = issues.at("tcp")
        if tcp.max_connections is not None and tcp.max_connections < 0:
            at.error(f"must not be negative, not {tcp.max_connections}", "maxConnections")
        duration(at, tcp.connect_timeout, "connectTimeout")
        duration(at, tcp.max_connection_duration, "maxConnectionDuration")
        duration(at, tcp.idle_timeout, "idleTimeout", allow_zero=True)
        if (keepalive := tcp.tcp_keepalive) is not None:
            for field, text in (("time", keepalive.time), ("interval", keepalive.interval)):
                duration(at, text, "tcpKeepalive", field)
                seconds = checks.duration_seconds(text) if text is not None else None
                if seconds is not None and seconds > _MAX_KEEPALIVE_SECONDS:
                    at.error(
                        f"{text!r} exceeds the longest keepalive Envoy takes "
                        f"({_MAX_KEEPALIVE_SECONDS}s)",
                        "tcpKeepalive",
                        field,
                    )


def check_outlier_detection(outlier: OutlierDetection | None, issues: Issues) -> None:
    if outlier is None:
        return
    duration(issues, outlier.base_ejection_time, "baseEjectionTime")
    duration(issues, outlier.interval, "interval")
    if outlier.consecutive_errors:
        issues.warn(
            "consecutiveErrors is deprecated; use consecutiveGatewayErrors or consecutive5xxErrors",
            "consecutiveErrors",
        )
    if outlier.consecutive_errors is not None and outlier.consecutive_errors < 0:
        issues.warn("should not be negative", "consecutiveErrors")  # deprecated: Istio warns
    if (outlier.consecutive_local_origin_failures or 0) > 0 and not (
        outlier.split_external_local_origin_errors
    ):
        issues.error(
            "consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors: true",
            "consecutiveLocalOriginFailures",
        )
    for name, value in (
        ("maxEjectionPercent", outlier.max_ejection_percent),
        ("minHealthPercent", outlier.min_health_percent),
    ):
        if value is not None and not 0 <= value <= 100:
            issues.error(f"percentage {value} must be in 0..100", name)
    for i, code in enumerate(outlier.outlier_detection_http_error_codes or []):
        if not 100 <= code <= 599:
            issues.error(
                f"HTTP status {code} must be in 100..599", "outlierDetectionHttpErrorCodes", i
            )


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def _check_hash_cookie(cookie: HTTPCookie, at: Issues) -> None:
    """`at` is rooted at consistentHash."""
    if not cookie.name:
        at.error("required field is missing", "httpCookie", "name")
    duration(at, cookie.ttl, "httpCookie", "ttl", allow_zero=True)
    names: set[str] = set()
    for i, attribute in enumerate(cookie.attributes or []):
        if not attribute.name:
            at.error(
                "cookie attribute name must not be empty",
                "httpCookie",
                "attributes",
                i,
                "name",
            )
        elif attribute.name in names:
            at.error(
                f"duplicate cookie attribute {attribute.name!r}",
                "httpCookie",
                "attributes",
                i,
                "name",
            )
        names.add(attribute.name or "")


def _check_maglev(maglev: MagLev, at: Issues) -> None:
    """`at` is rooted at consistentHash."""
    size = maglev.table_size or 0
    if size == 0:
        at.error("maglev tableSize must be set", "maglev", "tableSize")
    elif size >= _MAX_MAGLEV_TABLE:
        at.error(f"maglev tableSize must be below {_MAX_MAGLEV_TABLE}", "maglev", "tableSize")
    elif not _is_prime(size):
        at.error(f"maglev tableSize {size} must be a prime number", "maglev", "tableSize")


def _check_consistent_hash(ch: ConsistentHashLB, at: Issues) -> None:
    """`at` is rooted at consistentHash."""
    keys = [
        n
        for n, v in (
            ("httpHeaderName", ch.http_header_name),
            ("httpCookie", ch.http_cookie),
            ("useSourceIp", ch.use_source_ip),
            ("httpQueryParameterName", ch.http_query_parameter_name),
        )
        if v is not None
    ]
    if len(keys) > 1:
        at.error(f"only one hash key may be set, not {' and '.join(keys)}")
    if ch.ring_hash is not None and ch.maglev is not None:
        at.error("only one of ringHash or maglev may be set")
    if ch.http_cookie is not None:
        _check_hash_cookie(ch.http_cookie, at)
    if ch.minimum_ring_size:
        at.warn("minimumRingSize is deprecated; use ringHash.minimumRingSize", "minimumRingSize")
        if ch.ring_hash is not None or ch.maglev is not None:
            at.error(
                "minimumRingSize cannot be combined with ringHash or maglev", "minimumRingSize"
            )
    if ch.maglev is not None:
        _check_maglev(ch.maglev, at)
    for path, size in (
        (("ringHash", "minimumRingSize"), ch.ring_hash.minimum_ring_size if ch.ring_hash else None),
        (("minimumRingSize",), ch.minimum_ring_size),
    ):
        if size is not None and size > _MAX_RING_SIZE:
            at.error(f"{size} exceeds the largest ring Envoy builds ({_MAX_RING_SIZE})", *path)


def _check_warmup(warmup: WarmupConfiguration, issues: Issues) -> None:
    """`issues` is rooted at the load balancer."""
    duration(issues, warmup.duration, "warmup", "duration")
    if warmup.minimum_percent is not None and not 0 <= warmup.minimum_percent <= 100:
        issues.error(
            f"minimumPercent {warmup.minimum_percent} must be in 0..100",
            "warmup",
            "minimumPercent",
        )
    if warmup.aggression is not None and warmup.aggression <= 0:
        issues.error(
            f"aggression {warmup.aggression} must be greater than 0", "warmup", "aggression"
        )


def check_load_balancer(
    lb: LoadBalancerSettings | None, outlier: OutlierDetection | None, issues: Issues
) -> None:
    if lb is None:
        return
    if lb.simple is not None and lb.consistent_hash is not None:
        issues.error("only one of simple or consistentHash may be set")
    if lb.consistent_hash is not None:
        _check_consistent_hash(lb.consistent_hash, issues.at("consistentHash"))
    if lb.locality_lb_setting is not None and lb.zone_aware_lb_setting is not None:
        issues.error("only one of localityLbSetting or zoneAwareLbSetting may be set")
    check_locality(lb.locality_lb_setting, outlier, issues.at("localityLbSetting"))
    check_zone_aware(lb.zone_aware_lb_setting, outlier, issues.at("zoneAwareLbSetting"))
    duration(issues, lb.warmup_duration_secs, "warmupDurationSecs")
    if lb.warmup is not None:
        _check_warmup(lb.warmup, issues)


def check_locality(
    setting: LocalityLoadBalancerSetting | None, outlier: OutlierDetection | None, issues: Issues
) -> None:
    if setting is None:
        return
    if setting.distribute and setting.failover:
        issues.error("distribute and failover cannot both be set")
    if setting.failover:
        for i, label in enumerate(setting.failover_priority or []):
            if label in _TOPOLOGY_LABELS:
                issues.error(
                    f"failover cannot be combined with the topology label {label!r}",
                    "failoverPriority",
                    i,
                )
    for i, rule in enumerate(setting.distribute or []):
        at = issues.at("distribute", i)
        total = 0
        for locality, weight in (rule.to or {}).items():
            if not 1 <= weight <= 100:
                at.error(f"locality weight {weight} must be in 1..100", "to", locality)
            total += weight
        if total != 100:
            at.error(f"locality weights add up to {total}, not 100", "to")
        _check_localities(list((rule.to or {}).keys()), at.at("to"))
    _check_localities([d.from_ or "" for d in setting.distribute or []], issues.at("distribute"))
    _check_failover(setting, outlier, issues, "")


def _check_failover(
    setting: LocalityLoadBalancerSetting | ZoneAwareLoadBalancerSetting,
    outlier: OutlierDetection | None,
    issues: Issues,
    zones_note: str,
) -> None:
    """Failover between regions: it needs outlier detection, and each entry names two
    different plain regions."""
    if (setting.failover or setting.failover_priority) and outlier is None:
        issues.warn("failover needs an outlierDetection policy to take effect")
    for i, failover in enumerate(setting.failover or []):
        at = issues.at("failover", i)
        source, target = failover.from_ or "", failover.to or ""
        if source == target:
            at.error("failover must name different regions in from and to")
        if "/" in source or "/" in target:
            at.error(f"failover takes regions only (no '/'){zones_note}")
        if "*" in source or "*" in target:
            at.error("failover regions cannot contain the '*' wildcard")


def check_zone_aware(
    setting: ZoneAwareLoadBalancerSetting | None, outlier: OutlierDetection | None, issues: Issues
) -> None:
    """As localityLbSetting's failover, but regions and zones are always partitioned: no
    topology labels in failoverPriority, with or without failover."""
    if setting is None:
        return
    for i, label in enumerate(setting.failover_priority or []):
        if label in _TOPOLOGY_LABELS:
            issues.error(
                f"zone-aware failoverPriority cannot use the topology label {label!r}: "
                "region and zone routing are automatic",
                "failoverPriority",
                i,
            )
    _check_failover(setting, outlier, issues, ": zones are handled automatically")


def _check_localities(localities: Iterable[str], issues: Issues) -> None:
    """region[/zone[/subzone]], one trailing '*' at most, no overlaps."""
    tree: dict[str, dict[str, set[str]]] = {}
    for locality in localities:
        stars = locality.count("*")
        if stars and (stars > 1 or not locality.endswith("*")):
            issues.error(f"locality {locality!r}: at most one '*', and only at the end")
        parts = locality.split("/", 2)
        if any(not p for p in parts):
            issues.error(f"locality {locality!r} has an empty region, zone or subzone")
            continue
        if "*" in tree:
            issues.error(f"locality {locality!r} overlaps an earlier one")
            continue
        if "*" in parts:
            parts = parts[: parts.index("*")] or ["*"]
        region = parts[0]
        zones = tree.get(region)
        if len(parts) == 1:
            if zones is not None:
                issues.error(f"locality {locality!r} overlaps an earlier one")
            tree[region] = {"*": {"*"}}
            continue
        if zones is None:
            zones = tree[region] = {}
        zone = parts[1]
        if "*" in zones or (len(parts) == 2 and zone in zones):
            issues.error(f"locality {locality!r} overlaps an earlier one")
            continue
        if len(parts) == 2:
            zones[zone] = {"*"}
            continue
        subzones = zones.setdefault(zone, set())
        if "*" in subzones or parts[2] in subzones:
            issues.error(f"locality {locality!r} overlaps an earlier one")
            continue
        subzones.add(parts[2])


# --- client TLS ----------------------------------------------------------------------------------


def _check_insecure_skip_verify(tls: ClientTLSSettings, mode: str, issues: Issues) -> None:
    """Fields that insecureSkipVerify makes meaningless in this mode."""
    if mode == "SIMPLE":
        fields: tuple[tuple[str, object], ...] = (
            ("caCertificates", tls.ca_certificates),
            ("credentialName", tls.credential_name),
            ("subjectAltNames", tls.subject_alt_names),
        )
    elif mode == "MUTUAL":
        fields = (
            ("caCertificates", tls.ca_certificates),
            ("subjectAltNames", tls.subject_alt_names),
        )
    else:
        return
    for name, value in fields:
        if value:
            issues.error("cannot be set when insecureSkipVerify is true", name)


def _check_configmap_credential(credential: str, namespace: str, issues: Issues) -> None:
    """A configmap:// credentialName may only name a ConfigMap in this namespace."""
    if credential.startswith("configmap://"):
        ns, slash, _ = credential.removeprefix("configmap://").rpartition("/")
        if slash and ns != namespace:
            issues.error(
                f"{credential!r} must reference a ConfigMap in this namespace ({namespace!r})",
                "credentialName",
            )


def _check_with_credential(tls: ClientTLSSettings, issues: Issues) -> None:
    """File fields that credentialName replaces."""
    for name, value in (
        ("clientCertificate", tls.client_certificate),
        ("caCertificates", tls.ca_certificates),
        ("privateKey", tls.private_key),
        ("caCrl", tls.ca_crl),
    ):
        if value:
            issues.error("cannot be set together with credentialName", name)


def check_client_tls(tls: ClientTLSSettings | None, namespace: str, issues: Issues) -> None:
    if tls is None:
        return
    mode = tls.mode or "DISABLE"
    if tls.insecure_skip_verify:
        _check_insecure_skip_verify(tls, mode, issues)
    credential = tls.credential_name or ""
    _check_configmap_credential(credential, namespace, issues)
    if mode in ("SIMPLE", "MUTUAL") and credential:
        _check_with_credential(tls, issues)
        return
    if mode == "MUTUAL":
        if not tls.client_certificate:
            issues.error("required for MUTUAL mode without credentialName", "clientCertificate")
        if not tls.private_key:
            issues.error("required for MUTUAL mode without credentialName", "privateKey")
