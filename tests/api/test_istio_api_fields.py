"""Fields of the pinned Istio API (1.31) that Pilot does not translate yet: accepted with a
"not applied" warning at their path, or, for TLS verification settings, refused."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import check, errors, other_warnings, warnings

HOST = "ratings.prod.svc.cluster.local"
NOT_APPLIED = "accepted but not applied by this mesh"
OUTLIER = {"consecutive5xxErrors": 5, "interval": "30s", "baseEjectionTime": "30s"}


def not_applied(found: list[str]) -> list[str]:
    return [w.split(":", 1)[0] for w in found if NOT_APPLIED in w]


# --- DestinationRule: loadBalancer.zoneAwareLbSetting --------------------------------------------


def test_zone_aware_lb_setting_is_accepted_and_not_applied_at_every_level() -> None:
    zone_aware = {
        "enabled": True,
        "failover": [{"from": "us-east", "to": "eu-west"}],
        "failoverPriority": ["topology.istio.io/network", "version=v1"],
        "minClusterSize": 3,
    }
    lb = {"simple": "ROUND_ROBIN", "zoneAwareLbSetting": zone_aware}
    policy = {
        "loadBalancer": lb,
        "outlierDetection": OUTLIER,
        "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": lb}],
    }
    spec = {
        "host": HOST,
        "trafficPolicy": policy,
        "subsets": [{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": policy}],
    }
    result = check("DestinationRule", spec)
    assert result.ok, errors(result)
    assert result.resource is not None
    assert result.resource.spec.dump() == spec
    assert other_warnings(result) == [
        # Istio warns too: failover needs outlier detection (set on the rule, not the port).
        "spec.trafficPolicy.portLevelSettings[0].loadBalancer.zoneAwareLbSetting: "
        "failover needs an outlierDetection policy to take effect",
        "spec.subsets[0].trafficPolicy.portLevelSettings[0].loadBalancer.zoneAwareLbSetting: "
        "failover needs an outlierDetection policy to take effect",
    ]
    assert not_applied(warnings(result)) == [
        "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting",
        "spec.subsets[0].trafficPolicy.loadBalancer.zoneAwareLbSetting",
        "spec.trafficPolicy.portLevelSettings[0].loadBalancer.zoneAwareLbSetting",
        "spec.subsets[0].trafficPolicy.portLevelSettings[0].loadBalancer.zoneAwareLbSetting",
    ]


@pytest.mark.parametrize(
    ("zone_aware", "expected"),
    [
        (
            {"minClusterSize": 0},
            "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.minClusterSize: must be >= 1",
        ),
        (
            {"failoverPriority": ["topology.kubernetes.io/zone"]},
            "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.failoverPriority[0]: "
            "zone-aware failoverPriority cannot use the topology label",
        ),
        (
            {"failover": [{"from": "us-east", "to": "us-east"}]},
            "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.failover[0]: "
            "failover must name different regions",
        ),
        (
            {"failover": [{"from": "us-east/zone1", "to": "eu-west"}]},
            "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.failover[0]: "
            "failover takes regions only",
        ),
        (
            {"failover": [{"from": "us-*", "to": "eu-west"}]},
            "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.failover[0]: "
            "failover regions cannot contain",
        ),
    ],
)
def test_zone_aware_lb_setting_rules(zone_aware: dict[str, Any], expected: str) -> None:
    policy = {"loadBalancer": {"zoneAwareLbSetting": zone_aware}, "outlierDetection": OUTLIER}
    result = check("DestinationRule", {"host": HOST, "trafficPolicy": policy})
    assert any(e.startswith(expected) for e in errors(result)), errors(result)


def test_zone_aware_and_locality_lb_settings_are_exclusive() -> None:
    lb = {"localityLbSetting": {"enabled": True}, "zoneAwareLbSetting": {"enabled": True}}
    result = check("DestinationRule", {"host": HOST, "trafficPolicy": {"loadBalancer": lb}})
    assert errors(result) == [
        "spec.trafficPolicy.loadBalancer: "
        "only one of localityLbSetting or zoneAwareLbSetting may be set"
    ]


# --- DestinationRule: outlierDetection.outlierDetectionHttpErrorCodes ----------------------------


def test_outlier_detection_http_error_codes_are_accepted_and_not_applied() -> None:
    outlier = {**OUTLIER, "outlierDetectionHttpErrorCodes": [429, 503]}
    spec = {
        "host": HOST,
        "trafficPolicy": {
            "outlierDetection": outlier,
            "portLevelSettings": [{"port": {"number": 9080}, "outlierDetection": outlier}],
        },
    }
    result = check("DestinationRule", spec)
    assert result.ok, errors(result)
    assert other_warnings(result) == []
    assert not_applied(warnings(result)) == [
        "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes",
        "spec.trafficPolicy.portLevelSettings[0].outlierDetection.outlierDetectionHttpErrorCodes",
    ]
    assert "only 5xx responses count as errors" in warnings(result)[0]


def test_outlier_detection_http_error_codes_are_status_codes() -> None:
    outlier = {"outlierDetectionHttpErrorCodes": [503, 600]}
    result = check(
        "DestinationRule", {"host": HOST, "trafficPolicy": {"outlierDetection": outlier}}
    )
    assert errors(result) == [
        "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[1]: "
        "HTTP status 600 must be in 100..599"
    ]


# --- DestinationRule: retryBudget.budgetInterval -------------------------------------------------


def test_retry_budget_interval_is_accepted_and_not_applied() -> None:
    budget = {"percent": 20, "budgetInterval": "0ms"}
    spec = {
        "host": HOST,
        "trafficPolicy": {"retryBudget": budget},
        "subsets": [{"name": "v1", "trafficPolicy": {"retryBudget": budget}}],
    }
    result = check("DestinationRule", spec)
    assert result.ok, errors(result)
    assert other_warnings(result) == []
    # The whole retryBudget is named, at every level the rule has one.
    assert not_applied(warnings(result)) == [
        "spec.trafficPolicy.retryBudget",
        "spec.subsets[0].trafficPolicy.retryBudget",
    ]


def test_retry_budget_interval_must_be_a_duration() -> None:
    policy = {"retryBudget": {"budgetInterval": "soon"}}
    result = check("DestinationRule", {"host": HOST, "trafficPolicy": policy})
    assert errors(result) == [
        "spec.trafficPolicy.retryBudget.budgetInterval: invalid duration 'soon'"
    ]


# --- Gateway and Sidecar server TLS: insecureSkipVerify (refused), caCertCredentialName ----------

GATEWAY_TLS = {"mode": "MUTUAL", "credentialName": "api-cert"}
SIDECAR_TLS = {
    "mode": "MUTUAL",
    "serverCertificate": "/etc/certs/cert.pem",
    "privateKey": "/etc/certs/key.pem",
    "caCertificates": "/etc/certs/ca.pem",
}


def gateway(tls: dict[str, Any]) -> dict[str, Any]:
    port = {"number": 443, "name": "https", "protocol": "HTTPS"}
    return {"servers": [{"port": port, "hosts": ["api.example.com"], "tls": tls}]}


def sidecar(tls: dict[str, Any]) -> dict[str, Any]:
    port = {"number": 8443, "name": "https", "protocol": "HTTPS"}
    return {"ingress": [{"port": port, "defaultEndpoint": "127.0.0.1:8080", "tls": tls}]}


@pytest.mark.parametrize(
    ("kind", "spec", "at"),
    [
        ("Gateway", gateway, "spec.servers[0].tls"),
        ("Sidecar", sidecar, "spec.ingress[0].tls"),
    ],
)
@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [("insecureSkipVerify", True, "a client certificate that fails verification")],
)
def test_server_tls_verification_settings_are_refused(
    kind: str, spec: Any, at: str, field: str, value: object, reason: str
) -> None:
    base = GATEWAY_TLS if kind == "Gateway" else SIDECAR_TLS
    accepted = check(kind, spec(base))
    assert accepted.ok, errors(accepted)
    result = check(kind, spec({**base, field: value}))
    (error,) = errors(result)
    assert error.startswith(f"{at}.{field}: {field} is not supported by this mesh: {reason}")


def test_a_ca_from_a_separate_credential_is_accepted() -> None:
    """The gateway verifies clients against `<name>-cacert` from Citadel
    (pilot/networking/gateway_tls.py)."""
    result = check("Gateway", gateway({**GATEWAY_TLS, "caCertCredentialName": "partners"}))
    assert result.ok, errors(result)
    assert not_applied(warnings(result)) == []


def test_insecure_skip_verify_false_is_istios_default_and_accepted() -> None:
    result = check("Gateway", gateway({**GATEWAY_TLS, "insecureSkipVerify": False}))
    assert result.ok, errors(result)
    assert result.resource is not None
    assert result.resource.spec.dump()["servers"][0]["tls"]["insecureSkipVerify"] is False


# --- Telemetry: tracing[].customTags.<tag>.formatter, tracing[].disableContextPropagation --------


def test_custom_tag_formatter_is_accepted_and_not_applied() -> None:
    tags = {"path": {"formatter": {"value": "%REQ(:PATH)%"}}, "env": {"literal": {"value": "x"}}}
    spec = {"tracing": [{"providers": [{"name": "zipkin"}], "customTags": tags}]}
    result = check("Telemetry", spec)
    assert result.ok, errors(result)
    assert result.resource is not None
    assert result.resource.spec.dump() == spec
    assert other_warnings(result) == []
    assert not_applied(warnings(result)) == ["spec.tracing[0].customTags"]


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ({"formatter": {"value": ""}}, "spec.tracing[0].customTags.t.formatter.value: must not be"),
        ({"formatter": {"value": "%START_TIME%"}, "literal": {"value": "x"}}, "exactly one of"),
        ({"formatter": {"text": "x"}}, "spec.tracing[0].customTags.t.formatter.text: unknown"),
    ],
)
def test_custom_tag_formatter_rules(tag: dict[str, Any], expected: str) -> None:
    result = check("Telemetry", {"tracing": [{"customTags": {"t": tag}}]})
    assert any(expected in e for e in errors(result)), errors(result)


def test_disable_context_propagation_is_accepted_and_not_applied() -> None:
    spec = {"tracing": [{"disableContextPropagation": True}]}
    result = check("Telemetry", spec)
    assert result.ok, errors(result)
    assert other_warnings(result) == []
    assert warnings(result) == [
        "spec.tracing[0].disableContextPropagation: accepted but not applied by this mesh: "
        "trace context headers are still forwarded"
    ]
