"""VirtualService HTTP routes: conflicts, matches, faults, retries, CORS, rewrites."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from api import checks
from api.issues import Issues
from api.networking.virtual_service_checks import (
    check_destination,
    check_headers,
    check_match_source,
    check_string_match,
    check_weights,
    is_authority_header,
    is_jwt_claim,
    set_members,
)

if TYPE_CHECKING:
    from api.networking.virtual_service import (
        CorsPolicy,
        FaultAbort,
        FaultDelay,
        HTTPDirectResponse,
        HTTPFaultInjection,
        HTTPMatchRequest,
        HTTPRedirect,
        HTTPRetry,
        HTTPRewrite,
        HTTPRoute,
        Percent,
    )

__all__ = ["check_http_route"]

_KIB = 1024
GRPC_CODES = frozenset(checks.GRPC_STATUS_NAMES)
RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)
# The status codes Go's net/http has a name for (http.StatusText != "").
HTTP_STATUS_CODES = frozenset(
    {100, 101, 102, 103, *range(200, 209), 226, 300, 301, 302, 303, 304, 305, 307, 308}
    | set(range(400, 419))
    | {421, 422, 423, 424, 425, 426, 428, 429, 431, 451}
    | set(range(500, 509))
    | {510, 511}
)
CORS_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"}
)


def check_http_route(
    route: HTTPRoute, issues: Issues, *, delegate_vs: bool, gateway_only: bool
) -> None:
    """One `spec.http[i]`; `issues` is rooted at it."""
    if delegate_vs and route.delegate is not None:
        issues.error("a delegate VirtualService must not delegate again", "delegate")
    if route.delegate is not None and not delegate_vs:
        if route.route:
            issues.error("a route with delegate must not also set route", "route")
        if route.redirect is not None:
            issues.error("a route with delegate must not also set redirect", "redirect")
        if not route.delegate.name:
            issues.error("required field is missing", "delegate", "name")
        elif (msg := checks.fqdn(route.delegate.name)) is not None:
            issues.error(f"invalid delegate name: {msg}", "delegate", "name")
        if route.delegate.namespace and (msg := checks.dns_label(route.delegate.namespace)):
            issues.error(msg, "delegate", "namespace")
    else:
        _check_conflicts(route, issues)
    for i, match in enumerate(route.match or []):
        _check_match(match, issues.at("match", i), gateway_only=gateway_only)
    check_headers(route.headers, issues.at("headers"))
    _check_cors(route.cors_policy, issues.at("corsPolicy"))
    _check_fault(route.fault, issues.at("fault"))
    _check_mirroring(route, issues)
    _check_redirect(route, issues.at("redirect"))
    _check_direct_response(route.direct_response, issues.at("directResponse"))
    _check_retries(route.retries, issues.at("retries"))
    _check_rewrite(route.rewrite, issues.at("rewrite"))
    _check_authority(route, issues)
    for i, dest in enumerate(route.route or []):
        check_headers(dest.headers, issues.at("route", i, "headers"))
    check_weights(route.route or [], issues.at("route"))
    if route.timeout is not None and (msg := checks.duration(route.timeout)) is not None:
        issues.error(msg, "timeout")


def _check_conflicts(route: HTTPRoute, issues: Issues) -> None:
    excluded: dict[str, object]
    if route.redirect is not None:
        excluded = {"route": route.route, "fault": route.fault, "rewrite": route.rewrite}
        excluded["directResponse"] = route.direct_response
        for name, value in excluded.items():
            if value:
                issues.error(f"a route with redirect must not also set {name}", name)
    elif route.direct_response is not None:
        excluded = {"route": route.route, "fault": route.fault, "rewrite": route.rewrite}
        for name, value in excluded.items():
            if value:
                issues.error(f"a route with directResponse must not also set {name}", name)
    elif not route.route:
        issues.error("route, redirect or directResponse is required", "route")
    if route.mirror is not None and route.mirrors:
        issues.error("mirror and mirrors cannot both be set", "mirrors")


def _check_match(match: HTTPMatchRequest, issues: Issues, *, gateway_only: bool) -> None:
    for field in ("headers", "withoutHeaders"):
        matches = match.headers if field == "headers" else match.without_headers
        for name, m in (matches or {}).items():
            at = issues.at(field, name)
            if is_jwt_claim(name):
                if not gateway_only:
                    at.error(
                        "JWT claim based routing is only supported for a VirtualService "
                        "bound to gateways only"
                    )
            elif (msg := checks.header_name(name)) is not None:
                at.error(msg)
            if field == "headers" and m is None:
                at.error("a header match must not be null (use {} to match any value)")
            if field == "withoutHeaders" and m is not None and m.regex == "*":
                continue  # "*" means "the header is present", not a regex
            check_string_match(m, at, allow_empty_prefix=False)
    check_string_match(match.uri, issues.at("uri"), allow_empty_prefix=True)
    for field in ("scheme", "method", "authority"):
        check_string_match(getattr(match, field), issues.at(field), allow_empty_prefix=False)
    for name, m in (match.query_params or {}).items():
        if not name:
            issues.error("a query parameter name must not be empty", "queryParams")
        check_string_match(m, issues.at("queryParams", name), allow_empty_prefix=False)
    check_match_source(
        match.port, match.source_labels, match.gateways, match.source_namespace, issues
    )


def _check_percentage(pct: Percent | None, issues: Issues) -> None:
    """Fault percentages: 0, or between 0.0001 and 100."""
    if pct is None:
        return
    value = pct.value or 0.0
    if value > 100 or (value != 0 and value < 0.0001):
        issues.error(f"percentage {value} is neither 0 nor in the range 0.0001..100", "value")


def _check_fault(fault: HTTPFaultInjection | None, issues: Issues) -> None:
    if fault is None:
        return
    if fault.abort is None and fault.delay is None:
        issues.error("a fault needs an abort and/or a delay")
    _check_abort(fault.abort, issues.at("abort"))
    _check_delay(fault.delay, issues.at("delay"))


def _check_abort(abort: FaultAbort | None, issues: Issues) -> None:
    if abort is None:
        return
    _check_percentage(abort.percentage, issues.at("percentage"))
    used = set_members(abort, ("http_status", "grpc_status", "http2_error"))
    if len(used) > 1:
        issues.error(f"only one of httpStatus, grpcStatus or http2Error, not {' and '.join(used)}")
    if abort.http_status is not None:
        if not 200 <= abort.http_status <= 599:  # Istio's CRD allows 600; Envoy refuses it
            issues.error(f"HTTP status {abort.http_status} must be in 200..599", "httpStatus")
    elif abort.grpc_status is not None:
        if abort.grpc_status not in GRPC_CODES:
            issues.error(f"unknown gRPC status {abort.grpc_status!r}", "grpcStatus")
    elif abort.http2_error is not None:
        issues.error("HTTP/2 error abort faults are not supported", "http2Error")
    else:
        issues.warn("abort is set but has no error type (httpStatus or grpcStatus)")


def _check_delay(delay: FaultDelay | None, issues: Issues) -> None:
    if delay is None:
        return
    _check_percentage(delay.percentage, issues.at("percentage"))
    if delay.percent is not None and not 0 <= delay.percent <= 100:
        # Deprecated: Istio only warns about it.
        issues.warn(f"percent {delay.percent} should be in 0..100", "percent")
    if delay.fixed_delay is not None and delay.exponential_delay is not None:
        issues.error("only one of fixedDelay or exponentialDelay may be set")
    if delay.fixed_delay is not None and (msg := checks.duration(delay.fixed_delay)):
        issues.error(msg, "fixedDelay")
    if delay.exponential_delay is not None:
        if msg := checks.duration(delay.exponential_delay):
            issues.error(msg, "exponentialDelay")
        issues.error("exponentialDelay is not supported", "exponentialDelay")


def _check_mirror_percent(pct: Percent | None, issues: Issues) -> None:
    if pct is not None and not 0 <= (pct.value or 0.0) <= 100:
        issues.error(f"{pct.value} must be in 0..100", "value")


def _check_mirroring(route: HTTPRoute, issues: Issues) -> None:
    if route.mirror_percent is not None:
        if route.mirror_percent > 100:
            issues.error(f"{route.mirror_percent} must be at most 100", "mirrorPercent")
        issues.warn("mirrorPercent is deprecated; use mirrorPercentage", "mirrorPercent")
    _check_mirror_percent(route.mirror_percentage, issues.at("mirrorPercentage"))
    if route.mirror is not None:
        check_destination(route.mirror, issues.at("mirror"))
    for i, mirror in enumerate(route.mirrors or []):
        check_destination(mirror.destination, issues.at("mirrors", i, "destination"))
        _check_mirror_percent(mirror.percentage, issues.at("mirrors", i, "percentage"))


def _check_redirect(route: HTTPRoute, issues: Issues) -> None:
    redirect: HTTPRedirect | None = route.redirect
    if redirect is None:
        return
    if redirect.uri and redirect.prefix_rewrite:
        issues.error("only one of uri or prefixRewrite may be set", "prefixRewrite")
    if redirect.prefix_rewrite:
        for i, match in enumerate(route.match or []):
            if match.uri is None or match.uri.prefix is None:
                issues.error(
                    f"prefixRewrite needs every uri match to be a prefix match (match[{i}] is not)",
                    "prefixRewrite",
                )
                break
    if redirect.port is not None and redirect.derive_port is not None:
        issues.error("only one of port or derivePort may be set", "derivePort")
    if not (
        redirect.uri
        or redirect.prefix_rewrite
        or redirect.authority
        or redirect.scheme
        or redirect.port is not None
        or redirect.derive_port is not None
    ):
        issues.error("a redirect must set uri, prefixRewrite, authority, port or scheme")
    code = redirect.redirect_code
    if code and not 300 <= code <= 399:
        issues.error(f"{code} is not a redirect code (300..399)", "redirectCode")
    if redirect.scheme and redirect.scheme not in ("http", "https"):
        issues.error(f"scheme must be 'http' or 'https', not {redirect.scheme!r}", "scheme")
    if redirect.port and (msg := checks.port(redirect.port)) is not None:
        issues.error(msg, "port")


def _check_direct_response(response: HTTPDirectResponse | None, issues: Issues) -> None:
    if response is None:
        return
    if not 200 <= response.status <= 599:  # Istio's CRD allows 600; Envoy refuses it
        issues.error(f"HTTP status {response.status} must be in 200..599", "status")
    body = response.body
    if body is None:
        return
    if body.string is not None and body.bytes is not None:
        issues.error("only one of string or bytes may be set", "body")
    size = 0
    if body.string is not None:
        size = len(body.string.encode())
    elif body.bytes is not None:
        try:
            size = len(base64.b64decode(body.bytes, validate=True))
        except (binascii.Error, ValueError):
            issues.error("must be base64-encoded", "body", "bytes")
    if size > _KIB * _KIB:
        issues.error(f"a direct response body must be at most 1MiB ({size} bytes)", "body")
    elif size > 100 * _KIB:
        issues.warn(f"a large direct response body ({size} bytes) slows the control plane", "body")


def _check_retries(retries: HTTPRetry | None, issues: Issues) -> None:
    if retries is None:
        return
    attempts = retries.attempts or 0
    if attempts < 0:
        issues.error("must be >= 0", "attempts")
    if attempts == 0 and (
        retries.per_try_timeout is not None
        or retries.retry_on
        or retries.retry_remote_localities is not None
    ):
        issues.error(
            "retries are disabled (attempts is 0) but perTryTimeout, retryOn or "
            "retryRemoteLocalities is set",
            "attempts",
        )
    for field, value in (("perTryTimeout", retries.per_try_timeout), ("backoff", retries.backoff)):
        if value is not None and (msg := checks.duration(value)) is not None:
            issues.error(msg, field)
    for policy in (retries.retry_on or "").split(",") if retries.retry_on else []:
        if policy in RETRY_ON or (policy.isdigit() and int(policy) in HTTP_STATUS_CODES):
            continue
        issues.error(f"{policy!r} is not a retryOn policy or HTTP status code", "retryOn")


def _check_rewrite(rewrite: HTTPRewrite | None, issues: Issues) -> None:
    if rewrite is None:
        return
    regex_rewrite = rewrite.uri_regex_rewrite
    if rewrite.uri and regex_rewrite is not None:
        issues.error("only one of uri or uriRegexRewrite may be set", "uriRegexRewrite")
    if not rewrite.uri and regex_rewrite is None and not rewrite.authority:
        issues.error("a rewrite must set uri, uriRegexRewrite or authority")
    if regex_rewrite is None:
        return
    at = issues.at("uriRegexRewrite")
    if not regex_rewrite.match or not regex_rewrite.rewrite:
        at.error("uriRegexRewrite needs both match and rewrite")
    if regex_rewrite.match and (msg := checks.regex(regex_rewrite.match)) is not None:
        at.error(msg, "match")


def _check_authority(route: HTTPRoute, issues: Issues) -> None:
    """The authority may be rewritten in one place only."""
    current = route.rewrite.authority if route.rewrite is not None else None
    request = route.headers.request if route.headers is not None else None
    if request is None:
        return
    for field in ("set", "add"):
        for name, value in (getattr(request, field) or {}).items():
            if not is_authority_header(name):
                continue
            if current:
                issues.error(
                    f"the authority is already set to {current!r}; cannot set it to {value!r}",
                    "headers",
                    "request",
                    field,
                    name,
                )
            current = value


def _check_cors(cors: CorsPolicy | None, issues: Issues) -> None:
    if cors is None:
        return
    for i, origin in enumerate(cors.allow_origins or []):
        at = issues.at("allowOrigins", i)
        if not (origin.exact or origin.prefix or origin.regex):
            at.error("an origin match must set exact, prefix or regex to a non-empty value")
        check_string_match(origin, at, allow_empty_prefix=True)
    for i, method in enumerate(cors.allow_methods or []):
        if method not in CORS_METHODS:
            issues.error(f"{method!r} is not a supported HTTP method", "allowMethods", i)
    for field in ("allowHeaders", "exposeHeaders"):
        values = cors.allow_headers if field == "allowHeaders" else cors.expose_headers
        for i, header in enumerate(values or []):
            if header != "*" and (msg := checks.header_name(header)) is not None:
                issues.error(msg, field, i)
    if cors.max_age is not None:
        if (msg := checks.duration(cors.max_age)) is not None:
            issues.error(msg, "maxAge")
        elif (seconds := checks.duration_seconds(cors.max_age)) is not None and (
            abs(seconds - round(seconds)) > 1e-9
        ):
            issues.error(f"maxAge {cors.max_age!r} must be a whole number of seconds", "maxAge")
