"""Types and checks the Gateway API kinds share: object references, parent and backend
references, hostnames, header filters, request mirroring, session persistence, and the
Gateway API's duration format (GEP-2257), which the translator reuses.

The rules are those of the Gateway API's CRDs: the OpenAPI schema (types, required
fields and enums are in the models; string patterns, lengths, list sizes and numeric
bounds are checked here) and their CEL rules (`x-kubernetes-validations`), which the
API server evaluates after applying the schema's defaults, so the checks here read an
unset field as its default where a rule depends on it. Each check function either
returns an error message (None: fine) or reports through `Issues` at the field path.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from api import checks
from api.issues import Issues
from api.model import Spec
from api.resources import GATEWAY_API

__all__ = [
    "DURATION",
    "EXPERIMENTAL_VERSIONS",
    "HOSTNAME",
    "PATH_CHARS",
    "BackendObjectReference",
    "BackendRef",
    "CookieConfig",
    "Fraction",
    "HTTPHeader",
    "HTTPHeaderFilter",
    "HTTPRequestMirrorFilter",
    "HeaderConfig",
    "LabelSelector",
    "LabelSelectorRequirement",
    "LocalObjectReference",
    "NonNegativeInt32",
    "ObjectReference",
    "ParentReference",
    "PortNumber",
    "PositiveInt32",
    "SecretObjectReference",
    "SessionPersistence",
    "Weight",
    "check_backend_object_ref",
    "check_backend_refs",
    "check_backend_rules",
    "check_filter_fields",
    "check_header_filter",
    "check_hostnames",
    "check_local_ref",
    "check_mirror",
    "check_object_ref",
    "check_parent_refs",
    "check_repeated_filters",
    "check_rule_names",
    "check_secret_ref",
    "check_session_persistence",
    "check_unique",
    "duration",
    "duration_seconds",
    "group_name",
    "header_name",
    "hostname",
    "is_hostname_ip",
    "is_ip",
    "kind_name",
    "namespace_name",
    "object_name",
    "precise_hostname",
    "route_version",
    "section_name",
    "warn_label_selector",
]

INT32_MAX = 2**31 - 1

# Numbers as the CRDs bound them (int32 unless the Go field is a plain int).
PortNumber = Annotated[int, Field(ge=1, le=65535)]
Weight = Annotated[int, Field(ge=0, le=1_000_000)]
NonNegativeInt32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
PositiveInt32 = Annotated[int, Field(ge=1, le=INT32_MAX)]

# The CRDs' string patterns, matched in full (the CRDs anchor them with ^...$).
_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
HOSTNAME = re.compile(r"(\*\.)?" + _SUBDOMAIN)
PRECISE_HOSTNAME = re.compile(_SUBDOMAIN)
SECTION_NAME = re.compile(_SUBDOMAIN)  # also a non-empty Group
KIND = re.compile(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?")
HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
# An absolute path's characters (RFC 3986 pchar and '/'), as HTTP path matches take them.
PATH_CHARS = re.compile(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+")
# GEP-2257: one to four groups of up to five digits and a unit.
DURATION = re.compile(r"([0-9]{1,5}(h|m|s|ms)){1,4}")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}

_ROUTE_DEFAULT_GROUP = GATEWAY_API  # a parentRef's group when unset
FilterFields = Mapping[str, tuple[str, str]]  # filter type -> (attribute, field as written)


def route_version(meta: Mapping[str, Any]) -> str | None:
    """The apiVersion's version of the document being validated, when the caller says
    (``meta["version"]``, or ``meta["apiVersion"]`` as group/version); None if unknown.
    Some rules differ between a kind's versions (TLSRoute v1alpha2 and v1)."""
    version = meta.get("version")
    if isinstance(version, str) and version:
        return version
    api_version = meta.get("apiVersion")
    if isinstance(api_version, str) and "/" in api_version:
        return api_version.rpartition("/")[2] or None
    return None


# --- durations (GEP-2257) --------------------------------------------------------------


def duration_seconds(text: str) -> float:
    """A Gateway API duration ('1h', '10s', '500ms', '1m30s') in seconds. Raises
    ValueError for anything else: no sign, no fractions, no 'us'/'ns', at most four
    groups of at most five digits each."""
    if not isinstance(text, str) or not DURATION.fullmatch(text):
        raise ValueError(f"invalid Gateway API duration {text!r}")
    return sum(int(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(text))


def duration(text: str) -> str | None:
    if not DURATION.fullmatch(text):
        return (
            f"invalid duration {text!r}: must be one to four groups of up to five digits "
            "and a unit (h, m, s or ms), such as 1h, 10s, 500ms or 1m30s"
        )
    return None


# --- strings ---------------------------------------------------------------------------


def _text(
    value: str, pattern: re.Pattern[str] | None, max_len: int, what: str, min_len: int = 1
) -> str | None:
    if len(value) < min_len:
        return "must not be empty"
    if (m := checks.max_length(value, max_len)) is not None:
        return m
    if pattern is not None and not pattern.fullmatch(value):
        return f"{value!r} is not {what}"
    return None


def hostname(value: str) -> str | None:
    return _text(
        value, HOSTNAME, 253, "a valid hostname (lower-case DNS labels, optionally '*.' first)"
    )


def precise_hostname(value: str) -> str | None:
    return _text(value, PRECISE_HOSTNAME, 253, "a valid hostname (lower-case DNS labels)")


def section_name(value: str) -> str | None:
    return _text(value, SECTION_NAME, 253, "a valid name (lower-case DNS labels, '-' and '.')")


def object_name(value: str) -> str | None:
    return _text(value, None, 253, "")


def group_name(value: str) -> str | None:
    if value == "":
        return None  # the core API group
    return _text(value, SECTION_NAME, 253, "a valid API group (a lower-case DNS subdomain)")


def kind_name(value: str) -> str | None:
    return _text(value, KIND, 63, "a valid kind (a letter, then letters, digits and '-')")


def namespace_name(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if not checks.is_k8s_label(value):
        return f"{value!r} is not a valid namespace (a lower-case DNS label)"
    return None


def header_name(value: str) -> str | None:
    return _text(value, HEADER_NAME, 256, "a valid HTTP header name (RFC 7230 token)")


def is_ip(value: str) -> bool:
    """An IPv4 or IPv6 address as the API server's `ipv4`/`ipv6` formats accept it
    (Go's lenient parser: an IPv4 octet may have leading zeros; no IPv6 zone)."""
    if "%" in value:
        return False
    if checks.is_ip(value):
        return True
    octets = value.split(".")
    return (
        len(octets) == 4
        and all(o.isascii() and o.isdigit() and len(o) <= 3 for o in octets)
        and checks.is_ip(".".join(str(int(o)) for o in octets))
    )


def is_hostname_ip(value: str) -> bool:
    """A route hostname that is an IP address (TLSRoute v1 refuses those; the hostname
    pattern lets a dotted quad through)."""
    return checks.is_ip(value)


def check_unique(
    values: Sequence[Hashable] | None, issues: Issues, field: str, key: str | None = None
) -> None:
    """A list of list-type set, or (`key`: the key's field) the keys of a list-type map:
    each later duplicate is refused, at its path."""
    seen: set[Hashable] = set()
    for i, value in enumerate(values or []):
        if value in seen:
            issues.error(f"duplicate value {value!r}", field, i, *((key,) if key else ()))
        seen.add(value)


def _check_size(
    values: Sequence[Any] | None, issues: Issues, field: str, most: int, least: int = 0
) -> None:
    if (m := checks.max_items(values, most)) is not None:
        issues.error(m, field)
    if least and values is not None and (m := checks.min_items(values, least)) is not None:
        issues.error(m, field)


# --- references ------------------------------------------------------------------------


class ParentReference(Spec):
    """A route's parent: a Gateway (the default), one of its listeners (sectionName,
    port), or another kind such as a Service (GAMMA)."""

    group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str
    section_name: str | None = None
    port: PortNumber | None = None


class BackendObjectReference(Spec):
    group: str | None = None
    kind: str | None = None
    name: str
    namespace: str | None = None
    port: PortNumber | None = None


class BackendRef(BackendObjectReference):
    weight: Weight | None = None


class LocalObjectReference(Spec):
    group: str
    kind: str
    name: str


class SecretObjectReference(Spec):
    group: str | None = None
    kind: str | None = None
    name: str
    namespace: str | None = None


class ObjectReference(Spec):
    group: str
    kind: str
    name: str
    namespace: str | None = None


class LabelSelectorRequirement(Spec):
    key: str
    operator: str
    values: list[str] | None = None


class LabelSelector(Spec):
    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def warn_label_selector(selector: LabelSelector, issues: Issues) -> None:
    """The CRDs check nothing in a label selector; what Kubernetes could not parse as one
    selects nothing here, said at its path."""
    for i, req in enumerate(selector.match_expressions or []):
        at = issues.at("matchExpressions", i)
        if req.operator not in _OPERATORS:
            at.warn(
                f"operator {req.operator!r} is not one of {', '.join(_OPERATORS)}: "
                "the selector selects nothing",
                "operator",
            )
        elif (req.operator in ("In", "NotIn")) != bool(req.values):
            need = "needs values" if req.operator in ("In", "NotIn") else "takes no values"
            at.warn(f"operator {req.operator} {need}: the selector selects nothing", "values")


def _check_names(issues: Issues, **fields: tuple[str | None, Any]) -> None:
    """field=(value, check) for each string field of a reference; unset ones skipped."""
    for field, (value, check) in fields.items():
        if value is not None and (m := check(value)) is not None:
            issues.error(m, field)


def check_local_ref(ref: LocalObjectReference, issues: Issues) -> None:
    _check_names(
        issues,
        group=(ref.group, group_name),
        kind=(ref.kind, kind_name),
        name=(ref.name, object_name),
    )


def check_object_ref(ref: ObjectReference | SecretObjectReference, issues: Issues) -> None:
    """A reference that may name another namespace (objects and Secrets alike)."""
    _check_names(
        issues,
        group=(ref.group, group_name),
        kind=(ref.kind, kind_name),
        name=(ref.name, object_name),
        namespace=(ref.namespace, namespace_name),
    )


check_secret_ref = check_object_ref


def check_backend_object_ref(ref: BackendObjectReference, issues: Issues) -> None:
    """Names, and "Must have port for Service reference" (group '' and kind Service are
    the defaults)."""
    _check_names(
        issues,
        group=(ref.group, group_name),
        kind=(ref.kind, kind_name),
        name=(ref.name, object_name),
        namespace=(ref.namespace, namespace_name),
    )
    if not ref.group and (ref.kind or "Service") == "Service" and ref.port is None:
        issues.error("required when the backend is a Service (group '' and kind Service)", "port")


def check_backend_refs(
    refs: Sequence[BackendRef] | None, issues: Issues, *, least: int = 0
) -> None:
    """A rule's backendRefs: at most 16 (at least `least`), each a valid reference."""
    _check_size(refs, issues, "backendRefs", 16, least)
    for i, ref in enumerate(refs or []):
        check_backend_object_ref(ref, issues.at("backendRefs", i))


def _parent_key(ref: ParentReference) -> tuple[str, str, str, str]:
    group = _ROUTE_DEFAULT_GROUP if ref.group is None else ref.group
    return (group, ref.kind or "Gateway", ref.name, ref.namespace or "")


def _check_parent_ref(ref: ParentReference, issues: Issues) -> None:
    _check_names(
        issues,
        group=(ref.group, group_name),
        kind=(ref.kind, kind_name),
        namespace=(ref.namespace, namespace_name),
        name=(ref.name, object_name),
        sectionName=(ref.section_name, section_name),
    )


def _parent_conflicts(refs: Sequence[ParentReference], by_port: bool) -> list[tuple[int, str]]:
    """(index, message) for each reference that the same-parent rules refuse: of a parent
    named more than once, each reference must name a different part, by sectionName
    (`by_port`: by sectionName or port), and all of them must name one."""
    what = "sectionName or port" if by_port else "sectionName"
    found: list[tuple[int, str]] = []

    def part(ref: ParentReference) -> tuple[str, int]:
        return (ref.section_name or "", (ref.port or 0) if by_port else 0)

    for j, later in enumerate(refs):
        for i, earlier in enumerate(refs[:j]):
            if _parent_key(earlier) != _parent_key(later):
                continue
            a, b = part(earlier), part(later)
            if (not a[0]) != (not b[0]) or (not a[1]) != (not b[1]):
                message = f"{what} must be specified when parentRefs includes 2 or more "
                found.append((j, f"{message}references to the same parent (parentRefs[{i}])"))
                break
            if a == b:
                message = f"{what} must be unique when parentRefs includes 2 or more references "
                found.append((j, f"{message}to the same parent (parentRefs[{i}] is the same)"))
                break
    return found


def check_parent_refs(
    refs: Sequence[ParentReference] | None, issues: Issues, *, experimental: bool = False
) -> None:
    """spec.parentRefs: at most 32, each a valid reference, and where several name the
    same parent (group, kind, namespace and name, defaults applied) each must name a
    different part of it. The standard channel's CRDs tell the parts apart by
    sectionName only; the experimental channel's by sectionName or port (a GAMMA route
    per Service port, as Istio's tests write them). A version both channels serve passes
    if either rule does; `experimental`: a version only the experimental channel serves."""
    _check_size(refs, issues, "parentRefs", 32)
    refs = refs or []
    for i, ref in enumerate(refs):
        _check_parent_ref(ref, issues.at("parentRefs", i))
    by_port = _parent_conflicts(refs, by_port=True)
    if experimental or not by_port:
        conflicts = by_port
    else:
        conflicts = _parent_conflicts(refs, by_port=False)
    for j, message in conflicts:
        issues.error(message, "parentRefs", j)


def check_hostnames(
    hostnames: Sequence[str] | None, issues: Issues, *, most: int, least: int = 0
) -> None:
    _check_size(hostnames, issues, "hostnames", most, least)
    for i, host in enumerate(hostnames or []):
        if (m := hostname(host)) is not None:
            issues.error(m, "hostnames", i)


def check_rule_names(rules: Sequence[Any] | None, issues: Issues, *, unique: bool) -> None:
    """rules[].name, and (`unique`: the experimental channel's rule) no name twice."""
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules or []):
        name = getattr(rule, "name", None)
        if name is None:
            continue
        if (m := section_name(name)) is not None:
            issues.error(m, "rules", i, "name")
        if unique and name in seen:
            issues.error(
                f"rule name must be unique within the route (rules[{seen[name]}] has it)",
                "rules",
                i,
                "name",
            )
        seen.setdefault(name, i)


# --- filters shared by HTTPRoute and GRPCRoute ---------------------------------------------


class HTTPHeader(Spec):
    name: str
    value: str


class HTTPHeaderFilter(Spec):
    set: list[HTTPHeader] | None = None
    add: list[HTTPHeader] | None = None
    remove: list[str] | None = None


class Fraction(Spec):
    numerator: NonNegativeInt32
    denominator: PositiveInt32 | None = None  # 100 when unset


class HTTPRequestMirrorFilter(Spec):
    backend_ref: BackendObjectReference
    percent: Annotated[int, Field(ge=0, le=100)] | None = None
    fraction: Fraction | None = None


def check_header_filter(f: HTTPHeaderFilter, issues: Issues) -> None:
    """set/add: at most 16 headers each, no name twice; remove: at most 16, no repeats."""
    for field, headers in (("set", f.set), ("add", f.add)):
        _check_size(headers, issues, field, 16)
        check_unique([h.name for h in headers or []], issues, field, "name")
        for i, header in enumerate(headers or []):
            if (m := header_name(header.name)) is not None:
                issues.error(m, field, i, "name")
            if (m := _text(header.value, None, 4096, "")) is not None:
                issues.error(m, field, i, "value")
    _check_size(f.remove, issues, "remove", 16)
    check_unique(f.remove, issues, "remove")


def check_mirror(f: HTTPRequestMirrorFilter, issues: Issues) -> None:
    check_backend_object_ref(f.backend_ref, issues.at("backendRef"))
    if f.percent is not None and f.fraction is not None:
        issues.error("only one of percent or fraction may be specified", "fraction")
    fraction = f.fraction
    if fraction is not None:
        denominator = 100 if fraction.denominator is None else fraction.denominator
        if fraction.numerator > denominator:
            issues.error(
                f"numerator must be less than or equal to denominator ({denominator})",
                "fraction",
                "numerator",
            )


def check_filter_fields(f: Any, fields: FilterFields, issues: Issues) -> None:
    """A filter sets exactly the field of its type: the one it names is required, the
    others must be unset."""
    for kind, (attribute, field) in fields.items():
        present = getattr(f, attribute) is not None
        if present and f.type != kind:
            issues.error(f"must not be set when type is {f.type} (only with type {kind})", field)
        elif not present and f.type == kind:
            issues.error(f"required when type is {kind}", field)


def check_repeated_filters(filters: Sequence[Any], issues: Issues, once: Iterable[str]) -> None:
    """The filter types a list may hold once only: each later one is refused."""
    once = frozenset(once)
    seen: set[str] = set()
    for i, f in enumerate(filters):
        if f.type in once and f.type in seen:
            issues.error(f"{f.type} filter cannot be repeated", "filters", i, "type")
        seen.add(f.type)


# --- session persistence (experimental channel) ---------------------------------------------


class CookieConfig(Spec):
    name: str | None = None
    path: str | None = None
    lifetime_type: Literal["Permanent", "Session"] | None = None


class HeaderConfig(Spec):
    name: str


class SessionPersistence(Spec):
    absolute_timeout: str | None = None
    type: Literal["Cookie", "Header"] | None = None  # Cookie when unset
    cookie: CookieConfig | None = None
    header: HeaderConfig | None = None


def check_session_persistence(sp: SessionPersistence, issues: Issues) -> None:
    kind = sp.type or "Cookie"
    if sp.absolute_timeout is not None and (m := duration(sp.absolute_timeout)) is not None:
        issues.error(m, "absoluteTimeout")
    for field, config in (("cookie", sp.cookie), ("header", sp.header)):
        wanted = field.capitalize()
        if config is not None and kind != wanted:
            issues.error(f"must not be set when type is {kind}", field)
        elif config is None and kind == wanted:
            issues.error(f"required when type is {wanted}", field)
    cookie = sp.cookie
    if cookie is not None:
        if cookie.name is not None and (m := header_name(cookie.name)) is not None:
            issues.error(m, "cookie", "name")
        if (m := checks.max_length(cookie.path, 1024)) is not None:
            issues.error(m, "cookie", "path")
        if cookie.lifetime_type == "Permanent" and sp.absolute_timeout is None:
            issues.error("required when cookie lifetimeType is Permanent", "absoluteTimeout")
    if sp.header is not None and (m := header_name(sp.header.name)) is not None:
        issues.error(m, "header", "name")


# --- TCPRoute and TLSRoute --------------------------------------------------------------------

# Versions served only by the experimental channel, with its rules (parentRefs told apart
# by sectionName or port; rule names unique). A kind's other versions take the standard
# channel's rules.
EXPERIMENTAL_VERSIONS = frozenset({"v1alpha2", "v1alpha3"})


def check_backend_rules(
    rules: Sequence[Any], issues: Issues, *, most: int, version: str | None
) -> None:
    """spec.rules of a TCPRoute or TLSRoute: 1..`most` rules, each with 1..16 backendRefs;
    rule names unique where more than one rule is allowed (the alpha versions)."""
    if (m := checks.min_items(rules, 1) or checks.max_items(rules, most)) is not None:
        issues.error(m, "rules")
    check_rule_names(rules, issues, unique=version is None or version in EXPERIMENTAL_VERSIONS)
    for i, rule in enumerate(rules):
        check_backend_refs(rule.backend_refs, issues.at("rules", i), least=1)
