"""Authorization and request authentication reach existing connections at their next request.

The sidecars here run with Envoy's default drain (600 s, gradual): had a policy
change rebuilt the inbound listener, the held connection would keep the old
filter chain for ten minutes. Each step waits until the server's sidecar has
ACKed the new filter config (Pilot's sync status), then sends exactly one
request on the same keep-alive connection, through both sidecars.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = pytest.mark.e2e

ENVOY_DEFAULT_DRAIN = ("--drain-time-s", "600", "--drain-strategy", "gradual")


@pytest.fixture(scope="module")
def mesh(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = Path(tmp_path_factory.mktemp("policy-updates"))
    with Mesh.running(workdir, envoy_bin, citadel=True, drain_args=ENVOY_DEFAULT_DRAIN) as m:
        yield m


class HeldConnection:
    """One HTTP/1.1 keep-alive connection from the test to a client sidecar."""

    def __init__(self, port: int, host: str) -> None:
        self.host = host
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.connect()
        assert self.conn.sock is not None
        self.local = self.conn.sock.getsockname()

    def get(self, path: str = "/", token: str | None = None) -> int:
        headers = {"Host": self.host}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.conn.request("GET", path, headers=headers)
        resp = self.conn.getresponse()
        resp.read()
        assert not resp.will_close, "the sidecar closed the held connection"
        assert self.conn.sock is not None and self.conn.sock.getsockname() == self.local
        return resp.status

    def close(self) -> None:
        self.conn.close()


def stat(w: Workload, name: str) -> int:
    """One counter from a sidecar's admin API (0 when Envoy has not created it)."""
    for line in w.admin(f"/stats?filter=^{name}$").splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def ecds_acked(mesh: Mesh, proxy_id: str) -> str:
    """The filter-config version the proxy has ACKed, once it has ACKed what it was sent."""
    for p in mesh.pilot_json("/debug/syncz")["proxies"]:
        if p["proxy"] == proxy_id:
            watch = p["types"].get("ecds", {})
            if watch.get("version_acked") and watch["version_acked"] == watch["version_sent"]:
                return str(watch["version_acked"])
    return ""


def converge(mesh: Mesh, proxy_id: str, before: str, text: str) -> str:
    """Apply config and wait until the proxy has ACKed filter config other than `before`."""
    mesh.apply(text)
    return eventually(
        lambda: (v := ecds_acked(mesh, proxy_id)) != before and v,
        timeout=30,
        what=f"{proxy_id} ACKed the new filter config",
    )


def allow_from(sa: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ledger-allow, namespace: default}}
spec:
  selector: {{matchLabels: {{version: v-ledger}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: ["cluster.local/ns/default/sa/{sa}"]}}}}]
"""


DENY_ADMIN = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ledger-deny-admin, namespace: default}
spec:
  selector: {matchLabels: {version: v-ledger}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]
"""


def _jwks() -> str:
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    key = {"kty": "EC", "crv": "P-256", "kid": "k", "x": b64(numbers.x), "y": b64(numbers.y)}
    return json.dumps({"keys": [key]})


JWKS = _jwks()
REQUEST_AUTHN = f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ledger-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{version: v-ledger}}}}
  jwtRules:
  - issuer: https://issuer.example
    jwks: '{JWKS}'
"""


def test_policy_changes_reach_a_held_connection_at_its_next_request(mesh: Mesh) -> None:
    server = mesh.add("ledger", "ledger-1", version="v-ledger", service_account="ledger-sa")
    client = mesh.client("teller", service_account="teller")
    eventually(lambda: mesh.request(client.outbound_port, "ledger").status == 200)
    inbound_cx = f"listener.0.0.0.0_{server.inbound_port}.downstream_cx_total"
    held = HeldConnection(client.outbound_port, "ledger")
    try:
        assert held.get() == 200
        connections = stat(server, inbound_cx)
        assert connections >= 1
        modified = stat(server, "listener_manager.listener_modified")
        version = eventually(lambda: ecds_acked(mesh, server.instance), what="first ECDS ACK")

        # ALLOW the caller: still served.
        version = converge(mesh, server.instance, version, allow_from("teller"))
        assert held.get() == 200
        # Tighten: the caller's principal is no longer in the ALLOW rule.
        version = converge(mesh, server.instance, version, allow_from("someone-else"))
        assert held.get() == 403
        # Loosen again.
        version = converge(mesh, server.instance, version, allow_from("teller"))
        assert held.get() == 200
        # A DENY added beside the ALLOW wins for its paths only.
        version = converge(mesh, server.instance, version, DENY_ADMIN)
        assert held.get("/admin/users") == 403
        assert held.get("/orders") == 200
        # RequestAuthentication: before it, a token is not looked at; after it, a bad one is 401.
        assert held.get(token="not-a-jwt") == 200
        version = converge(mesh, server.instance, version, REQUEST_AUTHN)
        assert held.get(token="not-a-jwt") == 401
        assert held.get() == 200  # no token: allowed, as Istio does without a requirement

        # The whole time: one connection between the sidecars, and no listener rebuilt.
        assert stat(server, inbound_cx) == connections
        assert stat(server, "listener_manager.listener_modified") == modified
        assert mesh.pilot_metric("pilot_xds_nacks_total") == 0
    finally:
        held.close()
