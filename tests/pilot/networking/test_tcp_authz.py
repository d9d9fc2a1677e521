"""AuthorizationPolicy for TCP connections: the network RBAC filters, failing closed.

As Istio translates for TCP: an ALLOW rule that needs an HTTP attribute is left out (it
matches no connection), a DENY rule ignores HTTP attributes (it denies more, never
less), CUSTOM is not delegated on TCP (what it selects is denied), AUDIT is not logged.
"""

from __future__ import annotations

from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from api.resources import Resource, check_text
from pilot.config.index import ConfigIndex
from pilot.networking import authz, names

AP = (
    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
    "metadata: {{name: {n}, namespace: default{a}}}\nspec: {s}\n---\n"
)
DRY_RUN = ", annotations: {istio.io/dry-run: 'true'}"


def policies(*docs: tuple[str, str] | tuple[str, str, str]) -> list[Resource]:
    text = "".join(AP.format(n=d[0], s=d[1], a=d[2] if len(d) > 2 else "") for d in docs)
    checked = check_text(text, "t.yaml")
    assert all(c.ok for c in checked), [str(i) for c in checked for i in c.errors]
    index = ConfigIndex.build([c.resource for c in checked if c.resource is not None])
    return list(index.of("AuthorizationPolicy"))


def configs(
    *docs: tuple[str, str] | tuple[str, str, str], app_port: int | None = 9080
) -> tuple[network_rbac_pb2.RBAC, network_rbac_pb2.RBAC]:
    out = authz.network_rbac_configs(policies(*docs), app_port)
    assert set(out) == set(names.NETWORK_AUTH_FILTERS)
    for config in out.values():
        assert config.stat_prefix  # Envoy requires one
    return out[names.NETWORK_RBAC_DENY_FILTER], out[names.NETWORK_RBAC_ALLOW_FILTER]


PRINCIPAL = '{source: {principals: ["cluster.local/ns/default/sa/client"]}}'


def test_no_policy_enforces_nothing() -> None:
    deny, allow = configs()
    assert not deny.HasField("rules") and not allow.HasField("rules")


def test_an_allow_rule_with_only_http_attributes_allows_no_connection() -> None:
    deny, allow = configs(("get-only", "{rules: [{to: [{operation: {methods: [GET]}}]}]}"))
    assert not deny.HasField("rules")
    # An ALLOW filter in force with no policy: every connection is refused.
    assert allow.HasField("rules")
    assert allow.rules.action == rbac_pb2.RBAC.ALLOW
    assert dict(allow.rules.policies) == {}


def test_an_allow_rule_with_http_and_tcp_parts_is_left_out_entirely() -> None:
    rules = (
        f"{{rules: [{{from: [{PRINCIPAL}], to: [{{operation: {{paths: [/x]}}}}]}},"
        f" {{from: [{PRINCIPAL}]}},"
        ' {when: [{key: "request.auth.claims[group]", values: [admins]}]},'
        ' {from: [{source: {requestPrincipals: ["*"]}}]}]}'
    )
    _, allow = configs(("mixed", rules))
    assert list(allow.rules.policies) == ["ns[default]-policy[mixed]-rule[1]"]
    (principal,) = allow.rules.policies["ns[default]-policy[mixed]-rule[1]"].principals
    assert (
        principal.authenticated.principal_name.exact
        == "spiffe://cluster.local/ns/default/sa/client"
    )


def test_a_deny_rule_ignores_http_attributes_and_denies_by_the_rest() -> None:
    deny, _ = configs(
        (
            "no-admin",
            "{action: DENY, rules: [{from: [{source: {namespaces: [untrusted],"
            ' notRequestPrincipals: ["*"]}}],'
            ' to: [{operation: {paths: [/admin], ports: ["9080"]}}]}]}',
        )
    )
    (policy,) = deny.rules.policies.values()
    assert deny.rules.action == rbac_pb2.RBAC.DENY
    # From the untrusted namespace, on the app port: the path and the JWT part are gone.
    (principal,) = policy.principals
    assert principal.authenticated.principal_name.safe_regex.regex == (
        "spiffe://[^/]+/ns/untrusted/sa/[^/]+"
    )
    assert policy.permissions[0].any


def test_a_deny_rule_with_only_http_attributes_denies_every_connection() -> None:
    deny, _ = configs(("no-get", "{action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}"))
    (policy,) = deny.rules.policies.values()
    assert policy.permissions[0].any and policy.principals[0].any


def test_custom_is_denied_on_tcp_and_audit_is_not_logged() -> None:
    deny, allow = configs(
        (
            "ext",
            "{action: CUSTOM, provider: {name: authz},"
            " rules: [{to: [{operation: {paths: [/x]}}]}]}",
        ),
        ("audit", "{action: AUDIT, rules: [{}]}"),
    )
    (key,) = deny.rules.policies
    assert key == "ns[default]-policy[ext]-rule[0]"
    assert deny.rules.policies[key].permissions[0].any
    assert not allow.HasField("rules")


def test_an_allow_policy_without_rules_allows_nothing() -> None:
    _, allow = configs(("nothing", "{}"))
    assert allow.HasField("rules") and dict(allow.rules.policies) == {}


def test_dry_run_policies_are_shadow_rules() -> None:
    deny, allow = configs(
        ("try-deny", f"{{action: DENY, rules: [{{from: [{PRINCIPAL}]}}]}}", DRY_RUN),
        ("try-allow", "{rules: [{to: [{operation: {methods: [GET]}}]}]}", DRY_RUN),
    )
    assert not deny.HasField("rules") and not allow.HasField("rules")
    assert list(deny.shadow_rules.policies) == ["ns[default]-policy[try-deny]-rule[0]"]
    assert allow.shadow_rules.action == rbac_pb2.RBAC.ALLOW
    assert dict(allow.shadow_rules.policies) == {}


def test_ports_are_the_app_port_on_a_sidecar_and_the_listener_port_on_a_gateway() -> None:
    rule = '{rules: [{to: [{operation: {ports: ["31400"]}}]}]}'
    _, sidecar = configs(("p", rule), app_port=9080)
    (policy,) = sidecar.rules.policies.values()
    assert policy.permissions[0].not_rule.any  # never the app port: matches nothing
    _, gateway = configs(("p", rule), app_port=None)
    (policy,) = gateway.rules.policies.values()
    assert policy.permissions[0].destination_port == 31400


def test_source_addresses_are_matched_on_tcp() -> None:
    _, allow = configs(("office", "{rules: [{from: [{source: {ipBlocks: [192.0.2.0/24]}}]}]}"))
    (policy,) = allow.rules.policies.values()
    assert policy.principals[0].direct_remote_ip.address_prefix == "192.0.2.0"
    assert policy.principals[0].direct_remote_ip.prefix_len.value == 24
