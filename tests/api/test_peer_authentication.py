"""PeerAuthentication: schema and semantic rules, each error at its field path."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import check, errors, warnings


def test_full_policy_is_accepted() -> None:
    result = check(
        "PeerAuthentication",
        {
            "selector": {"matchLabels": {"app": "reviews"}},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {"8080": {"mode": "DISABLE"}, 9090: {"mode": "PERMISSIVE"}},
        },
    )
    assert result.ok, errors(result)
    assert result.resource is not None
    assert result.resource.spec.dump()["portLevelMtls"]["9090"] == {"mode": "PERMISSIVE"}


def test_empty_selector_is_a_warning() -> None:
    result = check("PeerAuthentication", {"selector": {}})
    assert result.ok and warnings(result) == [
        "spec.selector: selector has no labels: it applies to every workload in the namespace"
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"mtls": {"mode": "BLAH"}}, "spec.mtls.mode: must be one of"),
        ({"mtls": {"mode": 1}}, "spec.mtls.mode: must be one of"),
        ({"mtls": {"mod": "STRICT"}}, "spec.mtls.mod: unknown field"),
        (
            {"portLevelMtls": {"80": {"mode": "STRICT"}}},
            "spec.portLevelMtls: port-level mTLS needs a workload selector",
        ),
        (
            {"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {"acd": {"mode": "STRICT"}}},
            "spec.portLevelMtls.acd: port 'acd' must be a number in 1..65535",
        ),
        (
            {"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {"0": {"mode": "STRICT"}}},
            "spec.portLevelMtls.0: port '0'",
        ),
        (
            {"selector": {"matchLabels": {"a": "b"}}, "portLevelMtls": {}},
            "spec.portLevelMtls: must not be empty",
        ),
        (
            {"selector": {"matchLabels": {"a": "*"}}},
            "spec.selector.matchLabels: wildcard is not supported",
        ),
        ({"selector": "app=reviews"}, "spec.selector: must be a mapping"),
    ],
)
def test_invalid_policies_name_the_field(spec: dict[str, Any], expected: str) -> None:
    result = check("PeerAuthentication", spec)
    assert not result.ok
    assert any(e.startswith(expected) for e in errors(result)), errors(result)


def test_wrong_api_version_and_unknown_top_level_field() -> None:
    result = check("PeerAuthentication", {}, api_version="networking.istio.io/v1", extra_field=1)
    assert (
        "apiVersion: PeerAuthentication is served as security.istio.io/v1beta1, "
        "security.istio.io/v1, not 'networking.istio.io/v1'" in errors(result)
    )
    assert "extra_field: unknown field" in errors(result)
