"""Shared building blocks of Istio's validation (ports, durations, names, ...).

Each check returns an error message, or None when the value is fine, so the
caller decides the path and severity: ``if (m := port(v)): issues.error(m, "port")``.
"""

from __future__ import annotations

import ipaddress
import re
import types
import typing
from collections.abc import Mapping, Sized
from typing import Any

import re2
from pydantic import BaseModel, ModelWrapValidatorHandler, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

__all__ = [
    "GRPC_STATUS_NAMES",
    "HTTP_LIKE",
    "K8S_LABEL",
    "K8S_SUBDOMAIN",
    "PROTOCOLS",
    "REMOVED_FIELDS",
    "TCP_LIKE",
    "TLS_LIKE",
    "dns_label",
    "duration",
    "duration_beyond_range",
    "duration_seconds",
    "fqdn",
    "header_name",
    "header_value",
    "ip_or_cidr",
    "is_ip",
    "is_k8s_label",
    "is_k8s_name",
    "labels",
    "max_entries",
    "max_items",
    "max_length",
    "min_items",
    "namespace_host",
    "partial_wildcard",
    "port",
    "protocol",
    "refuse_removed_fields",
    "regex",
    "removed_field",
    "selector_limits",
    "wildcard_domain",
    "workload_selector",
]

# gRPC status code names, in code order (the index is the code).
GRPC_STATUS_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
PROTOCOLS = frozenset(
    {
        "TCP",
        "UDP",
        "GRPC",
        "GRPC-WEB",
        "HTTP",
        "HTTP_PROXY",
        "HTTP2",
        "HTTPS",
        "TLS",
        "MONGO",
        "REDIS",
        "MYSQL",
    }
)
HTTP_LIKE = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"})
TLS_LIKE = frozenset({"HTTPS", "TLS"})
TCP_LIKE = frozenset({"TCP", "HTTPS", "TLS", "MONGO", "REDIS", "MYSQL"})

_DNS_LABEL = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?")
_DURATION = re.compile(r"(-?)((\d+(\.\d*)?|\.\d+)(h|m|s|ms|us|µs|ns))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PSEUDO_HEADERS = frozenset({":method", ":scheme", ":authority", ":path", ":status"})
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)")
# Kubernetes object identifiers, matched in full (a trailing newline never passes):
# a lower-case DNS-1123 label (namespaces, service accounts' namespaces), and a
# subdomain of such labels, at most 253 characters (object and service account names).
K8S_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
K8S_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"
)
_MAX_REGEX = 1024
ENVOY_MAX_REGEX_PROGRAM = 100  # Envoy's default re2.max_program_size.error_level


# --- size limits of Istio's CRD schemas (maxItems, minItems, maxLength, maxProperties) -----------


def max_items(values: Sized | None, limit: int) -> str | None:
    if values is not None and len(values) > limit:
        return f"must have at most {limit} items, not {len(values)}"
    return None


def min_items(values: Sized | None, limit: int) -> str | None:
    if values is not None and len(values) < limit:
        return f"must have at least {limit} item{'s' if limit > 1 else ''}, not {len(values)}"
    return None


def max_entries(values: Mapping[str, object] | None, limit: int) -> str | None:
    if values is not None and len(values) > limit:
        return f"must have at most {limit} entries, not {len(values)}"
    return None


def max_length(value: str | None, limit: int) -> str | None:
    if value is not None and len(value) > limit:
        return f"must be at most {limit} characters long, not {len(value)}"
    return None


def selector_limits(values: Mapping[str, str] | None, limit: int) -> list[tuple[str | None, str]]:
    """A selector's label map: at most `limit` labels, values at most 63 characters.
    (key or None for the whole map, message)."""
    if values is None:
        return []
    problems: list[tuple[str | None, str]] = []
    if (m := max_entries(values, limit)) is not None:
        problems.append((None, m))
    problems += [(k, m) for k, v in values.items() if (m := max_length(v, 63)) is not None]
    return problems


def port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else f"port number {value} must be in the range 1..65535"


def duration_seconds(text: str) -> float | None:
    """A Go/protobuf duration ('1s', '1.5m', '100ms') in seconds, None if malformed."""
    if not isinstance(text, str) or not _DURATION.fullmatch(text):
        return None
    total = sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(text))
    return -total if text.startswith("-") else total


# The largest protobuf Duration (10,000 years): Envoy refuses config holding more.
MAX_DURATION_SECONDS = 315_576_000_000


def duration_beyond_range(text: str) -> str | None:
    """Refuses a well-formed duration no protobuf Duration can hold."""
    seconds = duration_seconds(text)
    if seconds is not None and abs(seconds) > MAX_DURATION_SECONDS:
        return f"duration {text!r} exceeds the largest duration, {MAX_DURATION_SECONDS}s"
    return None


def duration(text: str, *, allow_zero: bool = False) -> str | None:
    """Istio's rule: at least 1ms and a whole number of milliseconds (and, for Envoy, no
    more than a protobuf Duration holds)."""
    seconds = duration_seconds(text)
    if seconds is None:
        return f"invalid duration {text!r}"
    if (beyond := duration_beyond_range(text)) is not None:
        return beyond
    if allow_zero and seconds == 0:
        return None
    millis = seconds * 1000
    if millis < 1 - 1e-9:
        return f"duration {text!r} must be at least 1ms"
    if abs(millis - round(millis)) > 1e-6:
        return f"duration {text!r} must be a whole number of milliseconds"
    return None


def is_k8s_label(value: str) -> bool:
    return K8S_LABEL.fullmatch(value) is not None


def is_k8s_name(value: str) -> bool:
    return len(value) <= 253 and K8S_SUBDOMAIN.fullmatch(value) is not None


def dns_label(value: str) -> str | None:
    if not value or not _DNS_LABEL.fullmatch(value):
        return f"{value!r} is not a DNS-1123 label (letters, digits, '-', at most 63)"
    return None


def fqdn(value: str) -> str | None:
    host = value[:-1] if value.endswith(".") else value
    if not 1 <= len(host) <= 255:
        return f"{value!r}: a domain name must be 1..255 characters"
    parts = host.split(".")
    for part in parts:
        if dns_label(part):
            return f"{value!r}: {part!r} is not a valid domain label"
    if parts[-1].isdigit():
        return f"{value!r}: the last label of a domain name must not be all digits"
    return None


def wildcard_domain(value: str) -> str | None:
    """'*', '*.foo.com', '*foo.com', or a plain domain (short names pass)."""
    if not 1 <= len(value) <= 255:
        return f"{value!r}: a domain name must be 1..255 characters"
    first, _, rest = value.partition(".")
    if first == "*" or first.startswith("*"):
        label = first[1:]
        if label.startswith("-"):
            label = label[1:]
        if label and dns_label(label):
            return f"{value!r}: invalid wildcard label {first!r}"
    elif dns_label(first):
        return f"{value!r}: {first!r} is not a valid domain label"
    if rest:
        return fqdn(rest)
    return None


def partial_wildcard(value: str) -> str | None:
    if "*" in value and value != "*" and not (value.startswith("*.") and "*" not in value[2:]):
        return f"{value!r}: a wildcard must be the whole host or its first label ('*.example.com')"
    return None


def ip_or_cidr(value: str) -> str | None:
    """An address or ADDRESS/PREFIX-LENGTH, as Go's netip parses them (Istio's rule): no
    netmask after the slash and no IPv6 zone, which Python's ipaddress would take."""
    address, slash, length = value.partition("/")
    try:
        if "%" in address or (slash and not (length.isascii() and length.isdigit())):
            raise ValueError(value)
        if slash:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        return f"{value!r} is not an IP address or CIDR block (ADDRESS/PREFIX-LENGTH)"
    return None


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def protocol(value: str) -> str | None:
    if value.upper() not in PROTOCOLS:
        return f"unsupported protocol {value!r} (one of {', '.join(sorted(PROTOCOLS))})"
    return None


def regex(value: str) -> str | None:
    """Must be non-empty, at most 1024 characters and compile as RE2."""
    if not value:
        return "regex must not be empty"
    if len(value) > _MAX_REGEX:
        return f"regex is longer than {_MAX_REGEX} characters"
    try:
        program = re2.compile(value).programsize
    except re2.error as err:
        return f"invalid RE2 regex {value!r}: {err}"
    if program > ENVOY_MAX_REGEX_PROGRAM:
        # Envoy refuses such config outright; catch it here rather than as a NACK.
        return (
            f"regex {value!r} is too complex for Envoy (RE2 program size {program}, "
            f"limit {ENVOY_MAX_REGEX_PROGRAM})"
        )
    return None


def header_name(value: str) -> str | None:
    if value in _PSEUDO_HEADERS or value.startswith("@request.auth.claims"):
        return None
    if not value or not _TOKEN.fullmatch(value):
        return f"invalid header name {value!r}"
    return None


def header_value(value: str) -> str | None:
    """No control characters but tab; '%' doubled or opening a closed %VAR% expression."""
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
        return "header value contains control characters"
    i = 0
    while i < len(value):
        if value[i] == "%":
            if value[i + 1 : i + 2] == "%":
                i += 2
                continue
            end = value.find("%", i + 1)
            if end == -1:
                return f"header value {value!r} has an unclosed %...% expression"
            i = end + 1
            continue
        i += 1
    return None


def _label_key(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not is_k8s_name(prefix)):
        return f"label key {key!r}: invalid prefix"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        return f"label key {key!r}: invalid name"
    return None


def labels(values: Mapping[str, str]) -> list[str]:
    problems = []
    for key, value in values.items():
        if (m := _label_key(key)) is not None:
            problems.append(m)
        if value and (len(value) > 63 or not _QUALIFIED_NAME.fullmatch(value)):
            problems.append(f"label value {value!r} for {key!r} is invalid")
    return problems


def workload_selector(match_labels: Mapping[str, str] | None) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a workload selector's labels."""
    if not match_labels:
        return [], ["selector has no labels: it applies to every workload in the namespace"]
    errors = []
    for key, value in match_labels.items():
        if not key:
            errors.append("selector has an empty label key")
        if "*" in key or "*" in value:
            errors.append(f"wildcard is not supported in selector label {key}={value}")
    # Istio refuses only those; other label forms match nothing rather than being wrong.
    return errors, []


def namespace_host(value: str, *, sidecar: bool) -> str | None:
    """Gateway/Sidecar host form: 'ns/host' ('*', '.', '~' namespaces)."""
    ns, slash, host = value.partition("/")
    if not slash:
        if sidecar:
            return f"{value!r}: must be namespace/host (e.g. './*' or 'istio-system/*')"
        ns, host = "*", value
    if not ns or not host:
        return f"{value!r}: namespace and host must both be set"
    bare_ns = ns[1:] if sidecar and ns.startswith("~") else ns
    if not (sidecar and ns == "~") and bare_ns not in ("*", ".") and dns_label(bare_ns):
        return f"{value!r}: invalid namespace {ns!r}"
    if host != "*" and "." not in host:
        return f"{value!r}: short names are not allowed, use a fully qualified host"
    if (m := partial_wildcard(host)) is not None:
        return m
    if not sidecar and is_ip(host):
        return None
    return wildcard_domain(host)


# --- fields Istio's API removed ------------------------------------------------------------------

# What istio/api's protos declare `reserved` (each checked with `git log -S` there): documents
# written for older Istio still carry these, and Istio refuses them as unknown fields. By
# our model (named as Istio's message) and field: (the release that removed it, what instead).
REMOVED_FIELDS: dict[str, dict[str, tuple[str, str]]] = {
    "HTTPRoute": {
        "websocketUpgrade": ("1.5", "websocket upgrades are always allowed"),
        "appendHeaders": ("1.5", "use headers.request.add"),
        "appendRequestHeaders": ("1.5", "use headers.request.add"),
        "removeRequestHeaders": ("1.5", "use headers.request.remove"),
        "appendResponseHeaders": ("1.5", "use headers.response.add"),
        "removeResponseHeaders": ("1.5", "use headers.response.remove"),
    },
    "HTTPRouteDestination": {
        "appendRequestHeaders": ("1.5", "use headers.request.add"),
        "removeRequestHeaders": ("1.5", "use headers.request.remove"),
        "appendResponseHeaders": ("1.5", "use headers.response.add"),
        "removeResponseHeaders": ("1.5", "use headers.response.remove"),
    },
    "TLSMatchAttributes": {"sourceSubnet": ("1.5", "TLS routes have no replacement")},
    "FaultAbort": {"percent": ("1.5", "use percentage.value")},
    "PortSelector": {"name": ("1.4", "use number")},
    "SidecarSpec": {"localhost": ("1.7", "it was never implemented")},
    "IstioIngressListener": {"localhostClientTls": ("1.7", "it was never implemented")},
    "IstioEgressListener": {"localhostServerTls": ("1.7", "it was never implemented")},
}
_ERROR_TYPES = frozenset(typing.get_args(ErrorType))


def removed_field(model: str, field: str) -> str | None:
    """Why `field` of `model` is refused, if Istio's API removed it."""
    if (removed := REMOVED_FIELDS.get(model, {}).get(field)) is None:
        return None
    release, instead = removed
    return f"unknown field: removed from the API in Istio {release} ({instead})"


def _declared(annotation: Any) -> Any:
    """X from `X | None` and `Annotated[X, ...]` (None for a union of several types)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return None
            annotation = members[0]
        else:
            return annotation


def _model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model of the value at `loc` (as pydantic reports it, by alias), if there is one."""
    current: Any = root
    for part in loc:
        current = _declared(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            by_alias = {f.alias or n: f for n, f in current.model_fields.items()}
            if not isinstance(part, str) or part not in by_alias:
                return None
            current = by_alias[part].annotation
        elif typing.get_origin(current) is list and isinstance(part, int):
            current = typing.get_args(current)[0]
        elif typing.get_origin(current) is dict and isinstance(part, str):
            current = typing.get_args(current)[1]
        else:
            return None
    current = _declared(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _refuse_removed_fields(
    cls: type[BaseModel], data: Any, handler: ModelWrapValidatorHandler[Any]
) -> Any:
    try:
        return handler(data)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        removed = {
            i: why
            for i, e in enumerate(errors)
            if e["type"] == "extra_forbidden"
            and (model := _model_at(cls, e["loc"][:-1])) is not None
            and (why := removed_field(model.__name__, str(e["loc"][-1]))) is not None
        }
        if not removed:
            raise
        details: list[InitErrorDetails] = []
        for i, e in enumerate(errors):
            detail: InitErrorDetails = {"type": e["type"], "loc": e["loc"], "input": e["input"]}
            if i in removed:
                detail["type"] = PydanticCustomError("removed_field", removed[i])
            elif e["type"] not in _ERROR_TYPES:  # a validator's own error type: kept as it is
                detail["type"] = PydanticCustomError(e["type"], "{message}", {"message": e["msg"]})
            elif "ctx" in e:
                detail["ctx"] = e["ctx"]
            details.append(detail)
        raise ValidationError.from_exception_data(err.title, details) from None


def refuse_removed_fields() -> Any:
    """A kind's spec model declares `refuse_removed = checks.refuse_removed_fields()`: the
    fields of REMOVED_FIELDS anywhere in it are refused saying so, not as bare unknowns."""
    # pydantic's stubs type only the decorator form inside a class body.
    return model_validator(mode="wrap")(classmethod(_refuse_removed_fields))  # type: ignore[arg-type]
