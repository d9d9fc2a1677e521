"""Istio fields this mesh accepts (so Istio's own YAML applies unchanged) but does
not apply yet: every one is named here, and validation warns at its path.

Where ignoring a field could widen access, Pilot fails closed instead (see
pilot/networking/authz.py, cluster.py); those are not listed. What is listed
narrows or changes traffic only: the warning says what happens instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["NOT_APPLIED", "not_applied"]

# As with Istio's sidecars, a policy attached by reference applies only to what it
# names: Gateway API gateways, which this mesh does not run yet.
_NO_TARGETS = "it attaches to Gateway API gateways, which this mesh does not run yet"


def _every_policy(path: str, what: str) -> tuple[tuple[str, str], ...]:
    """A DestinationRule traffic-policy field at every level Pilot merges: the rule's
    policy, each subset's, and the portLevelSettings of both."""
    roots = ("trafficPolicy", "subsets[].trafficPolicy")
    levels = (*roots, *(f"{root}.portLevelSettings[]" for root in roots))
    return tuple((f"{level}.{path}", what) for level in levels)


# kind -> (path in the spec, camelCase, `[]` for every list item; what happens instead;
# optionally the one value of that field that is not applied)
NOT_APPLIED: dict[str, tuple[tuple[str, str] | tuple[str, str, str], ...]] = {
    "VirtualService": (
        (
            "tcp[].match[].sourceSubnet",
            "the rule matches any source address (Istio does not apply it either)",
        ),
        ("http[].delegate", "delegation is not supported: the route answers 503"),
        ("http[].redirect.derivePort", "the redirect keeps the request's port"),
        (
            "http[].retries.retryRemoteLocalities",
            "a retry does not prefer another locality's priority (Envoy's own choice)",
        ),
        ("http[].corsPolicy.unmatchedPreflights", "unmatched preflights go to the app"),
        ("http[].match[].name", "match names only label routes"),
        ("http[].match[].statPrefix", "no per-match stats"),
    ),
    "DestinationRule": (
        ("exportTo", "the rule applies in every namespace"),
        ("workloadSelector", "a rule with a workloadSelector is not applied at all"),
        *_every_policy("tunnel", "no tunnelling: connections go to the endpoint directly"),
        *_every_policy("proxyProtocol", "no PROXY protocol header is sent"),
        *_every_policy("retryBudget", "retries are limited by maxRetries only"),
        *_every_policy(
            "loadBalancer.zoneAwareLbSetting",
            "no zone-aware routing: the mesh's locality load balancing applies instead "
            "(failover by locality when outlier detection is set)",
        ),
        *_every_policy("loadBalancer.warmupDurationSecs", "no slow start"),
        *_every_policy("loadBalancer.warmup", "no slow start"),
        *_every_policy("connectionPool.tcp.maxConnectionDuration", "connections are not aged"),
        *_every_policy("connectionPool.tcp.idleTimeout", "Envoy's default TCP idle timeout"),
        *_every_policy("connectionPool.http.maxConcurrentStreams", "Envoy's default"),
        *_every_policy("connectionPool.http.http2KeepAlive", "no HTTP/2 keepalive pings"),
        *_every_policy(
            "outlierDetection.outlierDetectionHttpErrorCodes", "only 5xx responses count as errors"
        ),
    ),
    "Gateway": (
        (
            "servers[].tls.mode",
            "AUTO_PASSTHROUGH is not served: this server gets no filter chain",
            "AUTO_PASSTHROUGH",
        ),
        (
            "servers[].tls.serverCertificate",
            "file-mounted certificates are not served (use credentialName): "
            "this server gets no filter chain",
        ),
        (
            "servers[].tls.tlsCertificates",
            "file-mounted certificates are not served (use credentialNames): "
            "this server gets no filter chain",
        ),
        (
            "servers[].tls.caCertificates",
            "a file-mounted CA is not served (put it in the credential): "
            "this server gets no filter chain",
        ),
        (
            "servers[].tls.caCrl",
            "revocation lists are not checked: this server gets no filter chain",
        ),
        ("servers[].defaultEndpoint", "traffic goes where the routes send it"),
        ("servers[].bind", "the listener binds to the gateway's instance address"),
    ),
    "ServiceEntry": (
        ("exportTo", "the hosts are visible in every namespace"),
        ("addresses", "no virtual IP: reach the host by name through the sidecar"),
        ("endpoints[].network", "one network"),
        ("endpoints[].weight", "endpoints are weighted equally"),
    ),
    "Sidecar": (
        ("ingress", "the inbound listener comes from the proxy's bootstrap ports"),
        ("egress[].captureMode", "no traffic capture: an egress port always gets its listener"),
        ("inboundConnectionPool", "no limits on the inbound cluster"),
        ("outboundTrafficPolicy", "unknown hosts are always refused (REGISTRY_ONLY)"),
    ),
    "Telemetry": (
        ("targetRef", _NO_TARGETS),
        ("targetRefs", _NO_TARGETS),
        ("metrics", "Envoy's own stats only"),
        ("accessLogging[].match", "every request is logged"),
        ("accessLogging[].filter", "every request is logged"),
        ("tracing[].match", "every traced request is reported"),
        ("tracing[].customTags", "no custom tags"),
        ("tracing[].useRequestIdForTraceSampling", "Envoy's default sampling"),
        ("tracing[].enableIstioTags", "no Istio tags"),
        ("tracing[].disableContextPropagation", "trace context headers are still forwarded"),
    ),
    "RequestAuthentication": (
        ("jwtRules[].timeout", "JWKS fetches time out after 5 s"),
        ("targetRef", _NO_TARGETS),
        ("targetRefs", _NO_TARGETS),
    ),
    "AuthorizationPolicy": (("targetRef", _NO_TARGETS), ("targetRefs", _NO_TARGETS)),
    "WorkloadEntry": (
        ("network", "one network: the address is dialed directly"),
        ("weight", "endpoints are weighted equally"),
    ),
    # A group is the template `meshctl register --workload-group` reads (see README).
    "WorkloadGroup": (
        ("metadata.annotations", "catalog instances carry no annotations"),
        (
            "template.ports",
            "a registered workload's port is its sidecar's inbound port (`meshctl register "
            "--port`); the app's port is the sidecar's `--app-port`",
        ),
        ("template.network", "one network"),
        ("template.locality", "the registered instance's locality comes from its registration"),
        ("template.weight", "endpoints are weighted equally"),
        (
            "probe",
            "the probe is not run: a registered workload's health comes from its Consul "
            "health checks (`meshctl register --check-http`); only passing instances "
            "receive traffic",
        ),
    ),
    # The Gateway API's Gateway (kinds of other groups are named with their group).
    "Gateway.gateway.networking.k8s.io": (
        ("addresses", "the gateway listens on its proxies' own addresses"),
        ("infrastructure", "gateway proxies are started by `meshctl`, not generated"),
        (
            "tls.backend",
            "gateways present no client certificate to backends (a backend that asks for one "
            "refuses the connection)",
        ),
        ("allowedListeners", "ListenerSets are not supported: none attach"),
    ),
}


def _walk(
    value: Any, parts: list[str], at: tuple[str | int, ...]
) -> Iterator[tuple[str | int, ...]]:
    if not parts:
        yield at
        return
    head, rest = parts[0], parts[1:]
    items = head.endswith("[]")
    key = head[:-2] if items else head
    if not isinstance(value, dict) or key not in value or value[key] is None:
        return
    child = value[key]
    if items:
        for i, item in enumerate(child if isinstance(child, list) else []):
            yield from _walk(item, rest, (*at, key, i))
    else:
        yield from _walk(child, rest, (*at, key))


def not_applied(kind: str, spec: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """(path under spec, message) for every set field of `spec` this mesh does not apply."""
    out = []
    for path, what, *only in NOT_APPLIED.get(kind, ()):
        for at in _walk(spec, path.split("."), ()):
            if only and _value(spec, at) != only[0]:
                continue
            out.append((at, f"accepted but not applied by this mesh: {what}"))
    return out


def _value(spec: Any, at: tuple[str | int, ...]) -> Any:
    for step in at:
        spec = spec[step]
    return spec
