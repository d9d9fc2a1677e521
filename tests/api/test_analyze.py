"""Cross-resource analysis: the warnings `istioctl analyze` would give."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from api.analyze import analyze, fqdn
from api.resources import Resource
from tests.api.helpers import check


def res(kind: str, name: str, spec: dict[str, Any], namespace: str = "default") -> Resource:
    result = check(kind, spec, name=name, namespace=namespace)
    assert result.resource is not None and result.ok, result.issues
    return result.resource


VS = {
    "hosts": ["reviews"],
    "http": [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}],
}
DR = {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
SERVICES = {"reviews.default.svc.cluster.local"}


def messages(found: dict[str, list[Any]], ref: str) -> list[str]:
    return [str(i) for i in found.get(ref, [])]


def test_fqdn_resolution() -> None:
    assert fqdn("reviews", "shop") == "reviews.shop.svc.cluster.local"
    assert fqdn("reviews.prod.svc.cluster.local", "shop") == "reviews.prod.svc.cluster.local"
    assert fqdn("reviews.prod", "shop") == "reviews.prod"  # dots mean "as written"
    assert fqdn("api.example.com", "shop") == "api.example.com"


def test_subset_no_rule_defines_is_a_warning() -> None:
    found = analyze([res("VirtualService", "r", VS), res("DestinationRule", "r", DR)], SERVICES)
    assert messages(found, "VirtualService/default/r") == [
        "spec.http[0].route[0].destination.subset: subset 'v2' is not defined by any "
        "DestinationRule for reviews.default.svc.cluster.local"
    ]


def test_unknown_host_is_a_warning_unless_a_service_entry_declares_it() -> None:
    vs = {
        "hosts": ["api.example.com"],
        "http": [{"route": [{"destination": {"host": "api.example.com"}}]}],
    }
    found = analyze([res("VirtualService", "ext", vs)], SERVICES)
    assert len(messages(found, "VirtualService/default/ext")) == 2
    se = {
        "hosts": ["api.example.com"],
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        "resolution": "DNS",
    }
    found = analyze([res("VirtualService", "ext", vs), res("ServiceEntry", "ext", se)], SERVICES)
    assert messages(found, "VirtualService/default/ext") == []


def test_two_virtual_services_for_one_host() -> None:
    plain = {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}
    found = analyze(
        [res("VirtualService", "a", plain), res("VirtualService", "b", plain)], SERVICES
    )
    assert any(
        "also routed by VirtualService/default/b" in m
        for m in messages(found, "VirtualService/default/a")
    )
    assert any(
        "also routed by VirtualService/default/a" in m
        for m in messages(found, "VirtualService/default/b")
    )


def test_clean_config_has_no_warnings() -> None:
    vs = {
        "hosts": ["reviews"],
        "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}],
    }
    assert (
        analyze([res("VirtualService", "r", vs), res("DestinationRule", "r", DR)], SERVICES) == {}
    )


def test_a_service_entry_host_claimed_before_is_a_warning_on_the_younger() -> None:
    se = {
        "hosts": ["api.example.com", "reviews.default.svc.cluster.local"],
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        "resolution": "DNS",
    }
    older = dataclasses.replace(res("ServiceEntry", "api", se, namespace="team-b"), created=5)
    younger = res("ServiceEntry", "api", se, namespace="team-a")  # not stored yet: newest
    found = analyze([younger, older], SERVICES)
    assert messages(found, "ServiceEntry/team-a/api") == [
        "spec.hosts[0]: host api.example.com is already declared by ServiceEntry/team-b/api: "
        "Pilot uses the oldest declaration and leaves this one out for that host",
        "spec.hosts[1]: host reviews.default.svc.cluster.local is already declared by the "
        "catalog service reviews.default.svc.cluster.local: Pilot uses the oldest declaration "
        "and leaves this one out for that host",
    ]
    assert messages(found, "ServiceEntry/team-b/api") == [
        "spec.hosts[1]: host reviews.default.svc.cluster.local is already declared by the "
        "catalog service reviews.default.svc.cluster.local: Pilot uses the oldest declaration "
        "and leaves this one out for that host",
    ]


def test_fields_accepted_but_not_applied_are_named_at_their_path() -> None:
    vs = {
        "hosts": ["reviews"],
        "exportTo": ["."],
        "tcp": [
            {
                "match": [{"sourceSubnet": "10.0.0.0/8"}],
                "route": [{"destination": {"host": "reviews"}}],
            }
        ],
        "http": [{"route": [{"destination": {"host": "reviews"}}]}],
    }
    found = check("VirtualService", vs)
    assert [w for w in found.warnings if "not applied" in w.message] != []
    paths = {w.path for w in found.warnings if "not applied" in w.message}
    assert paths == {"spec.tcp[0].match[0].sourceSubnet"}


def test_a_key_written_twice_is_refused_with_its_line() -> None:
    from api.resources import check_text

    text = (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: a, namespace: default}\n"
        "spec:\n  mtls: {mode: STRICT}\n  mtls: {mode: DISABLE}\n"
    )
    (checked,) = check_text(text, "t.yaml")
    assert [str(i) for i in checked.errors] == ["line 6: key 'mtls' appears twice"]
    kinds_twice = "kind: PeerAuthentication\nkind: Sidecar\n"
    (checked,) = check_text(kinds_twice, "t.yaml")
    assert [str(i) for i in checked.errors] == ["line 2: key 'kind' appears twice"]


def test_istio_kinds_refused_on_purpose_say_so() -> None:
    from api.resources import check_document

    doc = {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": "x", "namespace": "default"},
        "spec": {},
    }
    (error,) = check_document(doc, "t").errors
    assert str(error).startswith("kind: EnvoyFilter is an Istio kind this mesh does not support")


@pytest.mark.parametrize(
    ("kind", "spec", "expected"),
    [
        (
            "ServiceEntry",
            {
                "hosts": ["a.example.com"],
                "ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 0}],
                "resolution": "DNS",
            },
            "spec.ports[0].targetPort: port number 0 must be in the range 1..65535",
        ),
        (
            "RequestAuthentication",
            {"jwtRules": [{"issuer": "", "jwksUri": "https://a.example/jwks"}]},
            "spec.jwtRules[0].issuer: must not be empty",
        ),
        (
            "Telemetry",
            {"metrics": [{"overrides": [{"match": {"customMetric": ""}}]}]},
            "spec.metrics[0].overrides[0].match.customMetric: must not be empty",
        ),
        (
            "Telemetry",
            {"metrics": [{"overrides": [{"tagOverrides": {"x": {"operation": "UPSERT"}}}]}]},
            "spec.metrics[0].overrides[0].tagOverrides.x.value: value is required",
        ),
        (
            "Telemetry",
            {
                "metrics": [
                    {"overrides": [{"tagOverrides": {"x": {"operation": "REMOVE", "value": "v"}}}]}
                ]
            },
            "spec.metrics[0].overrides[0].tagOverrides.x.value: value is not allowed",
        ),
    ],
)
def test_crd_schema_rules(kind: str, spec: dict[str, Any], expected: str) -> None:
    result = check(kind, spec, name="x", namespace="default")
    assert any(str(e).startswith(expected) for e in result.errors), [str(e) for e in result.errors]


@pytest.mark.parametrize(
    ("kind", "spec", "warning"),
    [
        (
            "VirtualService",
            {
                "hosts": ["r"],
                "http": [
                    {
                        "fault": {"delay": {"fixedDelay": "1s", "percent": 150}},
                        "route": [{"destination": {"host": "r"}}],
                    }
                ],
            },
            "spec.http[0].fault.delay.percent: percent 150",
        ),
        (
            "DestinationRule",
            {"host": "r", "trafficPolicy": {"outlierDetection": {"consecutiveErrors": -1}}},
            "spec.trafficPolicy.outlierDetection.consecutiveErrors: should not be negative",
        ),
    ],
)
def test_what_istio_only_warns_about_is_accepted(
    kind: str, spec: dict[str, Any], warning: str
) -> None:
    result = check(kind, spec, name="x", namespace="default")
    assert result.ok, [str(e) for e in result.errors]
    assert any(str(w).startswith(warning) for w in result.warnings)


def test_selector_labels_istio_allows_are_accepted() -> None:
    spec = {"selector": {"matchLabels": {"team name": "blue green"}}, "rules": [{}]}
    assert check("AuthorizationPolicy", spec, name="x", namespace="default").ok
    wild = {"selector": {"matchLabels": {"app": "web*"}}, "rules": [{}]}
    assert not check("AuthorizationPolicy", wild, name="x", namespace="default").ok
