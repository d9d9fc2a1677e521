"""RequestAuthentication -> Envoy's jwt_authn filter on a workload's inbound listener.

Istio's semantics: a request with an invalid token is refused (401); one
without a token passes, unless authorization requires a request principal
everywhere or a rule says `presence: REQUIRED`, in which case a missing token
is refused too (401). Verified
claims land in dynamic metadata, where RBAC's ``request.auth.*`` matchers
read them. JWKS are inline, or fetched by Pilot from the jwksUri (pilot.jwks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2

from api.attachment import attached
from api.resources import Resource
from api.security.jwt import JwtRule
from api.security.request_authentication import RequestAuthenticationSpec
from pilot.config.index import ConfigIndex
from pilot.jwks import UNFETCHED_JWKS
from pilot.networking.authz import PAYLOAD_KEY

__all__ = ["applicable_authentications", "jwt_config"]


def applicable_authentications(
    config: ConfigIndex, namespace: str, labels: Mapping[str, str], root_namespace: str
) -> list[Resource]:
    return attached(
        config.of("RequestAuthentication"),
        "RequestAuthentication",
        namespace,
        labels,
        root_namespace,
    ).all()


def _provider(rule: JwtRule, fetched: Mapping[str, str]) -> jwt_pb2.JwtProvider:
    jwks = rule.jwks or fetched.get(rule.jwks_uri or "") or UNFETCHED_JWKS
    provider = jwt_pb2.JwtProvider(
        issuer=rule.issuer or "",
        audiences=list(rule.audiences or []),
        forward=bool(rule.forward_original_token),
        payload_in_metadata=PAYLOAD_KEY,
    )
    # As Istio: `scope` and `permission` (and the rule's own list) are split on spaces,
    # so that request.auth.claims[scope] matches one scope, in DENY rules too.
    provider.normalize_payload_in_metadata.space_delimited_claims.extend(
        dict.fromkeys(["scope", "permission", *(rule.space_delimited_claims or [])])
    )
    provider.local_jwks.inline_string = jwks
    for h in rule.from_headers or []:
        if h is None:  # refused by validation: never reaches Pilot
            continue
        provider.from_headers.add(name=h.name, value_prefix=h.prefix or "")
    provider.from_params.extend(rule.from_params or [])
    provider.from_cookies.extend(rule.from_cookies or [])
    if rule.output_payload_to_header:
        provider.forward_payload_header = rule.output_payload_to_header
    for c in rule.output_claim_to_headers or []:
        if c is None:  # refused by validation: never reaches Pilot
            continue
        provider.claim_to_headers.add(header_name=c.header, claim_name=c.claim)
    return provider


def jwt_config(
    authentications: Iterable[Resource], token_required: bool, fetched: Mapping[str, str]
) -> jwt_pb2.JwtAuthentication:
    """The jwt_authn filter's config; without RequestAuthentication it checks nothing."""
    config = jwt_pb2.JwtAuthentication()
    names: list[str] = []
    for ra in authentications:
        for i, rule in enumerate(ra.spec_as(RequestAuthenticationSpec).jwt_rules or []):
            if rule is None:  # refused by validation: never reaches Pilot
                continue
            token_required = token_required or rule.presence == "REQUIRED"
            name = f"{ra.namespace}/{ra.name}/{i}"
            config.providers[name].CopyFrom(_provider(rule, fetched))
            names.append(name)
    if not names:
        return config
    choices = [jwt_pb2.JwtRequirement(provider_name=n) for n in names]
    if not token_required:
        missing_ok = jwt_pb2.JwtRequirement()
        missing_ok.allow_missing.SetInParent()
        choices.append(missing_ok)
    requirement = (
        choices[0]
        if len(choices) == 1
        else jwt_pb2.JwtRequirement(requires_any=jwt_pb2.JwtRequirementOrList(requirements=choices))
    )
    config.rules.add(match=rc.RouteMatch(prefix="/"), requires=requirement)
    return config
