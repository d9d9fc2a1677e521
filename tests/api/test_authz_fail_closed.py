"""Analysis warns on the AuthorizationPolicy rules Pilot fails closed on, and on no other.

The claim is checked against Pilot's own translator: for generated policies, the
rules the analysis warns about are exactly the rules Pilot reports as failing
closed, and that set is the same whether the policy is translated for a
sidecar (whatever its app port) or for a gateway.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.analyze import analyze
from api.resources import Resource, check_document
from api.security.authorization_policy import AuthorizationPolicySpec
from api.security.authz_rules import (
    OPERATION_ATTRIBUTES,
    SOURCE_ATTRIBUTES,
    WHEN_ATTRIBUTES,
    Attribute,
    Match,
    when_attribute,
)
from pilot.networking import authz

NETMASK = "10.0.0.0/255.0.0.0"
SURROGATE = "a\ud800b"  # what a JSON "\ud800" escape gives


def policy(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> Resource:
    """The policy as Pilot would hold it. Validation refuses netmask blocks and lone
    surrogates now (tests/api/test_known_nacks.py), so these defence-in-depth cases are
    built past it: whatever reaches Pilot, the fail-closed rule and its warning hold."""
    meta: dict[str, Any] = {"name": "ap", "namespace": "default"}
    if annotations:
        meta["annotations"] = annotations
    doc = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": meta}
    result = check_document({**doc, "spec": {}}, "test.yaml:0")
    assert result.ok and result.resource is not None, [str(i) for i in result.errors]
    return dataclasses.replace(result.resource, spec=AuthorizationPolicySpec.model_validate(spec))


def test_validation_refuses_what_pilot_cannot_translate() -> None:
    doc = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "ap", "namespace": "default"},
    }
    for spec in (
        {"rules": [{"from": [{"source": {"ipBlocks": [NETMASK]}}]}]},
        {"rules": [{"to": [{"operation": {"hosts": [SURROGATE]}}]}]},
    ):
        assert not check_document({**doc, "spec": spec}, "test.yaml:0").ok


def warnings(resource: Resource) -> list[str]:
    return [str(i) for i in analyze([resource], set()).get(resource.ref, [])]


def test_a_netmask_ip_block_fails_the_allow_rule_closed() -> None:
    ap = policy({"rules": [{}, {"from": [{"source": {"ipBlocks": ["10.1.2.3", NETMASK]}}]}]})
    assert warnings(ap) == [
        "spec.rules[1].from[0].source.ipBlocks[1]: Pilot cannot translate "
        "'10.0.0.0/255.0.0.0' (Envoy needs a prefix length, not a mask: write 10.0.0.0/8), "
        "so this rule fails closed on every workload the policy applies to: as an ALLOW "
        "rule it matches nothing (it allows no request)."
    ]


@pytest.mark.parametrize(
    ("action", "outcome"),
    [
        ("ALLOW", "as an ALLOW rule it matches nothing (it allows no request)"),
        ("AUDIT", "as an AUDIT rule it matches nothing (it audits no request)"),
        ("DENY", "as a DENY rule it matches every request (every request is denied)"),
    ],
)
def test_the_message_says_what_the_action_then_does(action: str, outcome: str) -> None:
    mask = {"key": "remote.ip", "notValues": ["192.168.0.0/0.0.255.255"]}
    ap = policy(
        {"action": action, "rules": [{"to": [{"operation": {"methods": ["GET"]}}], "when": [mask]}]}
    )
    (found,) = warnings(ap)
    assert found.startswith("spec.rules[0].when[0].notValues[0]: Pilot cannot translate ")
    assert "write 192.168.0.0/16" in found and found.endswith(outcome + ".")


def test_custom_rules_go_to_the_authorizer_and_dry_runs_say_so() -> None:
    custom = policy(
        {
            "action": "CUSTOM",
            "provider": {"name": "authz"},
            "rules": [{"from": [{"source": {"ipBlocks": [NETMASK]}}]}],
        }
    )
    (found,) = warnings(custom)
    assert "as a CUSTOM rule it matches every request (every request goes to the external" in found
    dry = policy(
        {"action": "DENY", "rules": [{"to": [{"operation": {"hosts": [SURROGATE]}}]}]},
        annotations={"istio.io/dry-run": "true"},
    )
    (found,) = warnings(dry)
    assert found.startswith(
        "spec.rules[0].to[0].operation.hosts[0]: Pilot cannot translate 'a\\ud800b' "
        "(not valid Unicode: it holds a lone surrogate)"
    )
    assert found.endswith("(every request is denied) (dry run: only counted, not enforced).")


def test_a_lone_surrogate_in_a_condition_key_is_named_at_the_key() -> None:
    ap = policy({"rules": [{"when": [{"key": f"request.headers[{SURROGATE}]", "values": ["x"]}]}]})
    assert [w.split(":")[0] for w in warnings(ap)] == ["spec.rules[0].when[0].key"]


def test_translatable_rules_get_no_warning() -> None:
    ap = policy(
        {
            "action": "DENY",
            "rules": [
                {
                    "from": [{"source": {"ipBlocks": ["10.0.0.0/8", "::1", "2001:db8::/32"]}}],
                    "to": [{"operation": {"ports": ["9080"], "paths": ["/a/{*}/b"]}}],
                    "when": [{"key": "destination.ip", "values": ["192.0.2.1/32"]}],
                }
            ],
        }
    )
    assert warnings(ap) == []


# --- the analysis and Pilot's translator agree, rule by rule ---

_GOOD = {
    Match.SOURCE_IP: ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"],
    Match.REMOTE_IP: ["10.0.0.0/8", "::1"],
    Match.DESTINATION_IP: ["10.1.0.0/16"],
    Match.PORT: ["9080", "80"],
    Match.PATH: ["/a", "/a*", "/items/{*}/x"],
    Match.SERVICE_ACCOUNT: ["fe", "ns/fe"],
    Match.TRUST_DOMAIN: ["cluster.local", "*.corp"],
}
_BAD_IP = {Match.SOURCE_IP, Match.REMOTE_IP, Match.DESTINATION_IP}


def _values(attribute: Attribute) -> st.SearchStrategy[list[str]]:
    """Values validation accepts: good ones, netmasks, and lone surrogates where no form
    check stands in the way."""
    pool = _GOOD.get(attribute.match, ["a", "x-y", "*"])
    if attribute.match in _BAD_IP:
        pool = [*pool, NETMASK, "10.0.0.0/0.255.255.255"]
    if attribute.check is None:
        pool = [*pool, SURROGATE]
    return st.lists(st.sampled_from(pool), min_size=1, max_size=2)


@st.composite
def _side(draw: st.DrawFn, table: dict[str, Any]) -> dict[str, list[str]]:
    names = draw(st.lists(st.sampled_from(sorted(table)), min_size=1, max_size=2, unique=True))
    out = {}
    for name in names:
        field = draw(st.sampled_from([name, "not" + name[0].upper() + name[1:]]))
        out[_camel(field)] = draw(_values(table[name]))
    return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


@st.composite
def _rule(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if draw(st.booleans()):
        source = draw(_side(SOURCE_ATTRIBUTES))
        if "serviceAccounts" in source or "notServiceAccounts" in source:
            source = {
                k: v for k, v in source.items() if "rincipals" not in k and "amespaces" not in k
            }
        rule["from"] = [{"source": source}]
    if draw(st.booleans()):
        rule["to"] = [{"operation": draw(_side(OPERATION_ATTRIBUTES))}]
    if draw(st.booleans()):
        key = draw(st.sampled_from([*sorted(WHEN_ATTRIBUTES), f"request.headers[{SURROGATE}]"]))
        found = when_attribute(key)
        assert not isinstance(found, str)
        field = draw(st.sampled_from(["values", "notValues"]))
        rule["when"] = [{"key": key, field: draw(_values(found[0]))}]
    return rule


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    action=st.sampled_from(["ALLOW", "DENY", "AUDIT"]),
    rules=st.lists(_rule(), min_size=1, max_size=3),
)
def test_the_analysis_warns_on_exactly_the_rules_pilot_fails_closed(
    action: str, rules: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    ap = policy({"action": action, "rules": rules})
    warned = {w.split("]", 1)[0] + "]" for w in warnings(ap)}  # 'spec.rules[i]'
    failed = {
        f"spec.rules[{line.split('rules[')[1].split(']')[0]}]"
        for line in authz.untranslatable([ap])
    }
    assert warned == failed
    # The same rules fail for any proxy: a sidecar, whatever its app port, or a gateway.
    for app_port in (9080, 80, None):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pilot.networking.authz"):
            authz.rbac_configs([ap], app_port)
        logged = {r.getMessage().split(":")[0].split(" ", 1)[1] for r in caplog.records}
        assert {f"spec.{x}" for x in logged} == failed
