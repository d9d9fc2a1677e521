"""Route-level translation: the consistent-hash cookie and retryIgnorePreviousHosts."""

from __future__ import annotations

from typing import Any

import pytest

from api.networking.policy import LoadBalancerSettings
from api.networking.virtual_service import VirtualServiceSpec
from pilot.networking.http_route import http_routes
from pilot.networking.route import hash_policies

PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"


def cookie_policy(cookie: dict[str, Any]) -> Any:
    lb = LoadBalancerSettings.model_validate({"consistentHash": {"httpCookie": cookie}})
    [policy] = hash_policies(lb)
    return policy.cookie


def test_cookie_with_ttl_path_and_attributes() -> None:
    cookie = cookie_policy(
        {
            "name": "session",
            "path": "/shop",
            "ttl": "1.5s",
            "attributes": [{"name": "SameSite", "value": "Strict"}, {"name": "Secure"}],
        }
    )
    assert (cookie.name, cookie.path) == ("session", "/shop")
    assert (cookie.ttl.seconds, cookie.ttl.nanos) == (1, 500_000_000)
    assert [(a.name, a.value) for a in cookie.attributes] == [
        ("SameSite", "Strict"),
        ("Secure", ""),
    ]


def test_cookie_ttl_zero_is_a_session_cookie_and_no_ttl_generates_none() -> None:
    # Envoy generates the cookie only when a ttl is present; 0s makes it a session cookie.
    assert cookie_policy({"name": "s", "ttl": "0s"}).HasField("ttl")
    unset = cookie_policy({"name": "s", "attributes": [{"name": "HttpOnly"}]})
    assert not unset.HasField("ttl")
    assert [a.name for a in unset.attributes] == ["HttpOnly"]


def predicates(retries: dict[str, Any] | None) -> list[str] | None:
    http: dict[str, Any] = {"route": [{"destination": {"host": "reviews"}}]}
    if retries is not None:
        http["retries"] = retries
    spec = VirtualServiceSpec.model_validate({"hosts": ["reviews"], "http": [http]})
    [route] = http_routes(
        spec,
        lambda host, port, subset: f"outbound|9080|{subset}|{host}",
        port=9080,
        proxy_labels={},
        proxy_namespace="default",
    )
    if not route.route.HasField("retry_policy"):
        return None
    policy = route.route.retry_policy
    assert policy.host_selection_retry_max_attempts == 5
    return [p.name for p in policy.retry_host_predicate]


@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        (None, [PREVIOUS_HOSTS]),  # Istio's default retry policy
        ({"attempts": 3}, [PREVIOUS_HOSTS]),  # unset: Istio's default, true
        ({"attempts": 3, "retryIgnorePreviousHosts": True}, [PREVIOUS_HOSTS]),
        ({"attempts": 3, "retryIgnorePreviousHosts": False}, []),
    ],
)
def test_retry_ignore_previous_hosts(retries: dict[str, Any] | None, expected: list[str]) -> None:
    assert predicates(retries) == expected
