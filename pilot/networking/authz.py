"""AuthorizationPolicy -> Envoy RBAC filters on a workload's inbound listener.

DENY policies run first (one RBAC filter, action DENY), then ALLOW (action
ALLOW: when any ALLOW policy applies, only what one of them allows passes),
AUDIT becomes a LOG filter. Istio's empty-rule semantics: an ALLOW policy
with no rules allows nothing; ``rules: [{}]`` allows everything.

Sources are matched on the caller's mTLS identity (SPIFFE URI SAN), its IP,
and the JWT claims jwt_authn leaves in dynamic metadata; operations on
method, path, port and host. `when` conditions narrow either side.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2

from api.resources import Resource
from pilot.config.index import ConfigIndex
from pilot.networking.protos import pack

__all__ = ["JWT_FILTER", "applicable_policies", "rbac_filters", "requires_token"]

log = logging.getLogger(__name__)
JWT_FILTER = "envoy.filters.http.jwt_authn"
PAYLOAD_KEY = "payload"


def applicable_policies(
    config: ConfigIndex, namespace: str, labels: Mapping[str, str], root_namespace: str
) -> list[Resource]:
    """Mesh-wide policies, then the namespace's, that select this workload."""
    out = []
    for ap in config.of("AuthorizationPolicy"):
        spec: Any = ap.spec
        if spec.target_ref is not None or spec.target_refs:
            continue  # Gateway API attachment: not for sidecars
        if ap.namespace not in (namespace, root_namespace):
            continue
        selector = dict(spec.selector.match_labels or {}) if spec.selector is not None else {}
        if all(labels.get(k) == v for k, v in selector.items()):
            out.append(ap)
    return out


# --- string forms Istio uses: "*", "prefix*", "*suffix", "exact" ---


def _match(value: str, ignore_case: bool = False) -> string_pb2.StringMatcher:
    if value == "*":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".+"))
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=value[:-1], ignore_case=ignore_case)
    if value.startswith("*"):
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=value, ignore_case=ignore_case)


def _spiffe(principal: str) -> string_pb2.StringMatcher:
    """Istio principals are 'td/ns/x/sa/y'; the certificate carries 'spiffe://td/ns/x/sa/y'."""
    if principal == "*":
        return string_pb2.StringMatcher(prefix="spiffe://")
    if principal.startswith("*"):
        return string_pb2.StringMatcher(suffix=principal[1:])
    return _match("spiffe://" + principal)


def _cidr(value: str) -> address_pb2.CidrRange:
    address, _, length = value.partition("/")
    default = 128 if ":" in address else 32
    return address_pb2.CidrRange(
        address_prefix=address, prefix_len={"value": int(length or default)}
    )


def _any_of(items: list[Any], kind: Any) -> Any:
    if len(items) == 1:
        return items[0]
    if kind is rbac_pb2.Principal:
        return rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=items))
    return rbac_pb2.Permission(or_rules=rbac_pb2.Permission.Set(rules=items))


def _not(item: Any) -> Any:
    if isinstance(item, rbac_pb2.Principal):
        return rbac_pb2.Principal(not_id=item)
    return rbac_pb2.Permission(not_rule=item)


def _all_of(items: list[Any], kind: Any) -> Any:
    if not items:
        return kind(any=True)
    if len(items) == 1:
        return items[0]
    if kind is rbac_pb2.Principal:
        return rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=items))
    return rbac_pb2.Permission(and_rules=rbac_pb2.Permission.Set(rules=items))


def _claim(path: list[str], value: str) -> metadata_pb2.MetadataMatcher:
    """A JWT payload field (string, or a list holding the value) left by jwt_authn."""
    matcher = metadata_pb2.MetadataMatcher(
        filter=JWT_FILTER,
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in [PAYLOAD_KEY, *path]],
    )
    string = _match(value)
    matcher.value.or_match.value_matchers.extend(
        [
            value_pb2.ValueMatcher(string_match=string),
            value_pb2.ValueMatcher(
                list_match=value_pb2.ListMatcher(one_of=value_pb2.ValueMatcher(string_match=string))
            ),
        ]
    )
    return matcher


def _request_principal(value: str) -> rbac_pb2.Principal:
    """'iss/sub' (either part may be '*')."""
    if value == "*":
        return rbac_pb2.Principal(metadata=_claim(["iss"], "*"))
    iss, _, sub = value.rpartition("/")
    parts = [rbac_pb2.Principal(metadata=_claim(["iss"], iss or "*"))]
    parts.append(rbac_pb2.Principal(metadata=_claim(["sub"], sub or "*")))
    return _all_of(parts, rbac_pb2.Principal)


def _namespace_regex(namespace: str) -> str:
    ns = "[^/]+" if namespace == "*" else re.escape(namespace)
    return f"spiffe://[^/]+/ns/{ns}/sa/[^/]+"


def _source_fields(src: Any) -> list[rbac_pb2.Principal]:
    P = rbac_pb2.Principal
    fields: list[rbac_pb2.Principal] = []

    def add(values: list[str] | None, make: Any, negate: bool) -> None:
        if values:
            item = _any_of([make(v) for v in values], P)
            fields.append(_not(item) if negate else item)

    for negate, prefix in ((False, ""), (True, "not_")):
        add(
            getattr(src, f"{prefix}principals"),
            lambda v: P(authenticated=P.Authenticated(principal_name=_spiffe(v))),
            negate,
        )
        add(
            getattr(src, f"{prefix}namespaces"),
            lambda v: P(
                authenticated=P.Authenticated(
                    principal_name=string_pb2.StringMatcher(
                        safe_regex=regex_pb2.RegexMatcher(regex=_namespace_regex(v))
                    )
                )
            ),
            negate,
        )
        add(
            getattr(src, f"{prefix}service_accounts"),
            lambda v: P(
                authenticated=P.Authenticated(
                    principal_name=string_pb2.StringMatcher(
                        suffix="/ns/{}/sa/{}".format(*v.split("/", 1)) if "/" in v else f"/sa/{v}"
                    )
                )
            ),
            negate,
        )
        add(getattr(src, f"{prefix}ip_blocks"), lambda v: P(direct_remote_ip=_cidr(v)), negate)
        add(getattr(src, f"{prefix}remote_ip_blocks"), lambda v: P(remote_ip=_cidr(v)), negate)
        add(getattr(src, f"{prefix}request_principals"), _request_principal, negate)
    return fields


def _operation_fields(op: Any) -> list[rbac_pb2.Permission]:
    Perm = rbac_pb2.Permission
    fields: list[rbac_pb2.Permission] = []

    def add(values: list[str] | None, make: Any, negate: bool) -> None:
        if values:
            item = _any_of([make(v) for v in values], Perm)
            fields.append(_not(item) if negate else item)

    for negate, prefix in ((False, ""), (True, "not_")):
        add(
            getattr(op, f"{prefix}methods"),
            lambda v: Perm(header=rc.HeaderMatcher(name=":method", string_match=_match(v))),
            negate,
        )
        add(
            getattr(op, f"{prefix}paths"),
            lambda v: Perm(url_path=path_pb2.PathMatcher(path=_match(v))),
            negate,
        )
        add(getattr(op, f"{prefix}ports"), lambda v: Perm(destination_port=int(v)), negate)
        add(
            getattr(op, f"{prefix}hosts"),
            lambda v: Perm(
                header=rc.HeaderMatcher(name=":authority", string_match=_match(v, ignore_case=True))
            ),
            negate,
        )
    return fields


def _condition(cond: Any) -> tuple[list[rbac_pb2.Principal], list[rbac_pb2.Permission]]:
    """A `when` condition on whichever side Envoy can check it."""
    P, Perm = rbac_pb2.Principal, rbac_pb2.Permission
    key: str = cond.key
    header = re.fullmatch(r"request\.headers\[(.+)\]", key)
    claim = re.fullmatch(r"request\.auth\.claims\[(.+)\]", key)

    def principal(v: str) -> rbac_pb2.Principal | None:
        if key == "source.ip":
            return P(direct_remote_ip=_cidr(v))
        if key == "remote.ip":
            return P(remote_ip=_cidr(v))
        if key == "source.namespace":
            return _source_fields(_Src(namespaces=[v]))[0]
        if key == "source.principal":
            return P(authenticated=P.Authenticated(principal_name=_spiffe(v)))
        if key == "request.auth.principal":
            return _request_principal(v)
        if key == "request.auth.audiences":
            return P(metadata=_claim(["aud"], v))
        if key == "request.auth.presenter":
            return P(metadata=_claim(["azp"], v))
        if claim is not None:
            return P(metadata=_claim(claim.group(1).split("]["), v))
        if header is not None:
            return P(header=rc.HeaderMatcher(name=header.group(1).lower(), string_match=_match(v)))
        return None

    def permission(v: str) -> rbac_pb2.Permission | None:
        if key == "destination.port":
            return Perm(destination_port=int(v))
        if key == "destination.ip":
            return Perm(destination_ip=_cidr(v))
        if key == "connection.sni":
            return Perm(requested_server_name=_match(v))
        return None

    principals: list[rbac_pb2.Principal] = []
    permissions: list[rbac_pb2.Permission] = []
    for values, negate in ((cond.values, False), (cond.not_values, True)):
        if not values:
            continue
        made_p = [p for p in (principal(v) for v in values) if p is not None]
        made_q = [q for q in (permission(v) for v in values) if q is not None]
        if made_p:
            item = _any_of(made_p, P)
            principals.append(_not(item) if negate else item)
        if made_q:
            item = _any_of(made_q, Perm)
            permissions.append(_not(item) if negate else item)
    return principals, permissions


class _Src:
    def __init__(self, **kw: Any) -> None:
        for name in (
            "principals",
            "namespaces",
            "service_accounts",
            "ip_blocks",
            "remote_ip_blocks",
            "request_principals",
        ):
            setattr(self, name, kw.get(name))
            setattr(self, f"not_{name}", None)


def _policy(rule: Any) -> rbac_pb2.Policy:
    froms = [_all_of(_source_fields(f.source), rbac_pb2.Principal) for f in (rule.from_ or [])]
    tos = [_all_of(_operation_fields(t.operation), rbac_pb2.Permission) for t in (rule.to or [])]
    principals = [_any_of(froms, rbac_pb2.Principal)] if froms else []
    permissions = [_any_of(tos, rbac_pb2.Permission)] if tos else []
    for cond in rule.when or []:
        p, q = _condition(cond)
        principals += p
        permissions += q
    return rbac_pb2.Policy(
        permissions=[_all_of(permissions, rbac_pb2.Permission)],
        principals=[_all_of(principals, rbac_pb2.Principal)],
    )


def _filter(action: int, policies: Mapping[str, rbac_pb2.Policy], name: str) -> hcm_pb2.HttpFilter:
    rules = rbac_pb2.RBAC(action=action)
    for key, policy in policies.items():
        rules.policies[key].CopyFrom(policy)
    return hcm_pb2.HttpFilter(name=name, typed_config=pack(rbac_filter_pb2.RBAC(rules=rules)))


def rbac_filters(policies: Iterable[Resource]) -> list[hcm_pb2.HttpFilter]:
    by_action: dict[str, dict[str, rbac_pb2.Policy]] = {"DENY": {}, "ALLOW": {}, "AUDIT": {}}
    for ap in policies:
        spec: Any = ap.spec
        action = spec.action or "ALLOW"
        if action not in by_action:
            log.warning("%s: action %s is not supported; ignored", ap.ref, action)
            continue
        for i, rule in enumerate(spec.rules or []):
            by_action[action][f"ns[{ap.namespace}]-policy[{ap.name}]-rule[{i}]"] = _policy(rule)
        if action == "ALLOW" and not spec.rules:
            # An ALLOW policy without rules allows nothing, but it does switch the
            # workload to "only what is allowed": keep a policy that never matches.
            by_action["ALLOW"][f"ns[{ap.namespace}]-policy[{ap.name}]-none"] = rbac_pb2.Policy(
                permissions=[rbac_pb2.Permission(not_rule=rbac_pb2.Permission(any=True))],
                principals=[rbac_pb2.Principal(not_id=rbac_pb2.Principal(any=True))],
            )
    out = []
    if by_action["AUDIT"]:
        out.append(_filter(rbac_pb2.RBAC.LOG, by_action["AUDIT"], "envoy.filters.http.rbac.audit"))
    if by_action["DENY"]:
        out.append(_filter(rbac_pb2.RBAC.DENY, by_action["DENY"], "envoy.filters.http.rbac.deny"))
    if by_action["ALLOW"]:
        out.append(_filter(rbac_pb2.RBAC.ALLOW, by_action["ALLOW"], "envoy.filters.http.rbac"))
    return out


def requires_token(policies: Iterable[Resource]) -> bool:
    """True when every way in (every ALLOW rule) needs a request principal: then a
    missing token is refused by jwt_authn (401) rather than by RBAC (403)."""
    specs: list[Any] = [ap.spec for ap in policies]
    allow = [spec for spec in specs if (spec.action or "ALLOW") == "ALLOW"]
    rules = [r for spec in allow for r in (spec.rules or [])]
    if not rules:
        return False
    return all(r.from_ and all(f.source.request_principals for f in r.from_) for r in rules)
