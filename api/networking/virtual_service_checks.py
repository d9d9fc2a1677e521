"""Small VirtualService checks used by HTTP, TLS and TCP routes alike.

Each function reports through an `Issues` rooted at the object it checks, so
the caller only has to say where that object lives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pydantic.alias_generators import to_camel

from api import checks
from api.issues import Issues

if TYPE_CHECKING:
    from api.networking.virtual_service import (
        Destination,
        HeaderOperations,
        Headers,
        HTTPRouteDestination,
        RouteDestination,
        StringMatch,
    )

__all__ = [
    "check_destination",
    "check_gateway_names",
    "check_headers",
    "check_match_source",
    "check_string_match",
    "check_weights",
    "host_matches",
    "host_subset_of",
    "is_authority_header",
    "is_jwt_claim",
]

JWT_CLAIM_PREFIX = "@request.auth.claims."


def host_matches(a: str, b: str) -> bool:
    """Istio's host.Name.Matches: the two names can select a common host."""
    a_wild, b_wild = a.startswith("*"), b.startswith("*")
    if a_wild and b_wild:
        shorter, longer = sorted((a[1:], b[1:]), key=len)
        return longer.endswith(shorter)
    if a_wild:
        return b.endswith(a[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


def host_subset_of(a: str, b: str) -> bool:
    """Istio's host.Name.SubsetOf: every host `a` selects, `b` selects too."""
    a_wild, b_wild = a.startswith("*"), b.startswith("*")
    if a_wild:
        return b_wild and len(a) >= len(b) and a[1:].endswith(b[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


def is_jwt_claim(name: str) -> bool:
    return name.startswith(JWT_CLAIM_PREFIX) and len(name) > len(JWT_CLAIM_PREFIX)


def is_authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


def set_members(obj: object, names: Sequence[str]) -> list[str]:
    """The camelCase names of the `oneof` members that are set."""
    return [to_camel(n) for n in names if getattr(obj, n) is not None]


def check_string_match(m: StringMatch | None, issues: Issues, *, allow_empty_prefix: bool) -> None:
    """oneof exact/prefix/regex: at most one; no empty prefix (but uri); regex must compile."""
    if m is None:
        return
    used = set_members(m, ("exact", "prefix", "regex"))
    if len(used) > 1:
        issues.error(f"only one of exact, prefix or regex may be set, not {' and '.join(used)}")
    if m.prefix is not None and m.prefix == "" and not allow_empty_prefix:
        issues.error("a prefix match must not be empty", "prefix")
    if m.regex is not None and (msg := checks.regex(m.regex)) is not None:
        issues.error(msg, "regex")


def check_gateway_names(names: Sequence[str] | None, issues: Issues) -> None:
    """'namespace/name' (both DNS labels), or a bare FQDN such as 'mesh' or 'my-gateway'."""
    for i, name in enumerate(names or []):
        ns, slash, gw = name.partition("/")
        if not slash:
            if "." in name:
                parts = name.split(".")
                issues.warn(
                    f"legacy gateway name {name!r}; prefer namespace/name: '{parts[1]}/{parts[0]}'",
                    i,
                )
            if (msg := checks.fqdn(name)) is not None:
                issues.error(f"invalid gateway name: {msg}", i)
            continue
        if not ns or not gw:
            issues.error(f"{name!r}: namespace and gateway name must not be empty", i)
            continue
        if checks.dns_label(ns) is not None:
            issues.error(f"{name!r}: namespace {ns!r} is not a DNS-1123 label", i)
        if checks.dns_label(gw) is not None:
            issues.error(f"{name!r}: gateway name {gw!r} is not a DNS-1123 label", i)


def check_match_source(
    port: int | None,
    source_labels: Mapping[str, str] | None,
    gateways: Sequence[str] | None,
    source_namespace: str | None,
    issues: Issues,
) -> None:
    """The match fields every route kind shares: port, sourceLabels, gateways, sourceNamespace."""
    if port and (msg := checks.port(port)) is not None:
        issues.error(msg, "port")
    for msg in checks.labels(source_labels or {}):
        issues.error(msg, "sourceLabels")
    check_gateway_names(gateways, issues.at("gateways"))
    if source_namespace and (msg := checks.dns_label(source_namespace)) is not None:
        issues.error(msg, "sourceNamespace")


def check_destination(dest: Destination, issues: Issues) -> None:
    if dest.host == "*":
        issues.error("destination host must not be '*'", "host")
    elif (msg := checks.wildcard_domain(dest.host)) is not None:
        issues.error(f"invalid host {dest.host!r}: {msg}", "host")
    if dest.subset and (msg := checks.dns_label(dest.subset)) is not None:
        issues.error(f"invalid subset: {msg}", "subset")
    if dest.port is not None and (msg := checks.port(dest.port.number or 0)) is not None:
        issues.error(msg, "port", "number")


def check_weights(
    routes: Sequence[HTTPRouteDestination | RouteDestination], issues: Issues
) -> None:
    """Destinations valid, no negative weight, and several weights must not add up to 0."""
    total = 0
    for i, dest in enumerate(routes):
        check_destination(dest.destination, issues.at(i, "destination"))
        weight = dest.weight or 0
        if weight < 0:
            issues.error("must be >= 0", i, "weight")
        total += weight
    if len(routes) > 1 and total == 0:
        issues.error("the destination weights add up to 0; at least one must be positive")


def _check_operations(ops: HeaderOperations | None, issues: Issues, *, request: bool) -> None:
    if ops is None:
        return
    for field in ("set", "add"):
        for name, value in (getattr(ops, field) or {}).items():
            if msg := _operation_name(name, allow_authority=request):
                issues.error(msg, field, name)
            if (msg := checks.header_value(value)) is not None:
                issues.error(msg, field, name)
    for i, name in enumerate(ops.remove or []):
        if msg := _operation_name(name, allow_authority=False):
            issues.error(msg, "remove", i)


def _operation_name(name: str, *, allow_authority: bool) -> str | None:
    if not name:
        return "header name must not be empty"
    if allow_authority and is_authority_header(name):
        return None
    if name.lower() == "host":
        return "the Host header cannot be changed here"
    if name.startswith(":"):
        return f"HTTP/2 pseudo-header {name!r} cannot be changed"
    if any(c in name for c in "\x00\r\n"):  # what Istio refuses beyond the above
        return f"header name {name!r} has a NUL, CR or LF"
    return None


def check_headers(headers: Headers | None, issues: Issues) -> None:
    """Request set/add may target ':authority'/'host'; remove and responses may not."""
    if headers is None:
        return
    _check_operations(headers.request, issues.at("request"), request=True)
    _check_operations(headers.response, issues.at("response"), request=False)
