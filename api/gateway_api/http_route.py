"""HTTPRoute (gateway.networking.k8s.io v1, v1beta1): how HTTP requests that reach a
parent (a Gateway listener, or a Service for mesh traffic) are matched, filtered and
sent to backends; validated as the Gateway API's CRD does, CEL rules included.

The model is the standard channel's plus the experimental channel's fields (retry,
sessionPersistence, the ExternalAuth filter, useDefaultGateways), so that documents
written for either channel are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from api import checks
from api.gateway_api import common
from api.gateway_api.common import (
    BackendObjectReference,
    BackendRef,
    HTTPHeaderFilter,
    HTTPRequestMirrorFilter,
    LocalObjectReference,
    NonNegativeInt32,
    ParentReference,
    PortNumber,
    PositiveInt32,
    SessionPersistence,
)
from api.issues import Issues
from api.model import Spec
from api.resources import GATEWAY_API, KindInfo

__all__ = [
    "FILTER_FIELDS",
    "KIND",
    "ForwardBodyConfig",
    "GRPCAuthConfig",
    "HTTPAuthConfig",
    "HTTPBackendRef",
    "HTTPCORSFilter",
    "HTTPExternalAuthFilter",
    "HTTPHeaderMatch",
    "HTTPPathMatch",
    "HTTPPathModifier",
    "HTTPQueryParamMatch",
    "HTTPRequestRedirectFilter",
    "HTTPRouteFilter",
    "HTTPRouteMatch",
    "HTTPRouteRetry",
    "HTTPRouteRule",
    "HTTPRouteSpec",
    "HTTPRouteTimeouts",
    "HTTPURLRewriteFilter",
    "validate",
]

HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
MatchType = Literal["Exact", "RegularExpression"]
_CORS_ORIGIN = re.compile(
    r"\*|https?://(((\*\.)?([a-zA-Z0-9\-]+\.)*[a-zA-Z0-9-]+|\*)(:([0-9]{1,5}))?)"
)
_MAX_MATCHES = 128  # across all rules of a route
_PATH_NEVER = ("//", "/./", "/../", "%2f", "%2F", "#")


class HTTPPathMatch(Spec):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] | None = None  # PathPrefix
    value: str | None = None  # "/"


class HTTPHeaderMatch(Spec):
    type: MatchType | None = None  # Exact
    name: str
    value: str


class HTTPQueryParamMatch(Spec):
    type: MatchType | None = None  # Exact
    name: str
    value: str


class HTTPRouteMatch(Spec):
    path: HTTPPathMatch | None = None  # PathPrefix "/"
    headers: list[HTTPHeaderMatch] | None = None
    query_params: list[HTTPQueryParamMatch] | None = None
    method: HTTPMethod | None = None


class HTTPPathModifier(Spec):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None


class HTTPRequestRedirectFilter(Spec):
    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    path: HTTPPathModifier | None = None
    port: PortNumber | None = None
    status_code: Literal[301, 302, 303, 307, 308] | None = None  # 302


class HTTPURLRewriteFilter(Spec):
    hostname: str | None = None
    path: HTTPPathModifier | None = None


class HTTPCORSFilter(Spec):
    allow_origins: list[str] | None = None
    allow_credentials: bool | None = None
    allow_methods: list[HTTPMethod | Literal["*"]] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    max_age: PositiveInt32 | None = None  # 5 (seconds)


class GRPCAuthConfig(Spec):
    allowed_headers: list[str] | None = None


class HTTPAuthConfig(Spec):
    path: str | None = None
    allowed_headers: list[str] | None = None
    allowed_response_headers: list[str] | None = None


class ForwardBodyConfig(Spec):
    max_size: NonNegativeInt32 | None = None


class HTTPExternalAuthFilter(Spec):
    """Experimental channel."""

    protocol: Literal["HTTP", "GRPC"]
    backend_ref: BackendObjectReference
    grpc: GRPCAuthConfig | None = None
    http: HTTPAuthConfig | None = None
    forward_body: ForwardBodyConfig | None = None


class HTTPRouteFilter(Spec):
    type: Literal[
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestMirror",
        "RequestRedirect",
        "URLRewrite",
        "ExtensionRef",
        "CORS",
        "ExternalAuth",
    ]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    request_redirect: HTTPRequestRedirectFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = None
    cors: HTTPCORSFilter | None = None
    external_auth: HTTPExternalAuthFilter | None = None
    extension_ref: LocalObjectReference | None = None


# filter type -> (attribute, field as written): the one field a filter of that type sets.
FILTER_FIELDS: Mapping[str, tuple[str, str]] = {
    "RequestHeaderModifier": ("request_header_modifier", "requestHeaderModifier"),
    "ResponseHeaderModifier": ("response_header_modifier", "responseHeaderModifier"),
    "RequestMirror": ("request_mirror", "requestMirror"),
    "RequestRedirect": ("request_redirect", "requestRedirect"),
    "URLRewrite": ("url_rewrite", "urlRewrite"),
    "ExtensionRef": ("extension_ref", "extensionRef"),
    "CORS": ("cors", "cors"),
    "ExternalAuth": ("external_auth", "externalAuth"),
}
_ONCE = ("CORS", "RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite")


class HTTPBackendRef(BackendRef):
    filters: list[HTTPRouteFilter] | None = None


class HTTPRouteTimeouts(Spec):
    request: str | None = None
    backend_request: str | None = None


class HTTPRouteRetry(Spec):
    """Experimental channel."""

    codes: list[Annotated[int, Field(ge=400, le=599)]] | None = None
    attempts: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None
    backoff: str | None = None


class HTTPRouteRule(Spec):
    name: str | None = None
    matches: list[HTTPRouteMatch] | None = None  # one PathPrefix "/" match
    filters: list[HTTPRouteFilter] | None = None
    backend_refs: list[HTTPBackendRef] | None = None
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None
    session_persistence: SessionPersistence | None = None


class HTTPRouteSpec(Spec):
    parent_refs: list[ParentReference] | None = None
    use_default_gateways: Literal["All", "None"] | None = None
    hostnames: list[str] | None = None
    rules: list[HTTPRouteRule] | None = None  # one rule with the default match


# --- matches ---------------------------------------------------------------------------


def _check_path(path: HTTPPathMatch, issues: Issues) -> None:
    kind = path.type or "PathPrefix"
    value = "/" if path.value is None else path.value
    if (m := checks.max_length(value, 1024)) is not None:
        issues.error(m, "value")
    if kind == "RegularExpression":
        return
    when = "when type is Exact or PathPrefix"
    if not value.startswith("/"):
        issues.error(f"must be an absolute path and start with '/' {when}", "value")
    for part in _PATH_NEVER:
        if part in value:
            issues.error(f"must not contain {part!r} {when}", "value")
    for end in ("/..", "/."):
        if value.endswith(end):
            issues.error(f"must not end with {end!r} {when}", "value")
    if not common.PATH_CHARS.fullmatch(value):
        issues.error(
            f"{value!r} must only contain valid path characters (letters, digits, "
            f"-._~!$&'()*+,;=:@/ and %XX escapes) {when}",
            "value",
        )


def _check_value_matches(
    items: Sequence[HTTPHeaderMatch | HTTPQueryParamMatch] | None,
    issues: Issues,
    field: str,
    max_value: int,
) -> None:
    """Header or query parameter matches: at most 16, a name once only."""
    if (m := checks.max_items(items, 16)) is not None:
        issues.error(m, field)
    common.check_unique([item.name for item in items or []], issues, field, "name")
    for i, item in enumerate(items or []):
        if (m := common.header_name(item.name)) is not None:
            issues.error(m, field, i, "name")
        if not item.value:
            issues.error("must not be empty", field, i, "value")
        elif (m := checks.max_length(item.value, max_value)) is not None:
            issues.error(m, field, i, "value")


def _check_matches(matches: Sequence[HTTPRouteMatch] | None, issues: Issues) -> None:
    if (m := checks.max_items(matches, 64)) is not None:
        issues.error(m, "matches")
    for i, match in enumerate(matches or []):
        at = issues.at("matches", i)
        if match.path is not None:
            _check_path(match.path, at.at("path"))
        _check_value_matches(match.headers, at, "headers", 4096)
        _check_value_matches(match.query_params, at, "queryParams", 1024)


# --- filters ---------------------------------------------------------------------------


def _check_path_modifier(path: HTTPPathModifier, issues: Issues) -> None:
    for kind, field, value in (
        ("ReplaceFullPath", "replaceFullPath", path.replace_full_path),
        ("ReplacePrefixMatch", "replacePrefixMatch", path.replace_prefix_match),
    ):
        if (m := checks.max_length(value, 1024)) is not None:
            issues.error(m, field)
        if value is None and path.type == kind:
            issues.error(f"required when type is {kind}", field)
        elif value is not None and path.type != kind:
            issues.error(f"must not be set when type is {path.type} (only with type {kind})", field)


def _check_redirect(f: HTTPRequestRedirectFilter | HTTPURLRewriteFilter, issues: Issues) -> None:
    """RequestRedirect and URLRewrite: a precise hostname and a path modifier."""
    if f.hostname is not None and (m := common.precise_hostname(f.hostname)) is not None:
        issues.error(m, "hostname")
    if f.path is not None:
        _check_path_modifier(f.path, issues.at("path"))


def _cors_origin(value: str) -> str | None:
    what = "a valid origin ('*', or http(s)://HOST[:PORT], HOST may start with '*.')"
    if not value:
        return "must not be empty"
    if (m := checks.max_length(value, 253)) is not None:
        return m
    return None if _CORS_ORIGIN.fullmatch(value) else f"{value!r} is not {what}"


def _check_cors(cors: HTTPCORSFilter, issues: Issues) -> None:
    lists: tuple[tuple[str, Sequence[str] | None, int, Callable[[str], str | None] | None], ...] = (
        ("allowOrigins", cors.allow_origins, 64, _cors_origin),
        ("allowMethods", cors.allow_methods, 9, None),
        ("allowHeaders", cors.allow_headers, 64, common.header_name),
        ("exposeHeaders", cors.expose_headers, 64, common.header_name),
    )
    for field, values, most, check in lists:
        if (m := checks.max_items(values, most)) is not None:
            issues.error(m, field)
        common.check_unique(values, issues, field)
        for i, value in enumerate(values or []):
            if check is not None and (m := check(value)) is not None:
                issues.error(m, field, i)
        if field != "exposeHeaders" and values and "*" in values and len(values) > 1:
            issues.error("'*' cannot be combined with other values", field)


def _check_header_list(values: Sequence[str] | None, issues: Issues, field: str) -> None:
    if (m := checks.max_items(values, 64)) is not None:
        issues.error(m, field)
    common.check_unique(values, issues, field)


def _check_external_auth(auth: HTTPExternalAuthFilter, issues: Issues) -> None:
    common.check_backend_object_ref(auth.backend_ref, issues.at("backendRef"))
    for protocol, field, config in (("GRPC", "grpc", auth.grpc), ("HTTP", "http", auth.http)):
        if config is None and auth.protocol == protocol:
            issues.error(f"required when protocol is {protocol}", field)
        elif config is not None and auth.protocol != protocol:
            issues.error(f"must not be set when protocol is {auth.protocol}", field)
    if auth.grpc is not None:
        _check_header_list(auth.grpc.allowed_headers, issues.at("grpc"), "allowedHeaders")
    http = auth.http
    if http is not None:
        at = issues.at("http")
        if http.path is not None:
            if (m := checks.max_length(http.path, 1024)) is not None:
                at.error(m, "path")
            elif not common.PATH_CHARS.fullmatch(http.path):
                at.error(f"{http.path!r} must only contain valid path characters", "path")
        _check_header_list(http.allowed_headers, at, "allowedHeaders")
        _check_header_list(http.allowed_response_headers, at, "allowedResponseHeaders")


_FILTER_CHECKS: tuple[tuple[str, str, Callable[[Any, Issues], None]], ...] = (
    ("request_header_modifier", "requestHeaderModifier", common.check_header_filter),
    ("response_header_modifier", "responseHeaderModifier", common.check_header_filter),
    ("request_mirror", "requestMirror", common.check_mirror),
    ("request_redirect", "requestRedirect", _check_redirect),
    ("url_rewrite", "urlRewrite", _check_redirect),
    ("cors", "cors", _check_cors),
    ("external_auth", "externalAuth", _check_external_auth),
    ("extension_ref", "extensionRef", common.check_local_ref),
)


def _check_filters(filters: Sequence[HTTPRouteFilter] | None, issues: Issues) -> None:
    """A rule's or a backendRef's filters (issues rooted at their owner)."""
    if filters is None:
        return
    if (m := checks.max_items(filters, 16)) is not None:
        issues.error(m, "filters")
    common.check_repeated_filters(filters, issues, _ONCE)
    kinds = [f.type for f in filters]
    if "RequestRedirect" in kinds and "URLRewrite" in kinds:
        later = max(kinds.index("RequestRedirect"), kinds.index("URLRewrite"))
        issues.error(
            "may specify either a RequestRedirect or a URLRewrite filter, but not both",
            "filters",
            later,
            "type",
        )
    for i, f in enumerate(filters):
        at = issues.at("filters", i)
        common.check_filter_fields(f, FILTER_FIELDS, at)
        for attribute, field, check in _FILTER_CHECKS:
            if (value := getattr(f, attribute)) is not None:
                check(value, at.at(field))


# --- rules -----------------------------------------------------------------------------


def _prefix_replacements(filters: Sequence[HTTPRouteFilter] | None, attribute: str) -> int:
    """How many of the filters replace the matched prefix (redirect or rewrite)."""
    count = 0
    for f in filters or []:
        modifier = getattr(f, attribute)
        path = modifier.path if modifier is not None else None
        if path is not None and path.type == "ReplacePrefixMatch":
            count += path.replace_prefix_match is not None
    return count


def _one_prefix_match(rule: HTTPRouteRule) -> bool:
    """Exactly one match, of a path prefix (an unset list or path is the default,
    PathPrefix "/")."""
    if rule.matches is None:
        return True
    if len(rule.matches) != 1:
        return False
    path = rule.matches[0].path
    return path is None or (path.type or "PathPrefix") == "PathPrefix"


def _check_prefix_rewrites(rule: HTTPRouteRule, issues: Issues) -> None:
    if _one_prefix_match(rule):
        return
    for attribute, kind in (("request_redirect", "RequestRedirect"), ("url_rewrite", "URLRewrite")):
        on_rule = _prefix_replacements(rule.filters, attribute) == 1
        on_backends = [
            _prefix_replacements(b.filters, attribute) == 1 for b in rule.backend_refs or []
        ]
        if on_rule or on_backends.count(True) == 1:
            where = "" if on_rule else "within backendRefs, "
            issues.error(
                f"{where}when using a {kind} filter with path.replacePrefixMatch, exactly one "
                "PathPrefix match must be specified",
                "matches",
            )


def _check_timeouts(timeouts: HTTPRouteTimeouts, issues: Issues) -> None:
    valid = True
    for field, value in (
        ("request", timeouts.request),
        ("backendRequest", timeouts.backend_request),
    ):
        if value is not None and (m := common.duration(value)) is not None:
            issues.error(m, field)
            valid = False
    if valid and timeouts.request is not None and timeouts.backend_request is not None:
        request = common.duration_seconds(timeouts.request)
        backend = common.duration_seconds(timeouts.backend_request)
        if request != 0 and backend > request:
            issues.error(
                f"backendRequest timeout cannot be longer than request timeout "
                f"({timeouts.request})",
                "backendRequest",
            )


def _check_retry(retry: HTTPRouteRetry, issues: Issues) -> None:
    common.check_unique(retry.codes, issues, "codes")
    if retry.backoff is not None and (m := common.duration(retry.backoff)) is not None:
        issues.error(m, "backoff")


def _check_rule(rule: HTTPRouteRule, issues: Issues) -> None:
    _check_matches(rule.matches, issues)
    _check_filters(rule.filters, issues)
    common.check_backend_refs(rule.backend_refs, issues)
    for j, ref in enumerate(rule.backend_refs or []):
        _check_filters(ref.filters, issues.at("backendRefs", j))
    if rule.backend_refs:
        for i, f in enumerate(rule.filters or []):
            if f.request_redirect is not None:
                issues.error(
                    "a RequestRedirect filter must not be used together with backendRefs",
                    "filters",
                    i,
                )
    _check_prefix_rewrites(rule, issues)
    if rule.timeouts is not None:
        _check_timeouts(rule.timeouts, issues.at("timeouts"))
    if rule.retry is not None:
        _check_retry(rule.retry, issues.at("retry"))
    if rule.session_persistence is not None:
        common.check_session_persistence(rule.session_persistence, issues.at("sessionPersistence"))


def validate(spec: HTTPRouteSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    common.check_parent_refs(spec.parent_refs, issues)
    common.check_hostnames(spec.hostnames, issues, most=16)
    rules = spec.rules
    if rules is not None:
        if (m := checks.max_items(rules, 16) or checks.min_items(rules, 1)) is not None:
            issues.error(m, "rules")
        # An unset matches list is the default: one match.
        total = sum(1 if r.matches is None else len(r.matches) for r in rules)
        if total > _MAX_MATCHES:
            issues.error(
                f"the total number of matches across all rules must be at most {_MAX_MATCHES}, "
                f"not {total}",
                "rules",
            )
    common.check_rule_names(rules, issues, unique=False)
    for i, rule in enumerate(rules or []):
        _check_rule(rule, issues.at("rules", i))


KIND = KindInfo(
    kind="HTTPRoute",
    group=GATEWAY_API,
    versions=("v1beta1", "v1"),
    plural="httproutes",
    spec_model=HTTPRouteSpec,
    validate=validate,
    spec_required=True,
)
