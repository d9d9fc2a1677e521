"""JWT rules of a RequestAuthentication, and an offline check of inline JWK sets.

The JWKS check builds each public key with `cryptography`, so a key that would
not load in Envoy (bad base64, a point off its curve, a malformed modulus) is
refused here; nothing is fetched from `jwksUri`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x448, x25519
from pydantic import AliasChoices, Field

from api import checks
from api.issues import Issues
from api.model import Spec
from api.security import go_url

__all__ = [
    "ClaimToHeader",
    "JwtHeader",
    "JwtRule",
    "check_jwks",
    "check_jwt_rule",
    "jwks_uri",
    "jwks_uri_warning",
]


class JwtHeader(Spec):
    name: str | None = None
    prefix: str | None = None


class ClaimToHeader(Spec):
    header: str | None = None
    claim: str | None = None


class JwtRule(Spec):
    issuer: str | None = None
    audiences: list[str] | None = None
    # Istio's CRD also takes the proto name, jwks_uri.
    jwks_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("jwksUri", "jwks_uri"),
        serialization_alias="jwksUri",
    )
    jwks: str | None = None
    from_headers: list[JwtHeader | None] | None = None
    from_params: list[str] | None = None
    from_cookies: list[str] | None = None
    output_payload_to_header: str | None = None
    forward_original_token: bool | None = None
    output_claim_to_headers: list[ClaimToHeader | None] | None = None
    timeout: str | None = None
    space_delimited_claims: list[str] | None = None
    presence: Literal["OPTIONAL", "REQUIRED"] | None = None


_HEADER = re.compile(r"[-_A-Za-z0-9]+")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_EC_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}
_OKP_CURVES: dict[str, Any] = {
    "Ed25519": ed25519.Ed25519PublicKey,
    "Ed448": ed448.Ed448PublicKey,
    "X25519": x25519.X25519PublicKey,
    "X448": x448.X448PublicKey,
}
# Members that only a private key has (RFC 7518 sections 6.2.2, 6.3.2; RFC 8037).
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi")
_GO_MAX_INT = 2**63 - 1  # Istio reads the port with strconv.Atoi


def jwks_uri(value: str) -> str | None:
    """Refused where Istio refuses it: Go's url.Parse fails, the scheme is not http(s), or
    the port overflows Go's int (a port past 65535 passes, and `jwks_uri_warning` says
    so); or where the CRD's rule `url(self)` fails: Go's url.ParseRequestURI too."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "jwksUri contains control characters"
    try:
        url = go_url.parse(value)
    except go_url.GoURLError as err:
        return f"jwksUri {value!r} is not a valid URL: {err}"
    if url.scheme not in ("http", "https"):
        return f"jwksUri {value!r} must start with http:// or https://"
    if url.port and int(url.port) > _GO_MAX_INT:
        return f"jwksUri {value!r}: port {url.port} is out of range"
    try:
        go_url.parse_request_uri(value)
    except go_url.GoURLError as err:
        return f"jwksUri {value!r} is not a valid URL: {err}"
    return None


def jwks_uri_warning(value: str) -> str | None:
    """For a jwksUri that `jwks_uri` accepts but whose keys no fetch can reach."""
    url = go_url.parse(value)
    if not url.hostname:
        return "jwksUri has no host: its keys cannot be fetched, so every token is refused"
    if url.port and not 1 <= int(url.port) <= 65535:
        return (
            f"jwksUri port {url.port} is not a TCP port: its keys cannot be fetched, "
            "so every token is refused"
        )
    return None


def _b64_int(key: dict[str, Any], member: str) -> int:
    return int.from_bytes(_b64(key, member), "big")


def _b64(key: dict[str, Any], member: str) -> bytes:
    text = key.get(member)
    if not isinstance(text, str) or not _BASE64URL.fullmatch(text):
        raise ValueError(f"{member!r} must be a base64url string")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"{member!r} is not valid base64url") from err


def _load_key(key: dict[str, Any]) -> None:
    """Build the public key; raises ValueError when it would not load."""
    kty, crv = key.get("kty"), key.get("crv")
    crv = crv if isinstance(crv, str) else ""
    if kty == "RSA":
        rsa.RSAPublicNumbers(_b64_int(key, "e"), _b64_int(key, "n")).public_key()
    elif kty == "EC":
        curve = _EC_CURVES.get(crv)
        if curve is None:
            raise ValueError(f"unsupported EC curve {crv!r} (P-256, P-384, P-521)")
        x, y = _b64_int(key, "x"), _b64_int(key, "y")
        ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
    elif kty == "OKP":
        loader = _OKP_CURVES.get(crv)
        if loader is None:
            raise ValueError(f"unsupported OKP curve {crv!r}")
        loader.from_public_bytes(_b64(key, "x"))
    elif kty == "oct":
        _b64(key, "k")
    elif kty is None:
        raise ValueError("'kty' is required")
    else:
        raise ValueError(f"unsupported key type {kty!r} (RSA, EC, OKP or oct)")


def check_jwks(text: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) for an inline JWK set (a single JWK is accepted too)."""
    try:
        data = json.loads(text)
    except ValueError as err:
        return [f"jwks is not valid JSON: {err}"], []
    if isinstance(data, dict) and "keys" in data:
        keys = data["keys"]
    elif isinstance(data, dict) and "kty" in data:
        keys = [data]
    else:
        return ["jwks must be a JWK set: a JSON object with a 'keys' list"], []
    if not isinstance(keys, list):
        return ["jwks 'keys' must be a list"], []
    errors: list[str] = []
    if not keys:  # Envoy refuses a key set without a key
        return ["jwks has no keys: a key set needs at least one public key"], []
    warnings: list[str] = []
    for i, key in enumerate(keys):
        if not isinstance(key, dict):
            errors.append(f"jwks key {i} must be a JSON object")
            continue
        try:
            _load_key(key)
        except (ValueError, TypeError, OverflowError) as err:
            errors.append(f"jwks key {i}: {err}")
            continue
        if key.get("kty") == "oct":
            warnings.append(f"jwks key {i} is a symmetric key: its secret is in the config")
        elif any(member in key for member in _PRIVATE_MEMBERS):
            warnings.append(f"jwks key {i} holds private key material; publish only public keys")
    return errors, warnings


def _non_empty(values: list[str] | None, issues: Issues, field: str) -> None:
    for i, value in enumerate(values or []):
        if not value:
            issues.error("must not be an empty string", field, i)


def _check_key_source(rule: JwtRule, issues: Issues) -> None:
    """jwksUri or inline jwks, not both, and each one well formed."""
    if rule.jwks_uri is not None and rule.jwks is not None:
        issues.error("only one of jwks or jwksUri may be set", "jwks")
    if rule.jwks_uri == "":
        issues.error("must not be empty", "jwksUri")  # the CRD's minLength
    elif (message := checks.max_length(rule.jwks_uri, 2048)) is not None:
        issues.error(message, "jwksUri")
    elif rule.jwks_uri and (message := jwks_uri(rule.jwks_uri)) is not None:
        issues.error(message, "jwksUri")
    elif rule.jwks_uri and (message := jwks_uri_warning(rule.jwks_uri)) is not None:
        issues.warn(message, "jwksUri")
    if rule.jwks is not None:
        errors, warnings = check_jwks(rule.jwks)
        for message in errors:
            issues.error(message, "jwks")
        for message in warnings:
            issues.warn(message, "jwks")


def _check_from_headers(headers: list[JwtHeader | None] | None, issues: Issues) -> None:
    for i, header in enumerate(headers or []):
        if header is None:
            issues.error("must not be null", "fromHeaders", i)
        elif not header.name:
            issues.error("required field is missing", "fromHeaders", i, "name")


def _check_claim_to_header(pair: ClaimToHeader | None, at: Issues) -> None:
    """`at` is rooted at ``outputClaimToHeaders[i]``."""
    if pair is None:
        at.error("must not be null")
        return
    if not pair.claim:
        at.error("required field is missing", "claim")
    if not pair.header:
        at.error("required field is missing", "header")
    elif not _HEADER.fullmatch(pair.header):
        at.error(f"header {pair.header!r} must match ^[-_A-Za-z0-9]+$", "header")


def check_jwt_rule(rule: JwtRule | None, issues: Issues) -> None:
    """One JWT rule; `issues` is rooted at ``spec.jwtRules[i]``."""
    if rule is None:
        issues.error("a JWT rule must not be null")
        return
    if rule.issuer is not None and not rule.issuer:
        issues.error("must not be empty", "issuer")  # the CRD's minLength
    elif not rule.issuer and not rule.jwks_uri:
        issues.error("one of issuer or jwksUri must be set", "issuer")
    _non_empty(rule.audiences, issues, "audiences")
    _check_key_source(rule, issues)
    _check_from_headers(rule.from_headers, issues)
    _non_empty(rule.from_params, issues, "fromParams")
    _non_empty(rule.from_cookies, issues, "fromCookies")
    _non_empty(rule.space_delimited_claims, issues, "spaceDelimitedClaims")
    if (message := checks.max_items(rule.space_delimited_claims, 64)) is not None:
        issues.error(message, "spaceDelimitedClaims")
    for i, pair in enumerate(rule.output_claim_to_headers or []):
        _check_claim_to_header(pair, issues.at("outputClaimToHeaders", i))
    if rule.timeout is not None and (message := checks.duration(rule.timeout)) is not None:
        issues.error(message, "timeout")
