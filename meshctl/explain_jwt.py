"""Request authentication as Envoy's jwt_authn decides it, for a token the user
describes by its claims (`--claim`): the signature and expiry are taken as valid,
the issuer, audiences and the rule's requirement are checked, and the payload
jwt_authn would leave in dynamic metadata (where RBAC's claim matchers read it) is
returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshctl.explain_match import Headers, Json, route_matches

__all__ = ["Authentication", "authenticate"]


@dataclass
class Authentication:
    effect: str  # "pass", "off" (nothing checked) or "unauthenticated" (401)
    detail: str = ""
    # (metadata key, payload) jwt_authn leaves for the filters after it
    payload: tuple[str, dict[str, Any]] | None = None


def _verified_by(provider: Json, claims: Mapping[str, Any]) -> str | None:
    """Why the provider rejects a (well-signed) token with these claims, or None."""
    issuer = provider.get("issuer", "")
    if issuer and claims.get("iss", issuer) != issuer:
        return "Jwt issuer is not configured"
    audiences = provider.get("audiences", [])
    if audiences:
        aud = claims.get("aud")
        given = aud if isinstance(aud, list) else [aud] if aud is not None else []
        if not set(given) & set(audiences):
            return "Audiences in Jwt are not allowed"
    return None


def _requirement(
    req: Json, providers: Json, claims: Mapping[str, Any], present: bool
) -> tuple[bool, str, str | None]:
    """(satisfied, why not, the provider that verified the token)."""
    if "providerName" in req or "providerAndAudiences" in req:
        name = req.get("providerName") or req["providerAndAudiences"].get("providerName", "")
        if not present:
            return False, "Jwt is missing", None
        provider = dict(providers.get(name, {}))
        if "providerAndAudiences" in req:
            provider["audiences"] = req["providerAndAudiences"].get("audiences", [])
        why = _verified_by(provider, claims)
        return (why is None), why or "", name if why is None else None
    if "requiresAny" in req:
        whys = []
        for child in req["requiresAny"].get("requirements", []):
            ok, why, verified = _requirement(child, providers, claims, present)
            if ok:
                return True, "", verified
            whys.append(why)
        return False, whys[0] if whys else "no requirement", None
    if "requiresAll" in req:
        verified = None
        for child in req["requiresAll"].get("requirements", []):
            ok, why, by = _requirement(child, providers, claims, present)
            if not ok:
                return False, why, None
            verified = verified or by
        return True, "", verified
    if "allowMissing" in req or "allowMissingOrFailed" in req:
        return _allow_missing(req, providers, claims, present)
    return True, "", None


def _allow_missing(
    req: Json, providers: Json, claims: Mapping[str, Any], present: bool
) -> tuple[bool, str, str | None]:
    """No token passes; a token some provider accepts is verified by it; any other is
    refused (allow_missing) or passes unverified (allow_missing_or_failed)."""
    if present:
        for name, provider in providers.items():
            if _verified_by(provider, claims) is None:
                return True, "", name
    if not present or "allowMissingOrFailed" in req:
        return True, "", None
    return False, "Jwt issuer is not configured", None


def _normalized(claims: Mapping[str, Any], provider: Json) -> dict[str, Any]:
    """The payload jwt_authn leaves in metadata (space-delimited claims split)."""
    payload = dict(claims)
    split = provider.get("normalizePayloadInMetadata", {}).get("spaceDelimitedClaims", [])
    for name in split:
        value = payload.get(name)
        if isinstance(value, str):
            payload[name] = value.split()
    return payload


def authenticate(
    config: Json, headers: Headers, claims: Mapping[str, Any], notes: list[str]
) -> Authentication:
    """What jwt_authn does with a request carrying a valid token with these claims (none:
    no token)."""
    providers = config.get("providers", {})
    out = Authentication("pass")
    if not providers or not config.get("rules"):
        out.effect = "off"
        out.detail = "no RequestAuthentication"
        if claims:
            out.detail += ": the token is not checked and RBAC sees no claims"
        return out
    rule = next((r for r in config["rules"] if route_matches(r.get("match", {}), headers)[0]), None)
    if rule is None:
        out.detail = "no rule applies to this path: the token is not checked"
        return out
    present = bool(claims)
    effective = dict(claims)
    if present and "iss" not in effective:
        issuers = sorted({p.get("issuer", "") for p in providers.values() if p.get("issuer")})
        if issuers:
            effective["iss"] = issuers[0]
            notes.append(f"no iss claim given: taken as {issuers[0]!r}")
    ok, why, verified = _requirement(rule.get("requires", {}), providers, effective, present)
    if not ok:
        out.effect = "unauthenticated"
        out.detail = f"{why} (Envoy answers 401)"
        return out
    if verified is not None:
        provider = providers[verified]
        key = provider.get("payloadInMetadata")
        if key:
            out.payload = (key, _normalized(effective, provider))
        out.detail = f"token verified by {verified} (issuer {provider.get('issuer', '')})"
    else:
        out.detail = "no token, and none is required"
    return out
