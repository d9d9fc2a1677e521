"""Shared building blocks of validation."""

from __future__ import annotations

import pytest

from api import checks


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("1s", True),
        ("100ms", True),
        ("1h30m", True),
        ("0.5s", True),
        ("1ms", True),
        ("0s", False),
        ("1.5ms", False),
        ("abc", False),
        ("10", False),
        ("-1s", False),
    ],
)
def test_duration(text: str, ok: bool) -> None:
    assert (checks.duration(text) is None) is ok


def test_regex_must_compile_as_re2_and_fit_envoys_limit() -> None:
    assert checks.regex("^/api/v[0-9]+/.*") is None
    assert "invalid RE2" in (checks.regex("(?<=a)b") or "")  # lookbehind: not RE2
    assert "too complex for Envoy" in (checks.regex("(a|b|c|d){1,100}x") or "")
    assert checks.regex("") == "regex must not be empty"


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("reviews", True),
        ("*.example.com", True),
        ("*", True),
        ("a..b", False),
        ("-a.com", False),
    ],
)
def test_wildcard_domain(host: str, ok: bool) -> None:
    assert (checks.wildcard_domain(host) is None) is ok


def test_namespace_host_forms() -> None:
    assert checks.namespace_host("./*", sidecar=True) is None
    assert checks.namespace_host("~/*", sidecar=True) is None
    assert checks.namespace_host("istio-system/*.example.com", sidecar=True) is None
    assert checks.namespace_host("reviews", sidecar=True) is not None
    assert checks.namespace_host("*/reviews", sidecar=False) is not None  # short name
