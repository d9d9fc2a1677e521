"""AuthorizationPolicy: schema and semantic rules, each error at its field path."""

from __future__ import annotations

from typing import Any

import pytest

from api.resources import Checked, check_document
from api.security.authz_rules import path_template, service_account, trust_domain
from tests.api.helpers import check, errors, warnings

KIND = "AuthorizationPolicy"
SELECTOR = {"matchLabels": {"app": "httpbin"}}


def rule(**parts: Any) -> dict[str, Any]:
    return {"rules": [parts]}


def source(**fields: Any) -> dict[str, Any]:
    return rule(**{"from": [{"source": fields}]})


def operation(**fields: Any) -> dict[str, Any]:
    return rule(to=[{"operation": fields}])


def when(key: str | None = None, **fields: Any) -> dict[str, Any]:
    condition = {"key": key, **fields} if key is not None else fields
    return rule(when=[condition])


def custom(**spec: Any) -> dict[str, Any]:
    return {"action": "CUSTOM", "provider": {"name": "ext-authz"}, **spec}


def with_annotations(spec: dict[str, Any], annotations: dict[str, str]) -> Checked:
    doc = {
        "apiVersion": "security.istio.io/v1",
        "kind": KIND,
        "metadata": {"name": "x", "namespace": "default", "annotations": annotations},
        "spec": spec,
    }
    return check_document(doc, "test.yaml:0")


FULL_RULE = {
    "from": [
        {
            "source": {
                "principals": ["cluster.local/ns/default/sa/sleep", "*"],
                "notPrincipals": ["cluster.local/ns/test/*"],
                "requestPrincipals": ["issuer.example.com/*"],
                "notRequestPrincipals": ["issuer.example.com/banned"],
                "namespaces": ["default", "prod-*"],
                "notNamespaces": ["test"],
                "ipBlocks": ["10.0.0.1", "10.1.0.0/16", "fd00::/8"],
                "notIpBlocks": ["10.1.2.0/24"],
                "remoteIpBlocks": ["203.0.113.0/24"],
                "notRemoteIpBlocks": ["203.0.113.7"],
                "trustDomains": ["cluster.local", "*-suffix", "prefix-*"],
                "notTrustDomains": ["*"],
            }
        },
        {"source": {"serviceAccounts": ["sleep", "other-ns/client"]}},
        {"source": {"notServiceAccounts": ["legacy/client"]}},
    ],
    "to": [
        {
            "operation": {
                "hosts": ["httpbin.example.com", "*.example.com"],
                "notHosts": ["admin.example.com"],
                "ports": ["0", "8080", "65535"],
                "notPorts": ["9090"],
                "methods": ["GET", "POST"],
                "notMethods": ["DELETE"],
                "paths": ["/info*", "/api/{*}/items", "/files/{**}", "/{**}/tail"],
                "notPaths": ["/admin/{*}"],
            }
        }
    ],
    "when": [
        {"key": "request.headers[x-token]", "values": ["admin"]},
        {"key": "request.auth.claims[groups][0]", "notValues": ["guest"]},
        {"key": "source.ip", "values": ["10.0.0.0/8"]},
        {"key": "remote.ip", "notValues": ["203.0.113.1"]},
        {"key": "destination.ip", "values": ["10.2.0.1"]},
        {"key": "destination.port", "values": ["8080"]},
        {"key": "source.serviceAccount", "values": ["default/sleep"]},
        {"key": "source.trustDomain", "values": ["cluster.*"]},
        {"key": "source.namespace", "values": ["default"]},
        {"key": "source.principal", "values": ["*"]},
        {"key": "request.auth.principal", "values": ["issuer/sub"]},
        {"key": "request.auth.audiences", "values": ["aud"]},
        {"key": "request.auth.presenter", "values": ["app"]},
        {"key": "connection.sni", "values": ["*.example.com"]},
        {"key": "experimental.envoy.filters.network.mysql_proxy[db.table]", "values": ["[update]"]},
    ],
}


def test_full_policy_is_accepted_and_round_trips() -> None:
    result = check(KIND, {"selector": SELECTOR, "action": "ALLOW", "rules": [FULL_RULE, {}]})
    assert result.ok, errors(result)
    assert warnings(result) == []
    assert result.resource is not None
    dumped = result.resource.spec.dump()
    assert dumped["rules"][0] == FULL_RULE
    assert "from" in dumped["rules"][0] and "from_" not in dumped["rules"][0]


@pytest.mark.parametrize("api_version", ["security.istio.io/v1beta1", "security.istio.io/v1"])
def test_every_action_and_scope_form_is_accepted(api_version: str) -> None:
    specs: list[dict[str, Any]] = [
        {},
        {"action": "ALLOW"},
        {"action": "DENY", "rules": [{}]},
        {"action": "AUDIT", "rules": [{"to": [{"operation": {"paths": ["/audit"]}}]}]},
        custom(
            rules=[{}],
            targetRef={"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"},
        ),
        {
            "targetRefs": [
                {"kind": "Service", "group": "", "name": "a"},
                {"kind": "ServiceEntry", "group": "networking.istio.io", "name": "b"},
            ]
        },
    ]
    for spec in specs:
        result = check(KIND, spec, api_version=api_version)
        assert result.ok, (spec, errors(result))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # scope
        (
            {"selector": SELECTOR, "targetRef": {"kind": "Service", "name": "a"}},
            "spec: only one of",
        ),
        ({"targetRef": {"kind": "Service"}}, "spec.targetRef.name: required field is missing"),
        (
            {"targetRef": {"kind": "Service", "name": "a", "namespace": "b"}},
            "spec.targetRef.namespace: cross-namespace",
        ),
        ({"targetRefs": [{"kind": "Pod", "name": "a"}]}, "spec.targetRefs[0].kind: unsupported"),
        ({"selector": {"matchLabels": {"app": "*"}}}, "spec.selector.matchLabels: wildcard"),
        # CUSTOM
        ({"action": "CUSTOM", "provider": {"name": "p"}}, "spec.rules: the CUSTOM action needs"),
        ({"action": "CUSTOM", "rules": [{}]}, "spec.provider: the CUSTOM action needs a provider"),
        ({"action": "CUSTOM", "rules": [{}], "provider": {}}, "spec.provider.name: required"),
        (custom(**source(principals=["a"])), "spec.rules[0].from[0].source.principals: "),
        (custom(**source(notNamespaces=["a"])), "spec.rules[0].from[0].source.notNamespaces: "),
        (custom(**source(requestPrincipals=["a"])), "spec.rules[0].from[0].source.requestPrinc"),
        (custom(**source(serviceAccounts=["a"])), "spec.rules[0].from[0].source.serviceAccounts"),
        (custom(**source(trustDomains=["td"])), "spec.rules[0].from[0].source.trustDomains: "),
        (custom(**when("source.namespace", values=["a"])), "spec.rules[0].when[0].key: "),
        (custom(**when("source.serviceAccount", values=["a"])), "spec.rules[0].when[0].key: "),
        (custom(**when("request.auth.claims[iss]", values=["a"])), "spec.rules[0].when[0].key"),
        (custom(rules=[{"when": [None]}]), "spec.rules[0].when[0]: must not be null"),
        # provider and DENY
        ({"action": "DENY", "rules": [{}], "provider": {"name": "p"}}, "spec.provider: a provider"),
        ({"action": "AUDIT", "provider": {"name": "p"}}, "spec.provider: a provider is only"),
        ({"action": "DENY"}, "spec.rules: the DENY action needs rules"),
        # rule shape
        ({"rules": [None]}, "spec.rules[0]: a rule must not be null"),
        (rule(**{"from": []}), "spec.rules[0].from: must not be empty"),
        (rule(to=[]), "spec.rules[0].to: must not be empty"),
        (rule(**{"from": [None]}), "spec.rules[0].from[0]: must not be null"),
        (rule(**{"from": [{}]}), "spec.rules[0].from[0].source: required field is missing"),
        (rule(to=[None]), "spec.rules[0].to[0]: must not be null"),
        (rule(to=[{}]), "spec.rules[0].to[0].operation: required field is missing"),
        # source
        (source(), "spec.rules[0].from[0].source: must set at least one field"),
        (source(principals=[]), "spec.rules[0].from[0].source: must set at least one field"),
        (
            source(serviceAccounts=["sa"], namespaces=["ns"]),
            "spec.rules[0].from[0].source.serviceAccounts: cannot set serviceAccounts",
        ),
        (
            source(notServiceAccounts=["sa"], notPrincipals=["p"]),
            "spec.rules[0].from[0].source.notServiceAccounts: cannot set serviceAccounts",
        ),
        (source(ipBlocks=["10.0.0.1", "10.0.0.0/33"]), "spec.rules[0].from[0].source.ipBlocks[1]"),
        (source(notIpBlocks=["abc"]), "spec.rules[0].from[0].source.notIpBlocks[0]: 'abc'"),
        (source(remoteIpBlocks=["1.2.3"]), "spec.rules[0].from[0].source.remoteIpBlocks[0]"),
        (source(notRemoteIpBlocks=["::g"]), "spec.rules[0].from[0].source.notRemoteIpBlocks[0]"),
        (source(principals=[""]), "spec.rules[0].from[0].source.principals[0]: must not be an"),
        (source(notRequestPrincipals=["a", ""]), "spec.rules[0].from[0].source.notRequestPr"),
        (
            source(serviceAccounts=[f"sa{i}" for i in range(17)]),
            "spec.rules[0].from[0].source.serviceAccounts: at most 16",
        ),
        (source(serviceAccounts=["ns/*"]), "spec.rules[0].from[0].source.serviceAccounts[0]: "),
        (source(notServiceAccounts=["ns/"]), "spec.rules[0].from[0].source.notServiceAccounts[0]"),
        (source(serviceAccounts=["a/b/c"]), "spec.rules[0].from[0].source.serviceAccounts[0]: "),
        (source(serviceAccounts=["s" * 321]), "spec.rules[0].from[0].source.serviceAccounts[0]"),
        (source(trustDomains=["*a*"]), "spec.rules[0].from[0].source.trustDomains[0]: "),
        (source(notTrustDomains=["a*b"]), "spec.rules[0].from[0].source.notTrustDomains[0]: "),
        (source(trustDomains=["td/x"]), "spec.rules[0].from[0].source.trustDomains[0]: "),
        # operation
        (operation(), "spec.rules[0].to[0].operation: must set at least one field"),
        (operation(ports=["http"]), "spec.rules[0].to[0].operation.ports[0]: port 'http'"),
        (operation(notPorts=["65536"]), "spec.rules[0].to[0].operation.notPorts[0]: port"),
        (operation(ports=["-1"]), "spec.rules[0].to[0].operation.ports[0]: port"),
        (operation(ports=[""]), "spec.rules[0].to[0].operation.ports[0]: must not be an empty"),
        (operation(methods=["GET", ""]), "spec.rules[0].to[0].operation.methods[1]: must not"),
        (operation(notHosts=[""]), "spec.rules[0].to[0].operation.notHosts[0]: must not"),
        (operation(paths=["/{**}/{*}"]), "spec.rules[0].to[0].operation.paths[0]: path"),
        (operation(paths=["/a/{**}/b/{**}"]), "spec.rules[0].to[0].operation.paths[0]: path"),
        (operation(paths=["/a/{id}"]), "spec.rules[0].to[0].operation.paths[0]: path"),
        (operation(notPaths=["/a b/{*}"]), "spec.rules[0].to[0].operation.notPaths[0]: path"),
        # when
        (when(values=["a"]), "spec.rules[0].when[0].key: required field is missing"),
        (when("", values=["a"]), "spec.rules[0].when[0].key: required field is missing"),
        (when("source.ip"), "spec.rules[0].when[0]: at least one of values or notValues"),
        (when("source.namespace", values=[""]), "spec.rules[0].when[0].values[0]: must not be"),
        (when("request.headers", values=["a"]), "spec.rules[0].when[0].key: key 'request.headers'"),
        (when("request.auth.claims[]", values=["a"]), "spec.rules[0].when[0].key: key "),
        (when("experimental.envoy.filters.a", values=["a"]), "spec.rules[0].when[0].key: key "),
        (when("source.ip", values=["10.0.0.256"]), "spec.rules[0].when[0].values[0]: "),
        (when("remote.ip", notValues=["x/8"]), "spec.rules[0].when[0].notValues[0]: "),
        (when("destination.ip", values=["1.2.3.4/40"]), "spec.rules[0].when[0].values[0]: "),
        (when("destination.port", values=["99999"]), "spec.rules[0].when[0].values[0]: port"),
        (when("source.serviceAccount", values=["*"]), "spec.rules[0].when[0].values[0]: service"),
        (when("source.trustDomain", notValues=["a/b"]), "spec.rules[0].when[0].notValues[0]: "),
        (when("destination.namespace", values=["a"]), "spec.rules[0].when[0].key: attribute"),
        (when("destination.labels[app]", values=["a"]), "spec.rules[0].when[0].key: attribute"),
        (when("destination.name", values=["a"]), "spec.rules[0].when[0].key: attribute"),
        (when("destination.user", values=["a"]), "spec.rules[0].when[0].key: attribute"),
        (when("request.method", values=["GET"]), "spec.rules[0].when[0].key: unknown attribute"),
        (rule(when=[None]), "spec.rules[0].when[0]: must not be null"),
        # schema
        ({"action": "BLOCK"}, "spec.action: must be one of"),
        (source(principal=["a"]), "spec.rules[0].from[0].source.principal: unknown field"),
        (operation(ports=[80]), "spec.rules[0].to[0].operation.ports[0]: must be a string"),
        ({"rules": {"to": []}}, "spec.rules: must be a list"),
        ({"provider": {"name": "p", "port": 1}, "action": "CUSTOM"}, "spec.provider.port: unknown"),
    ],
)
def test_invalid_policies_name_the_field(spec: dict[str, Any], expected: str) -> None:
    result = check(KIND, spec)
    assert not result.ok
    assert any(e.startswith(expected) for e in errors(result)), errors(result)


def test_several_errors_are_reported_together() -> None:
    result = check(KIND, {"action": "DENY", "provider": {"name": "p"}, **source(ipBlocks=["x"])})
    found = errors(result)
    assert any(e.startswith("spec.provider: ") for e in found)
    assert any(e.startswith("spec.rules[0].from[0].source.ipBlocks[0]: ") for e in found)


@pytest.mark.parametrize(
    ("action", "value"),
    [("ALLOW", "true"), ("DENY", "False"), (None, "1"), ("DENY", "f")],
)
def test_dry_run_annotation_on_allow_or_deny_is_accepted(action: str | None, value: str) -> None:
    spec: dict[str, Any] = {"rules": [{}]} | ({"action": action} if action else {})
    result = with_annotations(spec, {"istio.io/dry-run": value})
    assert result.ok, errors(result)


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ({"action": "AUDIT", "rules": [{}]}, "true", "only supported with the ALLOW or DENY"),
        (custom(rules=[{}]), "true", "only supported with the ALLOW or DENY"),
        ({"action": "DENY", "rules": [{}]}, "yes", "must be true or false"),
        ({}, "", "must be true or false"),
    ],
)
def test_dry_run_annotation_is_refused(spec: dict[str, Any], value: str, expected: str) -> None:
    result = with_annotations(spec, {"istio.io/dry-run": value})
    assert not result.ok
    assert any(e.startswith("metadata.annotations: ") and expected in e for e in errors(result)), (
        errors(result)
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"action": "DENY", **operation(methods=["GET"])},
            "spec.rules[0]: this DENY rule uses only HTTP attributes",
        ),
        (
            {"action": "DENY", **when("request.headers[x-token]", notValues=["admin"])},
            "spec.rules[0]: this DENY rule uses only HTTP attributes",
        ),
        ({"action": "DENY", "rules": []}, "spec.rules: an empty rules list never matches"),
        ({"action": "CUSTOM", "rules": [], "provider": {"name": "p"}}, "spec.rules: an empty"),
        ({"selector": {}}, "spec.selector: selector has no labels"),
    ],
)
def test_warnings_name_the_field(spec: dict[str, Any], expected: str) -> None:
    result = check(KIND, spec)
    assert result.ok, errors(result)
    assert any(w.startswith(expected) for w in warnings(result)), warnings(result)


@pytest.mark.parametrize(
    "spec",
    [
        {"action": "DENY", "rules": [{}]},
        {"action": "DENY", **operation(methods=["GET"], ports=["8080"])},
        {"action": "DENY", **source(notRequestPrincipals=["*"], namespaces=["foo"])},
        {"action": "DENY", **when("source.ip", values=["10.0.0.0/8"])},
        {"action": "ALLOW", **operation(methods=["GET"])},
    ],
)
def test_deny_rules_that_reach_tcp_attributes_do_not_warn(spec: dict[str, Any]) -> None:
    result = check(KIND, spec)
    assert result.ok and warnings(result) == [], (errors(result), warnings(result))


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("/exact", True),
        ("*", True),
        ("/prefix/*", True),
        ("/a/{*}/b", True),
        ("/{**}/tail", True),
        ("/a/{*}/{**}", True),
        ("/a/{**}/{*}", False),
        ("/{**}/{**}", False),
        ("/a{*}", False),
        ("/a/*/{**}", False),
    ],
)
def test_path_templates(value: str, ok: bool) -> None:
    assert (path_template(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("sa", True), ("ns/sa", True), ("/sa", False), ("ns/*", False), ("a/b/c", False)],
)
def test_service_accounts(value: str, ok: bool) -> None:
    assert (service_account(value) is None) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("*", True), ("*.local", True), ("cluster*", True), ("a*b", False), ("**", False)],
)
def test_trust_domains(value: str, ok: bool) -> None:
    assert (trust_domain(value) is None) is ok
