"""jwksUri read as Istio reads it: Go's url.Parse, then Istio's scheme and port checks, and
the CRD's `url(self)` rule (Go's url.ParseRequestURI as well).

GO_VERDICTS was recorded by running Go 1.26's net/url on each string: "parse" (url.Parse
fails), "request" (only url.ParseRequestURI fails), "atoi" (the port overflows Go's int,
so Istio's strconv.Atoi fails) or "ok", with URL.Hostname() and URL.Port().
"""

from __future__ import annotations

import pytest

from api.security import go_url
from api.security.jwt import jwks_uri
from tests.api.helpers import check, errors, warnings

GO_VERDICTS: list[tuple[str, str, str, str]] = [
    ("https://example.com/.well-known/jwks.json", "ok", "example.com", ""),
    ("http://[::1]:8080/keys", "ok", "::1", "8080"),
    ("https://example.com:99999/keys", "ok", "example.com", "99999"),
    ("https://i.example.com:99999/jwks", "ok", "i.example.com", "99999"),
    ("https://ex ample.com/jwks", "parse", "", ""),
    ("https://i.example.com/%zz", "parse", "", ""),
    ("https://i.example.com/%2", "parse", "", ""),
    ("https://i.example.com/a%20b", "ok", "i.example.com", ""),
    ("https://i.example.com/?q=%zz", "ok", "i.example.com", ""),
    ("https://i.example.com/#%zz", "parse", "", ""),
    ("https://i.example.com/#frag", "ok", "i.example.com", ""),
    ("https://i.example.com#frag", "request", "i.example.com", ""),
    ("https://exa%41mple.com/", "parse", "", ""),
    ("https://exa%C3%A9mple.com/", "ok", "exaémple.com", ""),
    ("https://exämple.com/k", "ok", "exämple.com", ""),
    ("https://ex<ample>.com/", "ok", "ex<ample>.com", ""),
    ('https://ex"ample.com/', "ok", 'ex"ample.com', ""),
    ("https://ex\\ample.com/", "parse", "", ""),
    ("https://ex^ample.com/", "parse", "", ""),
    ("https://ex{ample}.com/", "parse", "", ""),
    ("https://ex|ample.com/", "parse", "", ""),
    ("https://ex`ample.com/", "parse", "", ""),
    ("https://a:b@example.com/k", "ok", "example.com", ""),
    ("https://a b@example.com/k", "parse", "", ""),
    ("https://a%zz@example.com/k", "parse", "", ""),
    ("https://ä@example.com/k", "parse", "", ""),
    ("https://u@p@example.com/k", "ok", "example.com", ""),
    ("https://example.com:http/k", "parse", "", ""),
    ("https://example.com:/k", "ok", "example.com", ""),
    ("https://example.com:0/k", "ok", "example.com", "0"),
    ("https://example.com:0443/k", "ok", "example.com", "0443"),
    ("https://example.com:99999999999999999999/k", "atoi", "example.com", "99999999999999999999"),
    ("https://example.com:9223372036854775807/k", "ok", "example.com", "9223372036854775807"),
    ("https://example.com:9223372036854775808/k", "atoi", "example.com", "9223372036854775808"),
    ("https://a:1:2/k", "parse", "", ""),
    ("ftp://a:1:2/k", "ok", "a:1", "2"),
    ("https://[fe80::1%25en0]:8443/k", "ok", "fe80::1%en0", "8443"),
    ("https://[fe80::1%25]/k", "parse", "", ""),
    ("https://[fe80::1%25en%200]/k", "ok", "fe80::1%en 0", ""),
    ("https://[fe80::1%25en%C3%A9]/k", "parse", "", ""),
    ("https://[fe80::1%en0]/k", "parse", "", ""),
    ("https://[1.2.3.4]/k", "parse", "", ""),
    ("https://[::ffff:1.2.3.4]/k", "ok", "::ffff:1.2.3.4", ""),
    ("https://[::1/k", "parse", "", ""),
    ("https://x[::1]/k", "parse", "", ""),
    ("https://[::1]x/k", "parse", "", ""),
    ("https://[zz]/k", "parse", "", ""),
    ("https:///keys", "ok", "", ""),
    ("https:foo", "ok", "", ""),
    ("https:%zz", "ok", "", ""),
    ("HTTPS://Issuer.example.com/keys", "ok", "Issuer.example.com", ""),
    ("grpc://example.com/keys", "ok", "example.com", ""),
    ("example.com/keys", "request", "", ""),
    ("://example.com", "parse", "", ""),
    ("1https://example.com", "parse", "", ""),
    ("*", "ok", "", ""),
    ("https://example.com/k?", "ok", "example.com", ""),
    ("https://example.com/k??", "ok", "example.com", ""),
    ("https://exa_mple.com/k", "ok", "exa_mple.com", ""),
    ("https://exa~mple.com/k", "ok", "exa~mple.com", ""),
    ("https://!$&'()*+,;=.com/k", "ok", "!$&'()*+,;=.com", ""),
    ("https://a%25b.com/k", "ok", "a%b.com", ""),
    ("https://a%2Fb.com/k", "parse", "", ""),
    ("https://café.example.com/k", "ok", "café.example.com", ""),
]


@pytest.mark.parametrize(("value", "verdict", "hostname", "port"), GO_VERDICTS)
def test_urls_are_read_as_go_reads_them(value: str, verdict: str, hostname: str, port: str) -> None:
    if verdict == "parse":
        with pytest.raises(go_url.GoURLError):
            go_url.parse(value)
        return
    url = go_url.parse(value)
    assert (url.hostname, url.port) == (hostname, port)
    if verdict == "request":
        with pytest.raises(go_url.GoURLError):
            go_url.parse_request_uri(value)
    else:
        go_url.parse_request_uri(value)


@pytest.mark.parametrize(("value", "verdict", "hostname", "port"), GO_VERDICTS)
def test_jwks_uri_is_refused_where_go_or_istio_refuses_it(
    value: str, verdict: str, hostname: str, port: str
) -> None:
    http = verdict != "parse" and go_url.parse(value).scheme in ("http", "https")
    assert (jwks_uri(value) is None) is (verdict == "ok" and http), jwks_uri(value)


def rule(uri: str) -> dict[str, object]:
    return {"jwtRules": [{"issuer": "https://i.example.com", "jwksUri": uri}]}


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "https://ex ample.com/jwks",
            "spec.jwtRules[0].jwksUri: jwksUri 'https://ex ample.com/jwks' is not a valid URL: "
            "invalid character ' ' in host name",
        ),
        (
            "https://i.example.com/%zz",
            "spec.jwtRules[0].jwksUri: jwksUri 'https://i.example.com/%zz' is not a valid URL: "
            "invalid URL escape '%zz'",
        ),
        (
            "https://exa%41mple.com/jwks",
            "spec.jwtRules[0].jwksUri: jwksUri 'https://exa%41mple.com/jwks' is not a valid URL: "
            "invalid URL escape '%41'",
        ),
        (
            "https://i.example.com\x7f/jwks",
            "spec.jwtRules[0].jwksUri: jwksUri contains control characters",
        ),
        (
            "https://i.example.com:1:2/jwks",
            "spec.jwtRules[0].jwksUri: jwksUri 'https://i.example.com:1:2/jwks' is not a valid "
            "URL: invalid port ':1:2' after host",
        ),
        (
            "https://i.example.com:99999999999999999999/jwks",
            "spec.jwtRules[0].jwksUri: jwksUri 'https://i.example.com:99999999999999999999/jwks': "
            "port 99999999999999999999 is out of range",
        ),
        (  # the CRD's url() reads the fragment into the host
            "https://i.example.com#keys",
            "spec.jwtRules[0].jwksUri: jwksUri 'https://i.example.com#keys' is not a valid URL: "
            "invalid character '#' in host name",
        ),
        (
            "grpc://i.example.com/jwks",
            "spec.jwtRules[0].jwksUri: jwksUri 'grpc://i.example.com/jwks' must start with "
            "http:// or https://",
        ),
    ],
)
def test_request_authentication_refuses_at_the_jwks_uri(uri: str, expected: str) -> None:
    assert errors(check("RequestAuthentication", rule(uri))) == [expected]


@pytest.mark.parametrize(
    ("uri", "warning"),
    [
        ("https://i.example.com:99999/jwks", "jwksUri port 99999 is not a TCP port"),
        ("https://i.example.com:0/jwks", "jwksUri port 0 is not a TCP port"),
        ("https:///jwks", "jwksUri has no host"),
        ("https:jwks", "jwksUri has no host"),
    ],
)
def test_what_istio_accepts_but_nothing_can_fetch_is_accepted_with_a_warning(
    uri: str, warning: str
) -> None:
    result = check("RequestAuthentication", rule(uri))
    assert result.ok, errors(result)
    assert any(w.startswith(f"spec.jwtRules[0].jwksUri: {warning}") for w in warnings(result)), (
        warnings(result)
    )


@pytest.mark.parametrize(
    "uri",
    [
        "https://i.example.com/jwks",
        "HTTPS://I.example.com:8443/jwks?x=%zz#frag",
        "http://[fe80::1%25eth0]:8080/jwks",
        "https://user:p%40ss@i.example.com/jwks",
        "https://café.example.com/jwks",
    ],
)
def test_well_formed_uris_are_accepted_without_a_word(uri: str) -> None:
    result = check("RequestAuthentication", rule(uri))
    assert result.ok, errors(result)
    assert not [w for w in warnings(result) if "jwksUri" in w], warnings(result)
