"""Every AuthorizationPolicy attribute Galley accepts restricts on the wire.

For each attribute (sources, operations, `when` keys, and their not-forms)
one ALLOW policy is applied to the `vault` workload, the test waits until
vault's sidecar has ACKed the new filter config, and then a caller inside the
rule is served while a caller outside it is refused with 403, through two
real sidecars. A translator that dropped an attribute would admit both.

Callers: `alice` (default/alice, mTLS), `mallory` (other/mallory, mTLS) and
`plain` (no mesh identity: plaintext, which PERMISSIVE accepts).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from api.security.authz_rules import (
    OPERATION_ATTRIBUTES,
    SOURCE_ATTRIBUTES,
    WHEN_ATTRIBUTES,
    WHEN_MAP_ATTRIBUTES,
)
from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = pytest.mark.e2e

ISSUER = "https://issuer.example"
KEY = ec.generate_private_key(ec.SECP256R1())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwks() -> str:
    numbers = KEY.public_key().public_numbers()
    key = {
        "kty": "EC",
        "crv": "P-256",
        "kid": "k",
        "alg": "ES256",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }
    return json.dumps({"keys": [key]})


def token(sub: str, **claims: object) -> str:
    now = int(time.time())
    head = _b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "k"}).encode())
    body = _b64(
        json.dumps({"iss": ISSUER, "sub": sub, "iat": now, "exp": now + 3600, **claims}).encode()
    )
    r, s = decode_dss_signature(KEY.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{head}.{body}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


ALICE_TOKEN = token("alice-user", aud="vault-api", azp="web", group="admins")
BOB_TOKEN = token("bob-user", aud="other-api", azp="cli", group="guests")


@dataclass(frozen=True)
class Call:
    caller: str  # alice, mallory or plain
    path: str = "/"
    method: str = "GET"
    host: str = "vault.default"
    headers: dict[str, str] = field(default_factory=dict)
    jwt: str | None = None


@dataclass(frozen=True)
class Case:
    attribute: str  # the table entry it proves: "source.principals", "when:source.ip", ...
    rule: str  # one rule, YAML flow style; {app_port} is vault's app port
    served: Call | None  # None: the rule admits none of this test's callers
    refused: Call


ALICE, MALLORY, PLAIN = Call("alice"), Call("mallory"), Call("plain")
ALICE_JWT, BOB_JWT = Call("alice", jwt=ALICE_TOKEN), Call("alice", jwt=BOB_TOKEN)
ALICE_PRINCIPAL = "cluster.local/ns/default/sa/alice"


def when(key: str, values: list[str], negate: bool = False) -> str:
    return (
        f"{{when: [{{key: '{key}', {'notValues' if negate else 'values'}: {json.dumps(values)}}}]}}"
    )


def source(field_: str, values: list[str]) -> str:
    return f"{{from: [{{source: {{{field_}: {json.dumps(values)}}}}}]}}"


def operation(field_: str, values: list[str]) -> str:
    return f"{{to: [{{operation: {{{field_}: {json.dumps(values)}}}}}]}}"


CASES = [
    # --- from.source ---
    Case("source.principals", source("principals", [ALICE_PRINCIPAL]), ALICE, MALLORY),
    Case("source.principals", source("notPrincipals", [ALICE_PRINCIPAL]), MALLORY, ALICE),
    Case("source.namespaces", source("namespaces", ["default"]), ALICE, MALLORY),
    Case("source.namespaces", source("notNamespaces", ["def*"]), MALLORY, ALICE),
    Case("source.service_accounts", source("serviceAccounts", ["alice"]), ALICE, MALLORY),
    Case(
        "source.service_accounts", source("notServiceAccounts", ["other/mallory"]), ALICE, MALLORY
    ),
    Case("source.trust_domains", source("trustDomains", ["cluster.local"]), ALICE, PLAIN),
    Case("source.trust_domains", source("trustDomains", ["*.local"]), MALLORY, PLAIN),
    Case("source.trust_domains", source("notTrustDomains", ["cluster.*"]), PLAIN, ALICE),
    Case("source.ip_blocks", source("ipBlocks", ["10.0.0.0/8"]), None, ALICE),
    Case("source.ip_blocks", source("notIpBlocks", ["127.0.0.1"]), None, ALICE),
    Case(
        "source.remote_ip_blocks",
        source("remoteIpBlocks", ["10.1.2.0/24"]),
        Call("alice", headers={"X-Forwarded-For": "10.1.2.3"}),
        Call("alice", headers={"X-Forwarded-For": "10.9.9.9"}),
    ),
    Case(
        "source.remote_ip_blocks",
        source("notRemoteIpBlocks", ["10.1.2.0/24"]),
        Call("alice", headers={"X-Forwarded-For": "10.9.9.9"}),
        Call("alice", headers={"X-Forwarded-For": "10.1.2.3"}),
    ),
    Case(
        "source.request_principals",
        source("requestPrincipals", [f"{ISSUER}/alice-user"]),
        ALICE_JWT,
        BOB_JWT,
    ),
    Case(
        "source.request_principals",
        source("notRequestPrincipals", [f"{ISSUER}/alice-*"]),
        BOB_JWT,
        ALICE_JWT,
    ),
    # --- to.operation ---
    Case(
        "operation.hosts",
        operation("hosts", ["vault.default"]),
        ALICE,
        Call("alice", host="vault.default.svc.cluster.local"),
    ),
    Case(
        "operation.hosts",
        operation("notHosts", ["vault.default"]),
        Call("alice", host="vault.default.svc.cluster.local"),
        ALICE,
    ),
    Case(
        "operation.ports",  # the app's port matches (the namespace refuses mallory)
        '{to: [{operation: {ports: ["{app_port}"]}}], from: [{source: {namespaces: [default]}}]}',
        ALICE,
        MALLORY,
    ),
    Case("operation.ports", operation("ports", ["1"]), None, ALICE),
    Case("operation.ports", operation("notPorts", ["{app_port}"]), None, ALICE),
    Case("operation.methods", operation("methods", ["GET"]), ALICE, Call("alice", method="POST")),
    Case(
        "operation.methods", operation("notMethods", ["GET"]), Call("alice", method="POST"), ALICE
    ),
    Case(
        "operation.paths",
        operation("paths", ["/ok*"]),
        Call("alice", path="/ok/1"),
        Call("alice", path="/no"),
    ),
    Case(
        "operation.paths",
        operation("paths", ["/items/{*}/info"]),
        Call("alice", path="/items/7/info"),
        Call("alice", path="/items/7/8/info"),
    ),
    Case(
        "operation.paths",
        operation("notPaths", ["/no"]),
        Call("alice", path="/ok"),
        Call("alice", path="/no"),
    ),
    # --- when ---
    Case("when:source.ip", when("source.ip", ["10.0.0.0/8"]), None, ALICE),
    Case("when:source.ip", when("source.ip", ["127.0.0.1"], negate=True), None, ALICE),
    Case(
        "when:remote.ip",
        when("remote.ip", ["10.1.2.3"]),
        Call("alice", headers={"X-Forwarded-For": "10.1.2.3"}),
        ALICE,
    ),
    Case("when:source.namespace", when("source.namespace", ["other"]), MALLORY, ALICE),
    Case("when:source.principal", when("source.principal", [ALICE_PRINCIPAL]), ALICE, MALLORY),
    Case(
        "when:source.serviceAccount",
        when("source.serviceAccount", ["other/mallory"]),
        MALLORY,
        ALICE,
    ),
    Case("when:source.trustDomain", when("source.trustDomain", ["cluster.local"]), ALICE, PLAIN),
    Case(
        "when:request.auth.principal",
        when("request.auth.principal", [f"{ISSUER}/alice-user"]),
        ALICE_JWT,
        BOB_JWT,
    ),
    Case(
        "when:request.auth.audiences",
        when("request.auth.audiences", ["vault-api"]),
        ALICE_JWT,
        BOB_JWT,
    ),
    Case(
        "when:request.auth.presenter", when("request.auth.presenter", ["web"]), ALICE_JWT, BOB_JWT
    ),
    Case(
        "when:request.auth.claims",
        when("request.auth.claims[group]", ["admins"]),
        ALICE_JWT,
        BOB_JWT,
    ),
    Case(
        "when:request.headers",
        when("request.headers[x-team]", ["blue"]),
        Call("alice", headers={"x-team": "blue"}),
        Call("alice", headers={"x-team": "red"}),
    ),
    Case("when:destination.ip", when("destination.ip", ["10.0.0.0/8"]), None, ALICE),
    Case("when:destination.port", when("destination.port", ["1"]), None, ALICE),
    Case(
        "when:destination.port", when("destination.port", ["{app_port}"], negate=True), None, ALICE
    ),
    Case("when:connection.sni", when("connection.sni", ["outbound_.*"]), ALICE, PLAIN),
    Case(
        "when:experimental.envoy.filters",
        when("experimental.envoy.filters.network.mysql_proxy[db.table]", ["[update]"]),
        None,
        ALICE,
    ),
]


def test_every_attribute_in_the_table_has_a_case() -> None:
    covered = {c.attribute for c in CASES}
    table = (
        {f"source.{name}" for name in SOURCE_ATTRIBUTES}
        | {f"operation.{name}" for name in OPERATION_ATTRIBUTES}
        | {f"when:{key}" for key in WHEN_ATTRIBUTES}
        | {f"when:{key}" for key in WHEN_MAP_ATTRIBUTES}
        | {"when:experimental.envoy.filters"}
    )
    assert table - covered == set()


@pytest.fixture(scope="module")
def mesh(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = Path(tmp_path_factory.mktemp("authz-attributes"))
    with Mesh.running(workdir, envoy_bin, citadel=True) as m:
        yield m


def send(clients: dict[str, Workload], call: Call) -> int:
    headers = {"Host": call.host, **call.headers}
    if call.jwt is not None:
        headers["Authorization"] = f"Bearer {call.jwt}"
    port = clients[call.caller].outbound_port
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{call.path}", headers=headers, method=call.method
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def policy(rule: str, app_port: int, case: int) -> str:
    """The case's rule, and a second rule for an identity no caller has: it admits no one,
    but names the case in the filter config, so the test can see when Envoy has it."""
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: vault-attribute, namespace: default}}
spec:
  selector: {{matchLabels: {{version: v-vault}}}}
  action: ALLOW
  rules:
  - {rule.replace("{app_port}", str(app_port))}
  - from: [{{source: {{principals: [cluster.local/ns/nowhere/sa/case-{case}]}}}}]
"""


def test_each_accepted_attribute_refuses_a_caller_outside_the_rule(mesh: Mesh) -> None:
    vault = mesh.add("vault", "vault-1", version="v-vault", service_account="vault-sa")
    clients = {
        "alice": mesh.client("alice", service_account="alice"),
        "mallory": mesh.client("mallory", namespace="other", service_account="mallory"),
        "plain": mesh.client("plain"),
    }
    for name in clients:
        eventually(lambda n=name: send(clients, Call(n)) == 200, what=f"{name} reaches vault")
    mesh.apply(f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: vault-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{version: v-vault}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: '{_jwks()}'
""")
    eventually(lambda: ISSUER in vault.filter_configs(), what="vault enforces the JWT rule")
    failures = []
    for i, case in enumerate(CASES):
        mesh.apply(policy(case.rule, vault.app_port, i))
        eventually(
            lambda i=i: f'case-{i}"' in vault.filter_configs(),
            timeout=30,
            what=f"vault's Envoy has the policy for {case.rule}",
        )
        got = (
            send(clients, case.served) if case.served is not None else 200,
            send(clients, case.refused),
        )
        if got != (200, 403):
            failures.append(f"{case.rule}: served/refused answered {got}, want (200, 403)")
    assert failures == []
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0
    assert mesh.pilot_metric("pilot_authz_rules_failed_closed") == 0
