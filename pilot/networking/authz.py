"""AuthorizationPolicy -> Envoy RBAC filters on a workload's inbound listener.

DENY policies run first (one RBAC filter, action DENY), then ALLOW (action
ALLOW: when any ALLOW policy applies, only what one of them allows passes),
AUDIT becomes a LOG filter. Istio's empty-rule semantics: an ALLOW policy
with no rules allows nothing; ``rules: [{}]`` allows everything.

Every attribute validation accepts (the table in api.security.authz_rules)
has a builder here, checked at import. Sources are matched on the caller's
mTLS identity (SPIFFE URI SAN), its IP, and the JWT claims jwt_authn leaves in
dynamic metadata; operations on method, path, port and host; `when`
conditions narrow whichever side their attribute belongs to. A rule that
still cannot be translated fails closed (see `_rule_or_fallback`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import address_pb2, extension_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.path.match.uri_template.v3 import uri_template_match_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2

from api.attachment import attached
from api.resources import Resource
from api.security.authorization_policy import DRY_RUN_ANNOTATION, AuthorizationPolicySpec
from api.security.authz_rules import (
    OPERATION_ATTRIBUTES,
    SOURCE_ATTRIBUTES,
    Attribute,
    Match,
    Rule,
    when_attribute,
)
from pilot.config.index import ConfigIndex
from pilot.networking import names
from pilot.networking.protos import pack

__all__ = [
    "HttpOnly",
    "Untranslatable",
    "applicable_policies",
    "dry_run",
    "network_rbac_configs",
    "rbac_configs",
    "requires_token",
    "rule_policies",
    "untranslatable",
]

log = logging.getLogger(__name__)
PAYLOAD_KEY = "payload"


def applicable_policies(
    config: ConfigIndex, namespace: str, labels: Mapping[str, str], root_namespace: str
) -> list[Resource]:
    """Mesh-wide policies, then the namespace's, then the workload's."""
    return attached(
        config.of("AuthorizationPolicy"), "AuthorizationPolicy", namespace, labels, root_namespace
    ).all()


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
        filter=names.JWT_AUTHN_FILTER,
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


class Untranslatable(Exception):
    """A rule part this translator cannot express; the rule then fails closed."""


class HttpOnly(Untranslatable):
    """An ALLOW rule that needs an HTTP attribute, translated for a TCP connection: the
    rule is left out (it matches nothing there), as Istio does."""


@dataclass(frozen=True, slots=True)
class _Target:
    """What a rule is translated for: the policy's namespace and the workload's app port;
    for a TCP connection (`l4`), the action its rules take there ("ALLOW" or "DENY")."""

    namespace: str
    app_port: int | None
    l4: str | None = None


def _star_regex(value: str, part: str = "[^/]*") -> str:
    """An Istio 'prefix*', '*suffix' or '*' form as a regex piece (one path segment)."""
    return part.join(re.escape(p) for p in value.split("*"))


def _port(value: str, target: _Target) -> rbac_pb2.Permission:
    """Istio's ports are the workload's own (iptables keeps them); on a sidecar every
    request on the inbound listener is for the app port, so a port matches all or
    nothing. On a gateway (no app port) they are the listener's port."""
    try:
        port = int(value)
    except ValueError as err:
        raise Untranslatable(f"port {value!r} is not a number") from err
    if target.app_port is None:
        return rbac_pb2.Permission(destination_port=port)
    if port == target.app_port:
        return rbac_pb2.Permission(any=True)
    return rbac_pb2.Permission(not_rule=rbac_pb2.Permission(any=True))


def _path(value: str) -> rbac_pb2.Permission:
    if "{*}" in value or "{**}" in value:
        template = value.replace("{**}", "**").replace("{*}", "*")
        return rbac_pb2.Permission(
            uri_template=extension_pb2.TypedExtensionConfig(
                name="uri-template",
                typed_config=pack(
                    uri_template_match_pb2.UriTemplateMatchConfig(path_template=template)
                ),
            )
        )
    return rbac_pb2.Permission(url_path=path_pb2.PathMatcher(path=_match(value)))


def _peer(regex: str) -> rbac_pb2.Principal:
    P = rbac_pb2.Principal
    return P(
        authenticated=P.Authenticated(
            principal_name=string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=regex))
        )
    )


def _namespace(value: str) -> rbac_pb2.Principal:
    return _peer(f"spiffe://[^/]+/ns/{_star_regex(value)}/sa/[^/]+")


def _service_account(value: str, target: _Target) -> rbac_pb2.Principal:
    """'ns/sa', or 'sa' in the policy's own namespace (as Istio)."""
    namespace, slash, account = value.partition("/")
    if not slash:
        namespace, account = target.namespace, value
    return _peer(f"spiffe://[^/]+/ns/{re.escape(namespace)}/sa/{re.escape(account)}")


def _trust_domain(value: str) -> rbac_pb2.Principal:
    domain = "[^/]+" if value == "*" else _star_regex(value)
    return _peer(f"spiffe://{domain}/.+")


def _metadata(filter_name: str, path: tuple[str, ...], value: str) -> metadata_pb2.MetadataMatcher:
    """Istio's form: '[v]' matches a list holding v, anything else the string."""
    matcher = metadata_pb2.MetadataMatcher(
        filter=filter_name, path=[metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in path]
    )
    if value.startswith("[") and value.endswith("]"):
        matcher.value.list_match.one_of.string_match.CopyFrom(_match(value[1:-1]))
    else:
        matcher.value.string_match.CopyFrom(_match(value))
    return matcher


# One builder per attribute kind of the shared table: (value, map entries, target).
_Build = Callable[[str, tuple[str, ...], _Target], Any]
_P, _Perm = rbac_pb2.Principal, rbac_pb2.Permission
_BUILDERS: dict[Match, _Build] = {
    Match.PRINCIPAL: lambda v, e, t: _P(authenticated=_P.Authenticated(principal_name=_spiffe(v))),
    Match.NAMESPACE: lambda v, e, t: _namespace(v),
    Match.SERVICE_ACCOUNT: lambda v, e, t: _service_account(v, t),
    Match.TRUST_DOMAIN: lambda v, e, t: _trust_domain(v),
    Match.SOURCE_IP: lambda v, e, t: _P(direct_remote_ip=_cidr(v)),
    Match.REMOTE_IP: lambda v, e, t: _P(remote_ip=_cidr(v)),
    Match.REQUEST_PRINCIPAL: lambda v, e, t: _request_principal(v),
    Match.AUDIENCE: lambda v, e, t: _P(metadata=_claim(["aud"], v)),
    Match.PRESENTER: lambda v, e, t: _P(metadata=_claim(["azp"], v)),
    Match.CLAIM: lambda v, e, t: _P(metadata=_claim(list(e), v)),
    Match.HEADER: lambda v, e, t: _P(
        header=rc.HeaderMatcher(name=e[0].lower(), string_match=_match(v))
    ),
    Match.METHOD: lambda v, e, t: _Perm(
        header=rc.HeaderMatcher(name=":method", string_match=_match(v))
    ),
    Match.PATH: lambda v, e, t: _path(v),
    Match.HOST: lambda v, e, t: _Perm(
        header=rc.HeaderMatcher(name=":authority", string_match=_match(v, ignore_case=True))
    ),
    Match.PORT: lambda v, e, t: _port(v, t),
    Match.DESTINATION_IP: lambda v, e, t: _Perm(destination_ip=_cidr(v)),
    Match.SNI: lambda v, e, t: _Perm(requested_server_name=_match(v)),
    Match.FILTER_METADATA: lambda v, e, t: _Perm(metadata=_metadata(e[0], e[1:], v)),
}
if set(_BUILDERS) != set(Match):  # every attribute validation accepts is translated
    raise AssertionError(
        f"no RBAC builder for {sorted(m.name for m in set(Match) - set(_BUILDERS))}"
    )


class _Clause:
    """The AND of a rule's parts, split by side: who calls and what is called."""

    def __init__(self) -> None:
        self.principals: list[rbac_pb2.Principal] = []
        self.permissions: list[rbac_pb2.Permission] = []

    def add(
        self,
        attribute: Attribute,
        values: list[str] | None,
        negate: bool,
        target: _Target,
        entries: tuple[str, ...] = (),
    ) -> None:
        if not values:
            return
        if target.l4 is not None and attribute.match.http_only:
            # Nothing a TCP connection carries: an ALLOW rule needing it allows nothing,
            # a DENY rule denies by its other parts (more, never less).
            if target.l4 == "ALLOW":
                raise HttpOnly(f"{attribute.match.value} is HTTP only")
            return
        kind = rbac_pb2.Principal if attribute.match.on_principal else rbac_pb2.Permission
        try:
            made = [_BUILDERS[attribute.match](v, entries, target) for v in values]
        except (ValueError, IndexError, KeyError) as err:
            raise Untranslatable(f"{attribute.match.value}: {err}") from err
        if not all(isinstance(m, kind) for m in made):
            raise Untranslatable(f"{attribute.match.value} built on the wrong side")
        item = _any_of(made, kind)
        (self.principals if kind is rbac_pb2.Principal else self.permissions).append(
            _not(item) if negate else item
        )


def _fields(model: Any, table: Mapping[str, Attribute], clause: _Clause, target: _Target) -> None:
    for name in type(model).model_fields:
        clause.add(
            table[name.removeprefix("not_")],
            getattr(model, name),
            name.startswith("not_"),
            target,
        )


def _policy(rule: Rule, target: _Target) -> rbac_pb2.Policy:
    """One rule as an RBAC policy; raises Untranslatable for what cannot be expressed."""
    froms, tos = [], []
    for entry in rule.from_ or []:
        if entry is None or entry.source is None:
            raise Untranslatable("a from entry without a source")
        clause = _Clause()
        _fields(entry.source, SOURCE_ATTRIBUTES, clause, target)
        froms.append(_all_of(clause.principals, rbac_pb2.Principal))
    for to in rule.to or []:
        if to is None or to.operation is None:
            raise Untranslatable("a to entry without an operation")
        clause = _Clause()
        _fields(to.operation, OPERATION_ATTRIBUTES, clause, target)
        tos.append(_all_of(clause.permissions, rbac_pb2.Permission))
    when = _Clause()
    for cond in rule.when or []:
        if cond is None or not cond.key:
            raise Untranslatable("a condition without a key")
        found = when_attribute(cond.key)
        if isinstance(found, str):
            raise Untranslatable(found)
        attribute, entries = found
        when.add(attribute, cond.values, False, target, entries)
        when.add(attribute, cond.not_values, True, target, entries)
    principals = [_any_of(froms, rbac_pb2.Principal)] if froms else []
    permissions = [_any_of(tos, rbac_pb2.Permission)] if tos else []
    return rbac_pb2.Policy(
        permissions=[_all_of(permissions + when.permissions, rbac_pb2.Permission)],
        principals=[_all_of(principals + when.principals, rbac_pb2.Principal)],
    )


_NEVER = rbac_pb2.Policy(
    permissions=[rbac_pb2.Permission(not_rule=rbac_pb2.Permission(any=True))],
    principals=[rbac_pb2.Principal(not_id=rbac_pb2.Principal(any=True))],
)
_ALWAYS = rbac_pb2.Policy(
    permissions=[rbac_pb2.Permission(any=True)], principals=[rbac_pb2.Principal(any=True)]
)


def _rule_or_fallback(
    ap: Resource, index: int, rule: Rule | None, target: _Target
) -> rbac_pb2.Policy:
    """Fail closed, as Istio: an ALLOW or AUDIT rule that cannot be translated matches
    nothing; a DENY rule matches everything."""
    try:
        if rule is None:
            raise Untranslatable("a null rule")
        return _policy(rule, target)
    except Untranslatable as err:
        action = _ACTIONS[_spec(ap).action or "ALLOW"]
        log.warning(
            "%s rules[%d]: cannot be translated (%s); the %s rule %s",
            ap.ref,
            index,
            err,
            action,
            "matches every request" if action == "DENY" else "matches nothing",
        )
        return _ALWAYS if action == "DENY" else _NEVER


def untranslatable(policies: Iterable[Resource]) -> list[str]:
    """Rules that fail closed, as 'Kind/ns/name rules[i]: why' (for metrics and logs)."""
    out = []
    for ap in policies:
        target = _Target(ap.namespace, None)
        for i, rule in enumerate(_spec(ap).rules or []):
            try:
                if rule is None:
                    raise Untranslatable("a null rule")
                _policy(rule, target)
            except Untranslatable as err:
                out.append(f"{ap.ref} rules[{i}]: {err}")
    return out


def _spec(ap: Resource) -> AuthorizationPolicySpec:
    spec = ap.spec
    assert isinstance(spec, AuthorizationPolicySpec)
    return spec


def _config(
    action: int, policies: Mapping[str, rbac_pb2.Policy], shadow: Mapping[str, rbac_pb2.Policy]
) -> rbac_filter_pb2.RBAC:
    """An RBAC filter config; without policies it enforces nothing (no `rules`).
    Dry-run policies go to `shadow_rules`: evaluated and counted, never enforced."""
    config = rbac_filter_pb2.RBAC()
    if policies:
        config.rules.action = action
        for key, policy in policies.items():
            config.rules.policies[key].CopyFrom(policy)
    if shadow:
        config.shadow_rules.action = action
        for key, policy in shadow.items():
            config.shadow_rules.policies[key].CopyFrom(policy)
        config.shadow_rules_stat_prefix = "istio_dry_run_"
    return config


def dry_run(ap: Resource) -> bool:
    return ap.annotations.get(DRY_RUN_ANNOTATION, "").lower() in ("1", "t", "true")


# CUSTOM delegates to an external authorizer (pilot/networking/ext_authz.py). A CUSTOM
# policy that cannot be delegated (no such provider, no such service) is enforced here as
# DENY: the requests its rules select are refused (fail closed), never let through.
_ACTIONS = {"ALLOW": "ALLOW", "DENY": "DENY", "AUDIT": "AUDIT", "CUSTOM": "DENY"}


def rule_policies(
    ap: Resource, app_port: int | None, prefix: str = ""
) -> dict[str, rbac_pb2.Policy]:
    """One RBAC policy per rule of `ap`, keyed as Istio names them (fail closed)."""
    target = _Target(ap.namespace, app_port)
    return {
        f"{prefix}ns[{ap.namespace}]-policy[{ap.name}]-rule[{i}]": _rule_or_fallback(
            ap, i, rule, target
        )
        for i, rule in enumerate(_spec(ap).rules or [])
    }


def rbac_configs(
    policies: Iterable[Resource],
    app_port: int | None = None,
    delegated: frozenset[str] = frozenset(),
) -> dict[str, rbac_filter_pb2.RBAC]:
    """The config of each of the three RBAC filters (audit, deny, allow), by filter name,
    for a workload whose app listens on `app_port`. CUSTOM policies whose refs are in
    `delegated` are the external authorizer's; any other CUSTOM policy is a DENY.

    All three are always there, the unused ones enforcing nothing, so that a
    policy change only changes filter configs (ECDS), never the listener.
    """
    enforced: dict[str, dict[str, rbac_pb2.Policy]] = {"DENY": {}, "ALLOW": {}, "AUDIT": {}}
    shadow: dict[str, dict[str, rbac_pb2.Policy]] = {"DENY": {}, "ALLOW": {}, "AUDIT": {}}
    for ap in policies:
        spec = _spec(ap)
        if spec.action == "CUSTOM" and ap.ref in delegated:
            continue
        action = _ACTIONS[spec.action or "ALLOW"]
        into = (shadow if dry_run(ap) else enforced)[action]
        into.update(rule_policies(ap, app_port))
        if action == "ALLOW" and not spec.rules:
            # An ALLOW policy without rules allows nothing, but it does switch the
            # workload to "only what is allowed": keep a policy that never matches.
            into[f"ns[{ap.namespace}]-policy[{ap.name}]-none"] = _NEVER
    return {
        names.RBAC_AUDIT_FILTER: _config(rbac_pb2.RBAC.LOG, enforced["AUDIT"], shadow["AUDIT"]),
        names.RBAC_DENY_FILTER: _config(rbac_pb2.RBAC.DENY, enforced["DENY"], shadow["DENY"]),
        names.RBAC_ALLOW_FILTER: _config(rbac_pb2.RBAC.ALLOW, enforced["ALLOW"], shadow["ALLOW"]),
    }


def requires_token(policies: Iterable[Resource]) -> bool:
    """True when every way in (every ALLOW rule) needs a request principal: then a
    missing token is refused by jwt_authn (401) rather than by RBAC (403)."""
    allow = [
        _spec(ap) for ap in policies if (_spec(ap).action or "ALLOW") == "ALLOW" and not dry_run(ap)
    ]
    rules = [r for spec in allow for r in (spec.rules or [])]
    if not rules:
        return False
    return all(
        r is not None
        and r.from_
        and all(
            f is not None and f.source is not None and f.source.request_principals for f in r.from_
        )
        for r in rules
    )


# --- the same policies for TCP connections (the network RBAC filters) ---

# The stat prefix of the network RBAC filters (Istio's): stats under `tcp.rbac.`.
NETWORK_STAT_PREFIX = "tcp."


def _l4_rule(
    ap: Resource, index: int, rule: Rule | None, target: _Target
) -> rbac_pb2.Policy | None:
    """One rule for a TCP connection, as Istio builds it: HTTP-only attributes drop an
    ALLOW rule (None: it matches nothing) and are ignored in a DENY rule. What still
    cannot be translated fails closed as on HTTP."""
    try:
        if rule is None:
            raise Untranslatable("a null rule")
        return _policy(rule, target)
    except HttpOnly as err:
        log.debug("%s rules[%d]: %s; the ALLOW rule matches no TCP connection", ap.ref, index, err)
        return None
    except Untranslatable as err:
        deny = target.l4 == "DENY"
        log.warning(
            "%s rules[%d]: cannot be translated for TCP (%s); the rule %s",
            ap.ref,
            index,
            err,
            "matches every connection" if deny else "matches nothing",
        )
        return _ALWAYS if deny else None


def _network_config(
    action: int,
    policies: Mapping[str, rbac_pb2.Policy],
    shadow: Mapping[str, rbac_pb2.Policy],
    in_force: tuple[bool, bool],
) -> network_rbac_pb2.RBAC:
    """A network RBAC config. `in_force` says whether an (enforced, dry-run) policy of this
    action applies at all: an ALLOW policy whose every rule was left out still allows only
    what its (no) policies match, that is nothing."""
    config = network_rbac_pb2.RBAC(stat_prefix=NETWORK_STAT_PREFIX)
    if policies or in_force[0]:
        config.rules.action = action
        for key, policy in policies.items():
            config.rules.policies[key].CopyFrom(policy)
    if shadow or in_force[1]:
        config.shadow_rules.action = action
        for key, policy in shadow.items():
            config.shadow_rules.policies[key].CopyFrom(policy)
        config.shadow_rules_stat_prefix = "istio_dry_run_"
    return config


def network_rbac_configs(
    policies: Iterable[Resource], app_port: int | None = None
) -> dict[str, network_rbac_pb2.RBAC]:
    """The config of the two network RBAC filters (deny, then allow), by filter name, for
    TCP connections to a workload whose app listens on `app_port` (None on a gateway: a
    policy's ports are the listener ports).

    As Istio translates for TCP: an ALLOW rule with an HTTP-only attribute (methods,
    paths, hosts, headers, request principals, JWT claims) is left out, so an ALLOW
    policy whose rules all need HTTP allows no connection; a DENY rule ignores those
    attributes and denies by the rest. CUSTOM policies are not delegated on TCP: what
    their rules select is denied the same way (fail closed). AUDIT is not logged on TCP.
    """
    enforced: dict[str, dict[str, rbac_pb2.Policy]] = {"DENY": {}, "ALLOW": {}}
    shadow: dict[str, dict[str, rbac_pb2.Policy]] = {"DENY": {}, "ALLOW": {}}
    allow_in_force = [False, False]  # enforced, dry run
    for ap in policies:
        spec = _spec(ap)
        action = _ACTIONS[spec.action or "ALLOW"]
        if action == "AUDIT":
            continue
        into = (shadow if dry_run(ap) else enforced)[action]
        if action == "ALLOW":
            allow_in_force[1 if dry_run(ap) else 0] = True
        target = _Target(ap.namespace, app_port, l4=action)
        for i, rule in enumerate(spec.rules or []):
            policy = _l4_rule(ap, i, rule, target)
            if policy is not None:
                into[f"ns[{ap.namespace}]-policy[{ap.name}]-rule[{i}]"] = policy
    deny_in_force = (bool(enforced["DENY"]), bool(shadow["DENY"]))
    return {
        names.NETWORK_RBAC_DENY_FILTER: _network_config(
            rbac_pb2.RBAC.DENY, enforced["DENY"], shadow["DENY"], deny_in_force
        ),
        names.NETWORK_RBAC_ALLOW_FILTER: _network_config(
            rbac_pb2.RBAC.ALLOW,
            enforced["ALLOW"],
            shadow["ALLOW"],
            (allow_in_force[0], allow_in_force[1]),
        ),
    }
