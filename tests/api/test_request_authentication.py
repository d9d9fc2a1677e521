"""RequestAuthentication: schema and semantic rules, each error at its field path."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from api.resources import check_document
from api.security.jwt import check_jwks, jwks_uri
from tests.api.helpers import check, errors, other_warnings, warnings

KIND = "RequestAuthentication"


def b64(number_or_bytes: int | bytes) -> str:
    raw = (
        number_or_bytes
        if isinstance(number_or_bytes, bytes)
        else number_or_bytes.to_bytes((number_or_bytes.bit_length() + 7) // 8 or 1, "big")
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def rsa_jwk(private: bool = False) -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.private_numbers()
    jwk = {"kty": "RSA", "kid": "r1", "n": b64(numbers.public_numbers.n), "e": b64(65537)}
    return jwk | ({"d": b64(numbers.d)} if private else {})


def ec_jwk() -> dict[str, str]:
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64(numbers.x), "y": b64(numbers.y)}


def okp_jwk() -> dict[str, str]:
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}


def jwks(*keys: Any) -> str:
    return json.dumps({"keys": list(keys)})


def jwt(**fields: Any) -> dict[str, Any]:
    return {"jwtRules": [{"issuer": "https://issuer.example.com", **fields}]}


def test_full_policy_is_accepted_and_round_trips() -> None:
    full_rule = {
        "issuer": "https://issuer.example.com",
        "audiences": ["bookstore.example.com"],
        "jwks": jwks(rsa_jwk(), ec_jwk(), okp_jwk()),
        "fromHeaders": [{"name": "x-jwt-assertion", "prefix": "Bearer "}, {"name": "x-token"}],
        "fromParams": ["access_token"],
        "fromCookies": ["session"],
        "outputPayloadToHeader": "x-jwt-payload",
        "forwardOriginalToken": True,
        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}],
        "timeout": "5s",
        "spaceDelimitedClaims": ["scope", "provider.login.scope"],
        "presence": "REQUIRED",
    }
    spec = {
        "selector": {"matchLabels": {"app": "httpbin"}},
        "jwtRules": [full_rule, {"jwksUri": "http://keys.example.com:8080/jwks.json"}],
    }
    result = check(KIND, spec)
    assert result.ok, errors(result)
    assert other_warnings(result) == []
    assert result.resource is not None
    assert result.resource.spec.dump() == spec


@pytest.mark.parametrize("api_version", ["security.istio.io/v1beta1", "security.istio.io/v1"])
def test_scope_forms_are_accepted(api_version: str) -> None:
    for spec in (
        {},
        {"targetRef": {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}},
        {"targetRefs": [{"kind": "Service", "group": "", "name": "a"}]},
        jwt(presence="OPTIONAL", jwksUri="HTTPS://Issuer.example.com/keys"),
    ):
        result = check(KIND, spec, api_version=api_version)
        assert result.ok, (spec, errors(result))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # scope
        (
            {
                "selector": {"matchLabels": {"a": "b"}},
                "targetRefs": [{"kind": "Service", "name": "a"}],
            },
            "spec: only one of selector, targetRef or targetRefs",
        ),
        ({"targetRef": {"kind": "Service"}}, "spec.targetRef.name: required field is missing"),
        (
            {"targetRefs": [{"kind": "Service", "name": "a", "namespace": "b"}]},
            "spec.targetRefs[0].namespace: cross-namespace",
        ),
        ({"targetRef": {"kind": "Serv_ice", "name": "a"}}, "spec.targetRef.kind: unsupported"),
        ({"selector": {"matchLabels": {"": "b"}}}, "spec.selector.matchLabels: selector has an"),
        # each rule
        ({"jwtRules": [None]}, "spec.jwtRules[0]: a JWT rule must not be null"),
        ({"jwtRules": [{"audiences": ["a"]}]}, "spec.jwtRules[0].issuer: one of issuer or jwksUri"),
        (jwt(audiences=["a", ""]), "spec.jwtRules[0].audiences[1]: must not be an empty string"),
        (jwt(jwksUri="ftp://example.com/keys"), "spec.jwtRules[0].jwksUri: jwksUri 'ftp://"),
        (jwt(jwksUri="example.com/keys"), "spec.jwtRules[0].jwksUri: jwksUri 'example.com/keys'"),
        (jwt(jwksUri="https://example.com:http/k"), "spec.jwtRules[0].jwksUri: jwksUri "),
        (jwt(jwksUri="hTPp\\\blah"), "spec.jwtRules[0].jwksUri: jwksUri contains control"),
        (
            jwt(jwksUri="https://example.com/k", jwks=jwks(ec_jwk())),
            "spec.jwtRules[0].jwks: only one of jwks or jwksUri",
        ),
        (jwt(jwks="{not json"), "spec.jwtRules[0].jwks: jwks is not valid JSON"),
        (jwt(jwks="[]"), "spec.jwtRules[0].jwks: jwks must be a JWK set"),
        (jwt(jwks='{"keys": {}}'), "spec.jwtRules[0].jwks: jwks 'keys' must be a list"),
        (jwt(jwks=jwks("x")), "spec.jwtRules[0].jwks: jwks key 0 must be a JSON object"),
        (jwt(jwks=jwks({"n": "AQ"})), "spec.jwtRules[0].jwks: jwks key 0: 'kty' is required"),
        (jwt(jwks=jwks({"kty": "RSA", "e": "AQAB"})), "spec.jwtRules[0].jwks: jwks key 0: 'n'"),
        (
            jwt(jwks=jwks({"kty": "RSA", "n": "not base64!", "e": "AQAB"})),
            "spec.jwtRules[0].jwks: jwks key 0: 'n' must be a base64url string",
        ),
        (
            jwt(jwks=jwks({"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"})),
            "spec.jwtRules[0].jwks: jwks key 0: ",
        ),
        (
            jwt(jwks=jwks(ec_jwk() | {"crv": "P-192"})),
            "spec.jwtRules[0].jwks: jwks key 0: unsupported EC curve",
        ),
        (jwt(jwks=jwks({"kty": "oct"})), "spec.jwtRules[0].jwks: jwks key 0: 'k' must be"),
        (jwt(jwks=jwks({"kty": "DSA"})), "spec.jwtRules[0].jwks: jwks key 0: unsupported key"),
        (jwt(fromHeaders=[None]), "spec.jwtRules[0].fromHeaders[0]: must not be null"),
        (jwt(fromHeaders=[{"prefix": "b"}]), "spec.jwtRules[0].fromHeaders[0].name: required"),
        (jwt(fromHeaders=[{"name": ""}]), "spec.jwtRules[0].fromHeaders[0].name: required"),
        (jwt(fromParams=[""]), "spec.jwtRules[0].fromParams[0]: must not be an empty string"),
        (jwt(fromCookies=["a", ""]), "spec.jwtRules[0].fromCookies[1]: must not be an empty"),
        (jwt(outputClaimToHeaders=[None]), "spec.jwtRules[0].outputClaimToHeaders[0]: must not"),
        (
            jwt(outputClaimToHeaders=[{"claim": "", "header": "h"}]),
            "spec.jwtRules[0].outputClaimToHeaders[0].claim: required field is missing",
        ),
        (
            jwt(outputClaimToHeaders=[{"claim": "sub"}]),
            "spec.jwtRules[0].outputClaimToHeaders[0].header: required field is missing",
        ),
        (
            jwt(outputClaimToHeaders=[{"claim": "sub", "header": ":authority"}]),
            "spec.jwtRules[0].outputClaimToHeaders[0].header: header ':authority' must match",
        ),
        (jwt(timeout="apple"), "spec.jwtRules[0].timeout: invalid duration 'apple'"),
        (jwt(timeout="0.5ms"), "spec.jwtRules[0].timeout: duration '0.5ms' must be at least 1ms"),
        (jwt(spaceDelimitedClaims=[""]), "spec.jwtRules[0].spaceDelimitedClaims[0]: must not"),
        # schema
        (jwt(presence="MANDATORY"), "spec.jwtRules[0].presence: must be one of"),
        (jwt(forwardOriginalToken="yes"), "spec.jwtRules[0].forwardOriginalToken: must be true"),
        (jwt(timeout=5), "spec.jwtRules[0].timeout: must be a string"),
        (jwt(jwtHeaders=["x"]), "spec.jwtRules[0].jwtHeaders: unknown field"),
        (jwt(jwks={"keys": []}), "spec.jwtRules[0].jwks: must be a string"),
    ],
)
def test_invalid_policies_name_the_field(spec: dict[str, Any], expected: str) -> None:
    result = check(KIND, spec)
    assert not result.ok
    assert any(e.startswith(expected) for e in errors(result)), errors(result)


def test_dry_run_annotation_is_refused() -> None:
    doc = {
        "apiVersion": "security.istio.io/v1",
        "kind": KIND,
        "metadata": {"name": "x", "annotations": {"istio.io/dry-run": "true"}},
        "spec": jwt(),
    }
    result = check_document(doc, "test.yaml:0")
    assert not result.ok
    assert any(
        e.startswith("metadata.annotations: istio.io/dry-run is only supported on Authorization")
        for e in errors(result)
    ), errors(result)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (jwt(jwks=jwks(rsa_jwk(private=True))), "spec.jwtRules[0].jwks: jwks key 0 holds private"),
        (
            jwt(jwks=jwks(ec_jwk(), {"kty": "oct", "k": "c2VjcmV0"})),
            "spec.jwtRules[0].jwks: jwks key 1 is a symmetric key",
        ),
        ({"selector": {}}, "spec.selector: selector has no labels"),
    ],
)
def test_warnings_name_the_field(spec: dict[str, Any], expected: str) -> None:
    result = check(KIND, spec)
    assert result.ok, errors(result)
    assert any(w.startswith(expected) for w in warnings(result)), warnings(result)


def test_a_single_jwk_is_read_as_a_set_of_one() -> None:
    assert check_jwks(json.dumps(ec_jwk())) == ([], [])


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://example.com/.well-known/jwks.json", True),
        ("http://[::1]:8080/keys", True),
        ("https://example.com:99999/keys", True),  # as Istio: Go's url.Parse takes it
        ("grpc://example.com/keys", False),
        ("https://exa mple.com\n/keys", False),
    ],
)
def test_jwks_uris(value: str, ok: bool) -> None:
    assert (jwks_uri(value) is None) is ok


def test_a_jwks_uri_without_a_host_is_accepted_with_a_warning_as_istio_does() -> None:
    result = check(KIND, {"jwtRules": [{"issuer": "i", "jwksUri": "https:///keys"}]})
    assert result.ok, errors(result)
    assert any("has no host" in w for w in warnings(result)), warnings(result)


def test_the_crd_s_proto_field_names_are_accepted_too() -> None:
    """Istio's CRD takes jwks_uri (and VirtualService mirror_percent) beside the camelCase."""
    result = check(KIND, {"jwtRules": [{"issuer": "i", "jwks_uri": "https://a.example/k"}]})
    assert result.ok, errors(result)
    assert result.resource is not None
    assert result.resource.spec.dump() == {
        "jwtRules": [{"issuer": "i", "jwksUri": "https://a.example/k"}]
    }
    vs = {
        "hosts": ["r"],
        "http": [
            {
                "route": [{"destination": {"host": "r"}}],
                "mirror": {"host": "r"},
                "mirror_percent": 5,
            }
        ],
    }
    assert check("VirtualService", vs).ok
