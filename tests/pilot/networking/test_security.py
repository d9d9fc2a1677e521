"""Pure translation of the security kinds: PeerAuthentication precedence, RBAC semantics."""

from __future__ import annotations

import re

import pytest
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2

from api.resources import Resource, check_text
from api.security.authz_rules import Match
from pilot.config.index import ConfigIndex
from pilot.networking import authz, mtls


def config(text: str) -> ConfigIndex:
    checked = check_text(text, "t.yaml")
    assert all(c.ok for c in checked), [str(i) for c in checked for i in c.errors]
    return ConfigIndex.build([c.resource for c in checked if c.resource is not None])


def pa(name: str, ns: str, mode: str, selector: str = "", ports: str = "") -> str:
    sel = f"\n  selector: {{matchLabels: {selector}}}" if selector else ""
    port = f"\n  portLevelMtls: {ports}" if ports else ""
    return (
        f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        f"metadata: {{name: {name}, namespace: {ns}}}\n"
        f"spec:{sel}\n  mtls: {{mode: {mode}}}{port}\n---\n"
    )


def test_peer_authentication_precedence() -> None:
    cfg = config(
        pa("mesh", "istio-system", "STRICT")
        + pa("ns", "shop", "PERMISSIVE")
        + pa("wl", "shop", "UNSET", "{app: legacy}", '{"8080": {mode: DISABLE}}')
    )
    mode = mtls.peer_auth_mode
    assert mode(cfg, "other", {}, 80, "istio-system") == "STRICT"  # mesh-wide
    assert mode(cfg, "shop", {}, 80, "istio-system") == "PERMISSIVE"  # namespace wins
    assert (
        mode(cfg, "shop", {"app": "legacy"}, 80, "istio-system") == "PERMISSIVE"
    )  # UNSET inherits
    assert mode(cfg, "shop", {"app": "legacy"}, 8080, "istio-system") == "DISABLE"  # port level
    assert mode(ConfigIndex.build([]), "x", {}, 80, "istio-system") == "PERMISSIVE"  # default


def _rules(configs: dict[str, rbac_filter_pb2.RBAC], name: str) -> rbac_pb2.RBAC:
    assert configs[name].HasField("rules"), f"{name} enforces nothing"
    return configs[name].rules


def policies(text: str) -> list[Resource]:
    return list(config(text).of("AuthorizationPolicy"))


AP = (
    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
    "metadata: {{name: {n}, namespace: default}}\nspec: {s}\n---\n"
)


def test_allow_nothing_and_allow_everything() -> None:
    nothing = authz.rbac_configs(policies(AP.format(n="deny-all", s="{}")))
    rules = _rules(nothing, "envoy.filters.http.rbac")
    assert rules.action == rbac_pb2.RBAC.ALLOW
    (policy,) = rules.policies.values()
    assert policy.permissions[0].not_rule.any  # matches nothing
    everything = authz.rbac_configs(policies(AP.format(n="allow-all", s="{rules: [{}]}")))
    (policy,) = _rules(everything, "envoy.filters.http.rbac").policies.values()
    assert policy.permissions[0].any and policy.principals[0].any


def test_deny_runs_before_allow_and_principals_are_spiffe() -> None:
    text = AP.format(
        n="a", s='{rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/fe"]}}]}]}'
    )
    text += AP.format(n="d", s='{action: DENY, rules: [{to: [{operation: {paths: ["/admin*"]}}]}]}')
    filters = authz.rbac_configs(policies(text))
    # All three filters are always named (so a policy change never rebuilds the
    # listener); the unused audit filter enforces nothing.
    assert list(filters) == [
        "envoy.filters.http.rbac.audit",
        "envoy.filters.http.rbac.deny",
        "envoy.filters.http.rbac",
    ]
    assert not filters["envoy.filters.http.rbac.audit"].HasField("rules")
    (allow,) = _rules(filters, "envoy.filters.http.rbac").policies.values()
    assert (
        allow.principals[0].authenticated.principal_name.exact
        == "spiffe://cluster.local/ns/default/sa/fe"
    )
    (deny,) = _rules(filters, "envoy.filters.http.rbac.deny").policies.values()
    assert deny.permissions[0].url_path.path.prefix == "/admin"


def test_token_required_only_when_every_allow_rule_needs_one() -> None:
    needs = AP.format(n="jwt", s='{rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}')
    assert authz.requires_token(policies(needs))
    either = needs + AP.format(n="open", s="{rules: [{to: [{operation: {methods: [GET]}}]}]}")
    assert not authz.requires_token(policies(either))


def _only_policy(configs: dict[str, rbac_filter_pb2.RBAC], name: str) -> rbac_pb2.Policy:
    (policy,) = _rules(configs, name).policies.values()
    return policy


def test_a_rule_that_cannot_be_translated_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(value: str, entries: tuple[str, ...], target: object) -> object:
        raise authz.Untranslatable("no matcher for this")

    monkeypatch.setitem(authz._BUILDERS, Match.TRUST_DOMAIN, broken)
    rule = '{rules: [{from: [{source: {trustDomains: ["cluster.local"]}}]}]}'
    allow = authz.rbac_configs(policies(AP.format(n="a", s=rule)), 9080)
    policy = _only_policy(allow, "envoy.filters.http.rbac")
    assert policy.permissions[0].not_rule.any and policy.principals[0].not_id.any  # nothing
    deny = authz.rbac_configs(policies(AP.format(n="d", s="{action: DENY, " + rule[1:])), 9080)
    policy = _only_policy(deny, "envoy.filters.http.rbac.deny")
    assert policy.permissions[0].any and policy.principals[0].any  # everything
    assert authz.untranslatable(policies(AP.format(n="a", s=rule))) == [
        "AuthorizationPolicy/default/a rules[0]: no matcher for this"
    ]


def test_every_attribute_kind_has_a_builder() -> None:
    assert set(authz._BUILDERS) == set(Match)


def _principal_regex(rule: str) -> str:
    configs = authz.rbac_configs(policies(AP.format(n="a", s=rule)), 9080)
    principal = _only_policy(configs, "envoy.filters.http.rbac").principals[0]
    return principal.authenticated.principal_name.safe_regex.regex


@pytest.mark.parametrize(
    ("rule", "matches", "refuses"),
    [
        # A bare service account is in the policy's own namespace, as Istio.
        (
            '{serviceAccounts: ["fe"]}',
            "spiffe://cluster.local/ns/default/sa/fe",
            "spiffe://x/ns/other/sa/fe",
        ),
        (
            '{serviceAccounts: ["shop/fe"]}',
            "spiffe://cluster.local/ns/shop/sa/fe",
            "spiffe://x/ns/shop/sa/fe2",
        ),
        ('{namespaces: ["team-*"]}', "spiffe://td/ns/team-a/sa/x", "spiffe://td/ns/other/sa/x"),
        (
            '{trustDomains: ["*.example"]}',
            "spiffe://a.example/ns/x/sa/y",
            "spiffe://example/ns/x/sa/y",
        ),
        ('{trustDomains: ["corp.*"]}', "spiffe://corp.eu/ns/x/sa/y", "spiffe://eu.corp/ns/x/sa/y"),
        (
            '{trustDomains: ["cluster.local"]}',
            "spiffe://cluster.local/ns/x/sa/y",
            "spiffe://cluster.localx/ns/x/sa/y",
        ),
    ],
)
def test_peer_identity_matchers(rule: str, matches: str, refuses: str) -> None:
    regex = _principal_regex("{rules: [{from: [{source: " + rule + "}]}]}")
    assert re.fullmatch(regex, matches)
    assert not re.fullmatch(regex, refuses)


def test_ports_are_the_workloads_app_port() -> None:
    rule = '{rules: [{to: [{operation: {ports: ["9080"]}}]}]}'
    configs = authz.rbac_configs(policies(AP.format(n="a", s=rule)), 9080)
    assert _only_policy(configs, "envoy.filters.http.rbac").permissions[0].any
    configs = authz.rbac_configs(policies(AP.format(n="a", s=rule)), 8080)
    assert _only_policy(configs, "envoy.filters.http.rbac").permissions[0].not_rule.any


def test_dry_run_policies_are_shadow_rules_never_enforced() -> None:
    text = (
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        "metadata: {name: trial, namespace: default, annotations: {istio.io/dry-run: 'true'}}\n"
        'spec: {rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}\n'
    )
    configs = authz.rbac_configs(policies(text), 9080)
    allow = configs["envoy.filters.http.rbac"]
    assert not allow.HasField("rules"), "a dry-run ALLOW must not switch on allow-listing"
    assert list(allow.shadow_rules.policies) == ["ns[default]-policy[trial]-rule[0]"]
    assert allow.shadow_rules_stat_prefix == "istio_dry_run_"
    assert not authz.requires_token(policies(text))  # nor require a token


def test_custom_without_an_authorizer_denies_what_its_rules_select() -> None:
    text = AP.format(
        n="ext",
        s='{action: CUSTOM, provider: {name: opa}, rules: [{to: [{operation: {paths: ["/x*"]}}]}]}',
    )
    configs = authz.rbac_configs(policies(text), 9080)
    deny = _only_policy(configs, "envoy.filters.http.rbac.deny")
    assert deny.permissions[0].url_path.path.prefix == "/x"
    assert not configs["envoy.filters.http.rbac"].HasField("rules")
