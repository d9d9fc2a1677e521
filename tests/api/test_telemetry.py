"""Telemetry: Istio's rules (its CRD's and its validator's), each refused at its field path
with the limit itself accepted, and Istio's warnings."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import check, errors, other_warnings

TRACING: dict[str, Any] = {"providers": [{"name": "zipkin"}]}
METRICS: dict[str, Any] = {"providers": [{"name": "prometheus"}]}


def tracing(**fields: Any) -> dict[str, Any]:
    return {"tracing": [{**TRACING, **fields}]}


def metrics(**fields: Any) -> dict[str, Any]:
    return {"metrics": [{**METRICS, **fields}]}


def override(**fields: Any) -> dict[str, Any]:
    return metrics(overrides=[fields])


def test_the_limits_themselves_are_accepted() -> None:
    for spec in (
        tracing(randomSamplingPercentage=0),
        tracing(randomSamplingPercentage=100),
        tracing(randomSamplingPercentage=0.01),
        metrics(reportingInterval="1ms"),
        metrics(reportingInterval="1000us"),
        metrics(reportingInterval="0.001s"),
        metrics(reportingInterval="1500us"),  # the CRD asks >= 1ms, not whole milliseconds
        metrics(reportingInterval="15s"),
        override(match={"metric": "REQUEST_COUNT"}),
        override(match={"customMetric": "my_metric"}),
        {"selector": {"matchLabels": {"app": "a"}}, **tracing()},
        {"targetRef": {"kind": "Service", "name": "a"}, **tracing()},
    ):
        result = check("Telemetry", spec)
        assert result.ok, (spec, errors(result))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            tracing(randomSamplingPercentage=-0.01),
            "spec.tracing[0].randomSamplingPercentage: must be within 0..100",
        ),
        (
            tracing(randomSamplingPercentage=100.01),
            "spec.tracing[0].randomSamplingPercentage: must be within 0..100",
        ),
        (
            tracing(providers=[{"name": ""}]),
            "spec.tracing[0].providers[0].name: provider name must not be empty",
        ),
        (
            metrics(providers=[{"name": "prometheus"}, {}]),
            "spec.metrics[0].providers[1].name: provider name must not be empty",
        ),
        (
            {"accessLogging": [{"providers": [{"name": ""}]}]},
            "spec.accessLogging[0].providers[0].name: provider name must not be empty",
        ),
        (
            override(match={"metric": "REQUEST_COUNT", "customMetric": "mine"}),
            "spec.metrics[0].overrides[0].match: metric and customMetric are exclusive",
        ),
        (
            metrics(reportingInterval="999us"),
            "spec.metrics[0].reportingInterval: duration '999us' must be at least 1ms",
        ),
        (
            metrics(reportingInterval="0s"),
            "spec.metrics[0].reportingInterval: duration '0s' must be at least 1ms",
        ),
        (
            metrics(reportingInterval="-1s"),
            "spec.metrics[0].reportingInterval: duration '-1s' must be at least 1ms",
        ),
        (
            metrics(reportingInterval="soon"),
            "spec.metrics[0].reportingInterval: invalid duration 'soon'",
        ),
        (
            {
                "selector": {"matchLabels": {"app": "a"}},
                "targetRef": {"kind": "Service", "name": "a"},
            },
            "spec: only one of selector, targetRef or targetRefs may be set, not selector and "
            "targetRef",
        ),
        (
            {"tracing": [{**TRACING, "customTags": {"": {"literal": {"value": "v"}}}}]},
            "spec.tracing[0].customTags: tag name may not be empty",
        ),
    ],
)
def test_rule_is_refused_at_its_field(spec: dict[str, Any], expected: str) -> None:
    result = check("Telemetry", spec)
    assert not result.ok
    assert expected in errors(result), errors(result)


def test_an_empty_tag_override_name_is_warned_about_as_istio_does() -> None:
    result = check("Telemetry", override(tagOverrides={"": {"value": "x"}}))
    assert result.ok, errors(result)
    assert other_warnings(result) == [
        "spec.metrics[0].overrides[0].tagOverrides: tag name may not be empty"
    ]


def test_an_empty_tag_override_name_s_value_rules_name_it_as_empty() -> None:
    result = check("Telemetry", override(tagOverrides={"": {"operation": "UPSERT"}}))
    assert errors(result) == [
        'spec.metrics[0].overrides[0].tagOverrides."".value: '
        "value is required when operation is UPSERT"
    ]


def test_several_tracing_entries_or_providers_are_warned_about_as_istio_does() -> None:
    twice = {"tracing": [TRACING, TRACING]}
    two_providers = tracing(providers=[{"name": "zipkin"}, {"name": "other"}])
    assert other_warnings(check("Telemetry", twice)) == [
        "spec.tracing: multiple tracing configurations are not supported (as in Istio)"
    ]
    assert other_warnings(check("Telemetry", two_providers)) == [
        "spec.tracing[0].providers: multiple tracing providers are not supported (as in Istio)"
    ]
