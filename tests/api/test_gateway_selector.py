"""Gateway `spec.selector`: Istio checks nothing there, neither its validator nor its CRD
(unlike workload selectors, it refuses no wildcard and no empty key), so neither do we."""

from __future__ import annotations

import pytest

from tests.api.helpers import check, errors, other_warnings

SERVER = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}


@pytest.mark.parametrize(
    "selector",
    [
        {"istio": "ingressgateway"},
        {"istio": "ingress gateway"},  # not Kubernetes label syntax
        {"app.kubernetes.io/name": "-gw-"},
        {"*": "*"},  # wildcards
        {"istio": "ingress*"},
        {"": "gw"},  # an empty key
        {"istio": ""},
        {"k" * 300: "v" * 300},  # past Kubernetes' lengths
        {},
    ],
)
def test_any_selector_is_accepted_without_a_word(selector: dict[str, str]) -> None:
    result = check("Gateway", {"selector": selector, "servers": [SERVER]})
    assert result.ok, errors(result)
    assert other_warnings(result) == []


def test_a_selector_must_still_map_strings_to_strings() -> None:
    result = check("Gateway", {"selector": {"istio": 1}, "servers": [SERVER]})
    assert errors(result) == ["spec.selector.istio: must be a string, not int"]
