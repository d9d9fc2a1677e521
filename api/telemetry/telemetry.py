"""Telemetry (telemetry.istio.io): which providers get a workload's traces, metrics, access logs.

Providers are named in the mesh config (Pilot's settings): ``envoy`` (access
log file), ``zipkin`` (trace collector), ``prometheus`` (stats). The most
specific Telemetry wins: workload selector over namespace over the root
namespace (mesh-wide).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from api import checks
from api.issues import Issues
from api.model import Spec
from api.resources import TELEMETRY, KindInfo
from api.security.common import PolicyTargetReference, WorkloadSelector, check_scope

__all__ = ["KIND", "TELEMETRY", "TelemetrySpec"]


Mode = Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"]


class ProviderRef(Spec):
    name: str = ""


class TracingSelector(Spec):
    mode: Mode = "CLIENT_AND_SERVER"


class Literal_(Spec):
    value: str = ""


class Environment(Spec):
    name: str = ""
    default_value: str | None = None


class RequestHeader(Spec):
    name: str = ""
    default_value: str | None = None


class Formatter(Spec):
    value: str = ""  # an access-log substitution format, e.g. "%REQ(:PATH)%"


class CustomTag(Spec):
    literal: Literal_ | None = None
    environment: Environment | None = None
    header: RequestHeader | None = None
    formatter: Formatter | None = None


class Tracing(Spec):
    match: TracingSelector | None = None
    providers: list[ProviderRef] | None = None
    random_sampling_percentage: float | None = None
    disable_span_reporting: bool | None = None
    custom_tags: dict[str, CustomTag] | None = None
    use_request_id_for_trace_sampling: bool | None = None
    enable_istio_tags: bool | None = None
    disable_context_propagation: bool | None = None


class MetricSelector(Spec):
    metric: (
        Literal[
            "ALL_METRICS",
            "REQUEST_COUNT",
            "REQUEST_DURATION",
            "REQUEST_SIZE",
            "RESPONSE_SIZE",
            "TCP_OPENED_CONNECTIONS",
            "TCP_CLOSED_CONNECTIONS",
            "TCP_SENT_BYTES",
            "TCP_RECEIVED_BYTES",
            "GRPC_REQUEST_MESSAGES",
            "GRPC_RESPONSE_MESSAGES",
        ]
        | None
    ) = None
    custom_metric: str | None = None
    mode: Mode = "CLIENT_AND_SERVER"


class TagOverride(Spec):
    operation: Literal["UPSERT", "REMOVE"] = "UPSERT"
    value: str | None = None


class MetricsOverrides(Spec):
    match: MetricSelector | None = None
    disabled: bool | None = None
    tag_overrides: dict[str, TagOverride] | None = None


class Metrics(Spec):
    providers: list[ProviderRef] | None = None
    overrides: list[MetricsOverrides] | None = None
    reporting_interval: str | None = None


class AccessLoggingFilter(Spec):
    expression: str = ""


class AccessLogging(Spec):
    match: TracingSelector | None = None
    providers: list[ProviderRef] | None = None
    disabled: bool | None = None
    filter: AccessLoggingFilter | None = None


class TelemetrySpec(Spec):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    tracing: list[Tracing] | None = None
    metrics: list[Metrics] | None = None
    access_logging: list[AccessLogging] | None = None


_TAG_TYPES = ("literal", "environment", "header", "formatter")


def _providers(refs: list[ProviderRef] | None, issues: Issues) -> None:
    for i, ref in enumerate(refs or []):
        if not ref.name:
            issues.error("provider name must not be empty", "providers", i, "name")


def _check_override(o: MetricsOverrides, at: Issues) -> None:
    """The CRD's rules for one metrics override."""
    if o.match is not None:
        if o.match.metric and o.match.custom_metric:
            at.error("metric and customMetric are exclusive", "match")
        if o.match.custom_metric is not None and not o.match.custom_metric:
            at.error("must not be empty", "match", "customMetric")
    for tag, override in (o.tag_overrides or {}).items():
        if not tag:
            at.warn("tag name may not be empty", "tagOverrides")  # Istio warns, not refuses
        tag_at = at.at("tagOverrides", tag or '""')
        if override.operation == "UPSERT" and not override.value:
            tag_at.error("value is required when operation is UPSERT", "value")
        if override.operation == "REMOVE" and override.value is not None:
            tag_at.error("value is not allowed when operation is REMOVE", "value")


def _reporting_interval(value: str) -> str | None:
    """The CRD's rule: a duration of at least 1ms (Istio's code adds none; no whole
    milliseconds needed, unlike the route timeouts)."""
    seconds = checks.duration_seconds(value)
    if seconds is None:
        return f"invalid duration {value!r}"
    if (beyond := checks.duration_beyond_range(value)) is not None:
        return beyond
    if seconds * 1000 < 1 - 1e-9:  # float noise: "1000us" is 1ms
        return f"duration {value!r} must be at least 1ms"
    return None


def validate(spec: TelemetrySpec, meta: Mapping[str, Any], issues: Issues) -> None:
    check_scope(spec.selector, spec.target_ref, spec.target_refs, issues)
    if len(spec.tracing or []) > 1:
        issues.warn("multiple tracing configurations are not supported (as in Istio)", "tracing")
    for i, t in enumerate(spec.tracing or []):
        at = issues.at("tracing", i)
        _providers(t.providers, at)
        if len(t.providers or []) > 1:
            at.warn("multiple tracing providers are not supported (as in Istio)", "providers")
        pct = t.random_sampling_percentage
        if pct is not None and not 0 <= pct <= 100:
            at.error("must be within 0..100", "randomSamplingPercentage")
        for name, tag in (t.custom_tags or {}).items():
            if not name:
                at.error("tag name may not be empty", "customTags")
            set_ = [k for k in _TAG_TYPES if getattr(tag, k) is not None]
            if len(set_) != 1:
                at.error(
                    "exactly one of literal, environment, header or formatter", "customTags", name
                )
            for kind, field, value in (
                ("literal", "value", tag.literal.value if tag.literal else None),
                ("environment", "name", tag.environment.name if tag.environment else None),
                ("header", "name", tag.header.name if tag.header else None),
                ("formatter", "value", tag.formatter.value if tag.formatter else None),
            ):
                if value == "":  # unset or empty: the CRD requires it, at least 1 character
                    at.error("must not be empty", "customTags", name, kind, field)
    for i, m in enumerate(spec.metrics or []):
        at = issues.at("metrics", i)
        _providers(m.providers, at)
        if m.reporting_interval is not None and (
            problem := _reporting_interval(m.reporting_interval)
        ):
            at.error(problem, "reportingInterval")
        for j, o in enumerate(m.overrides or []):
            _check_override(o, at.at("overrides", j))
    for i, a in enumerate(spec.access_logging or []):
        _providers(a.providers, issues.at("accessLogging", i))


KIND = KindInfo(
    kind="Telemetry",
    group=TELEMETRY,
    versions=("v1alpha1", "v1"),
    plural="telemetries",
    spec_model=TelemetrySpec,
    validate=validate,
)
