"""GRPCRoute (gateway.networking.k8s.io v1): how gRPC requests are matched by service,
method and headers, filtered and sent to backends; validated as the Gateway API's CRD
does, CEL rules included (plus the experimental channel's sessionPersistence and
useDefaultGateways fields)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from api import checks
from api.gateway_api import common
from api.gateway_api.common import (
    BackendRef,
    HTTPHeaderFilter,
    HTTPRequestMirrorFilter,
    LocalObjectReference,
    ParentReference,
    SessionPersistence,
)
from api.issues import Issues
from api.model import Spec
from api.resources import GATEWAY_API, KindInfo

__all__ = [
    "FILTER_FIELDS",
    "KIND",
    "GRPCBackendRef",
    "GRPCHeaderMatch",
    "GRPCMethodMatch",
    "GRPCRouteFilter",
    "GRPCRouteMatch",
    "GRPCRouteRule",
    "GRPCRouteSpec",
    "validate",
]

# What an Exact match may name: a (package-qualified) service and a method.
_SERVICE = re.compile(r"\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*", re.IGNORECASE)
_METHOD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_MAX_MATCHES = 128  # across all rules of a route


class GRPCMethodMatch(Spec):
    type: Literal["Exact", "RegularExpression"] | None = None  # Exact
    service: str | None = None
    method: str | None = None


class GRPCHeaderMatch(Spec):
    type: Literal["Exact", "RegularExpression"] | None = None  # Exact
    name: str
    value: str


class GRPCRouteMatch(Spec):
    method: GRPCMethodMatch | None = None
    headers: list[GRPCHeaderMatch] | None = None


class GRPCRouteFilter(Spec):
    type: Literal[
        "ResponseHeaderModifier", "RequestHeaderModifier", "RequestMirror", "ExtensionRef"
    ]
    request_header_modifier: HTTPHeaderFilter | None = None
    response_header_modifier: HTTPHeaderFilter | None = None
    request_mirror: HTTPRequestMirrorFilter | None = None
    extension_ref: LocalObjectReference | None = None


FILTER_FIELDS: Mapping[str, tuple[str, str]] = {
    "RequestHeaderModifier": ("request_header_modifier", "requestHeaderModifier"),
    "ResponseHeaderModifier": ("response_header_modifier", "responseHeaderModifier"),
    "RequestMirror": ("request_mirror", "requestMirror"),
    "ExtensionRef": ("extension_ref", "extensionRef"),
}
_FILTER_CHECKS: tuple[tuple[str, str, Callable[[Any, Issues], None]], ...] = (
    ("request_header_modifier", "requestHeaderModifier", common.check_header_filter),
    ("response_header_modifier", "responseHeaderModifier", common.check_header_filter),
    ("request_mirror", "requestMirror", common.check_mirror),
    ("extension_ref", "extensionRef", common.check_local_ref),
)


class GRPCBackendRef(BackendRef):
    filters: list[GRPCRouteFilter] | None = None


class GRPCRouteRule(Spec):
    name: str | None = None
    matches: list[GRPCRouteMatch] | None = None
    filters: list[GRPCRouteFilter] | None = None
    backend_refs: list[GRPCBackendRef] | None = None
    session_persistence: SessionPersistence | None = None


class GRPCRouteSpec(Spec):
    parent_refs: list[ParentReference] | None = None
    use_default_gateways: Literal["All", "None"] | None = None
    hostnames: list[str] | None = None
    rules: list[GRPCRouteRule] | None = None


def _check_method(match: GRPCMethodMatch, issues: Issues) -> None:
    if match.service is None and match.method is None:
        issues.error("one or both of 'service' or 'method' must be specified")
    exact = (match.type or "Exact") == "Exact"
    for field, value, pattern, what in (
        ("service", match.service, _SERVICE, "a valid gRPC service name (such as foo.Bar)"),
        ("method", match.method, _METHOD, "a valid gRPC method name (letters, digits, '_')"),
    ):
        if value is None:
            continue
        if (m := checks.max_length(value, 1024)) is not None:
            issues.error(m, field)
        elif exact and not pattern.fullmatch(value):
            issues.error(f"{value!r} is not {what}", field)


def _check_headers(headers: Sequence[GRPCHeaderMatch] | None, issues: Issues) -> None:
    if (m := checks.max_items(headers, 16)) is not None:
        issues.error(m, "headers")
    common.check_unique([h.name for h in headers or []], issues, "headers", "name")
    for i, header in enumerate(headers or []):
        if (m := common.header_name(header.name)) is not None:
            issues.error(m, "headers", i, "name")
        if not header.value:
            issues.error("must not be empty", "headers", i, "value")
        elif (m := checks.max_length(header.value, 4096)) is not None:
            issues.error(m, "headers", i, "value")


def _check_filters(filters: Sequence[GRPCRouteFilter] | None, issues: Issues) -> None:
    if filters is None:
        return
    if (m := checks.max_items(filters, 16)) is not None:
        issues.error(m, "filters")
    common.check_repeated_filters(
        filters, issues, ("RequestHeaderModifier", "ResponseHeaderModifier")
    )
    for i, f in enumerate(filters):
        at = issues.at("filters", i)
        common.check_filter_fields(f, FILTER_FIELDS, at)
        for attribute, field, check in _FILTER_CHECKS:
            if (value := getattr(f, attribute)) is not None:
                check(value, at.at(field))


def _check_rule(rule: GRPCRouteRule, issues: Issues) -> None:
    if (m := checks.max_items(rule.matches, 64)) is not None:
        issues.error(m, "matches")
    for i, match in enumerate(rule.matches or []):
        at = issues.at("matches", i)
        if match.method is not None:
            _check_method(match.method, at.at("method"))
        _check_headers(match.headers, at)
    _check_filters(rule.filters, issues)
    common.check_backend_refs(rule.backend_refs, issues)
    for j, ref in enumerate(rule.backend_refs or []):
        _check_filters(ref.filters, issues.at("backendRefs", j))
    if rule.session_persistence is not None:
        common.check_session_persistence(rule.session_persistence, issues.at("sessionPersistence"))


def validate(spec: GRPCRouteSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    common.check_parent_refs(spec.parent_refs, issues)
    common.check_hostnames(spec.hostnames, issues, most=16)
    rules = spec.rules
    if (m := checks.max_items(rules, 16)) is not None:
        issues.error(m, "rules")
    total = sum(len(r.matches or []) for r in rules or [])
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
    kind="GRPCRoute",
    group=GATEWAY_API,
    versions=("v1",),
    plural="grpcroutes",
    spec_model=GRPCRouteSpec,
    validate=validate,
    spec_required=True,
)
