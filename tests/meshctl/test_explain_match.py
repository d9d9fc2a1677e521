"""Envoy's matchers as `meshctl explain` evaluates them, case by case."""

from __future__ import annotations

from typing import Any

import pytest

from meshctl.explain_match import (
    Unsupported,
    cidr_contains,
    header_matches,
    match_domain,
    metadata_matches,
    query_params,
    route_matches,
    string_matches,
    uri_template_matches,
    value_matches,
)


@pytest.mark.parametrize(
    ("matcher", "value", "expected"),
    [
        ({"exact": "a"}, "a", True),
        ({"exact": "a"}, "A", False),
        ({"exact": "a", "ignoreCase": True}, "A", True),
        ({"prefix": "/api"}, "/api/x", True),
        ({"prefix": "/api"}, "/ap", False),
        ({"suffix": ".corp"}, "x.corp", True),
        ({"contains": "mid"}, "amidb", True),
        ({"safeRegex": {"regex": "[a-f]+"}}, "abc", True),
        ({"safeRegex": {"regex": "[a-f]+"}}, "abcz", False),  # the whole value
        ({"safeRegex": {"regex": ".+"}}, "", False),
        ({}, "", True),  # an exact match on ""
    ],
)
def test_string_matcher(matcher: dict[str, Any], value: str, expected: bool) -> None:
    assert string_matches(matcher, value) is expected


def test_an_unknown_string_matcher_is_unsupported() -> None:
    with pytest.raises(Unsupported):
        string_matches({"custom": {}}, "x")


H = {"end-user": ["jason"], "x-multi": ["a", "b"]}


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        ({"name": "end-user", "stringMatch": {"exact": "jason"}}, True),
        ({"name": "End-User", "stringMatch": {"exact": "jason"}}, True),  # names fold
        ({"name": "end-user", "stringMatch": {"exact": "jason"}, "invertMatch": True}, False),
        ({"name": "x-multi", "stringMatch": {"exact": "a,b"}}, True),  # values joined
        ({"name": "end-user"}, True),  # no specifier: present
        ({"name": "end-user", "presentMatch": True}, True),
        ({"name": "missing", "presentMatch": True}, False),
        ({"name": "missing", "presentMatch": False}, True),
        ({"name": "missing", "presentMatch": True, "invertMatch": True}, True),
        # Envoy's rule: a missing header matches nothing, even inverted
        ({"name": "missing", "stringMatch": {"exact": "no"}, "invertMatch": True}, False),
        (
            {"name": "missing", "stringMatch": {"exact": ""}, "treatMissingHeaderAsEmpty": True},
            True,
        ),
        ({"name": "end-user", "prefixMatch": "ja"}, True),
        ({"name": "end-user", "suffixMatch": "on"}, True),
        ({"name": "end-user", "containsMatch": "so"}, True),
        ({"name": "end-user", "exactMatch": "jason"}, True),
        ({"name": "end-user", "safeRegexMatch": {"regex": "j.*"}}, True),
    ],
)
def test_header_matcher(matcher: dict[str, Any], expected: bool) -> None:
    assert header_matches(matcher, H) is expected


def test_header_range() -> None:
    m = {"name": "x-n", "rangeMatch": {"start": "1", "end": "10"}}
    assert header_matches(m, {"x-n": ["5"]})
    assert not header_matches(m, {"x-n": ["10"]})
    assert not header_matches(m, {"x-n": ["five"]})


def _req(path: str, **headers: str) -> dict[str, list[str]]:
    out = {":path": [path], ":method": ["GET"], ":authority": ["reviews"]}
    out.update({k.replace("_", "-"): [v] for k, v in headers.items()})
    return out


@pytest.mark.parametrize(
    ("match", "path", "expected"),
    [
        ({"prefix": "/api"}, "/api/v1?x=1", True),
        ({"prefix": "/api"}, "/API", False),
        ({"prefix": "/api", "caseSensitive": False}, "/API/x", True),
        ({"path": "/api"}, "/api?x=1", True),  # exact: the query is not part of it
        ({"path": "/api"}, "/api/", False),
        ({"safeRegex": {"regex": "/v[0-9]+/.*"}}, "/v2/items?q", True),
        ({"safeRegex": {"regex": "/v[0-9]+"}}, "/v2/items", False),
        ({"pathSeparatedPrefix": "/api"}, "/api", True),
        ({"pathSeparatedPrefix": "/api"}, "/api/x", True),
        ({"pathSeparatedPrefix": "/api"}, "/apix", False),
        (
            {"pathMatchPolicy": {"typedConfig": {"pathTemplate": "/users/{id}/orders/**"}}},
            "/users/7/orders/a/b",
            True,
        ),
    ],
)
def test_route_match_paths(match: dict[str, Any], path: str, expected: bool) -> None:
    assert route_matches(match, _req(path))[0] is expected


def test_route_match_headers_and_query_say_why_not() -> None:
    match = {
        "prefix": "/",
        "headers": [{"name": ":method", "stringMatch": {"exact": "POST"}}],
        "queryParameters": [{"name": "debug", "stringMatch": {"exact": "1"}}],
    }
    ok, why = route_matches(match, _req("/?debug=1"))
    assert not ok and "header :method exact 'POST'" in why[-1]
    post = _req("/?debug=1")
    post[":method"] = ["POST"]
    ok, why = route_matches(match, post)
    assert ok and why[-1] == "query parameter debug exact '1'"
    ok, why = route_matches(match, {**post, ":path": ["/?debug=2"]})
    assert not ok and "query parameter debug" in why[-1]
    present = {"prefix": "/", "queryParameters": [{"name": "trace", "presentMatch": True}]}
    assert route_matches(present, _req("/?trace"))[0]
    assert not route_matches(present, _req("/"))[0]


def test_query_params_are_decoded_first_value_wins() -> None:
    assert query_params("/p?a=1&a=2&b=x%20y") == {"a": "1", "b": "x y"}


def test_domains_exact_then_longest_suffix_then_prefix_then_default() -> None:
    vhosts = [
        ("default", ["*"]),
        ("short-suffix", ["*.com"]),
        ("long-suffix", ["*.example.com"]),
        ("prefix", ["api.*"]),
        ("exact", ["api.example.com", "api.example.com:80"]),
    ]
    assert match_domain(vhosts, "API.example.com") == (4, "api.example.com")
    assert match_domain(vhosts, "api.example.com:80") == (4, "api.example.com:80")
    assert match_domain(vhosts, "www.example.com") == (2, "*.example.com")
    assert match_domain(vhosts, "x.com") == (1, "*.com")
    assert match_domain(vhosts, "api.internal") == (3, "api.*")
    assert match_domain(vhosts, "other") == (0, "*")
    # the port is part of the host
    assert match_domain([("r", ["reviews", "reviews:9080"])], "reviews:1234") is None
    # a wildcard matches at least one character
    assert match_domain([("w", ["*.com"])], ".com") is None


def test_uri_templates() -> None:
    assert uri_template_matches("/a/*/c", "/a/b/c")
    assert not uri_template_matches("/a/*/c", "/a/b/x/c")
    assert uri_template_matches("/a/**", "/a/b/x/c?q")
    assert not uri_template_matches("/a/*", "/a/")


@pytest.mark.parametrize(
    ("matcher", "value", "expected"),
    [
        ({"stringMatch": {"exact": "x"}}, "x", True),
        ({"stringMatch": {"exact": "x"}}, ["x"], False),
        ({"listMatch": {"oneOf": {"stringMatch": {"exact": "x"}}}}, ["y", "x"], True),
        ({"listMatch": {"oneOf": {"stringMatch": {"exact": "x"}}}}, "x", False),
        (
            {
                "orMatch": {
                    "valueMatchers": [
                        {"stringMatch": {"exact": "x"}},
                        {"listMatch": {"oneOf": {"stringMatch": {"exact": "x"}}}},
                    ]
                }
            },
            ["x"],
            True,
        ),
        ({"presentMatch": True}, None, False),
        ({"presentMatch": True}, "v", True),
        ({"nullMatch": {}}, None, True),
        ({"boolMatch": True}, True, True),
        ({"doubleMatch": {"exact": 2}}, 2, True),
        ({"doubleMatch": {"range": {"start": 1, "end": 2}}}, 2, False),
    ],
)
def test_value_matcher(matcher: dict[str, Any], value: Any, expected: bool) -> None:
    assert value_matches(matcher, value) is expected


def test_metadata_matcher_follows_the_path() -> None:
    metadata = {"envoy.filters.http.jwt_authn": {"payload": {"iss": "i", "groups": ["a"]}}}
    m = {
        "filter": "envoy.filters.http.jwt_authn",
        "path": [{"key": "payload"}, {"key": "iss"}],
        "value": {"stringMatch": {"exact": "i"}},
    }
    assert metadata_matches(m, metadata)
    assert not metadata_matches({**m, "invert": True}, metadata)
    assert not metadata_matches({**m, "filter": "other"}, metadata)


def test_cidr() -> None:
    assert cidr_contains({"addressPrefix": "10.0.0.0", "prefixLen": 8}, "10.1.2.3")
    assert not cidr_contains({"addressPrefix": "10.0.0.0", "prefixLen": 8}, "11.0.0.1")
    assert cidr_contains({"addressPrefix": "192.0.2.1"}, "192.0.2.1")
    assert not cidr_contains({"addressPrefix": "::1", "prefixLen": 128}, "127.0.0.1")
    assert not cidr_contains({"addressPrefix": "10.0.0.0", "prefixLen": 8}, None)
