"""AuthorizationPolicy CUSTOM on the wire: an external authorizer the test runs decides.

Pilot is given a mesh config with an `envoyExtAuthzHttp` provider whose service is
in the Consul catalog. A CUSTOM policy sends /admin requests to it; other paths
never reach it. The authorizer's verdict, its headers (upstream on allow,
downstream on deny), a DENY policy applied after it, and a dead authorizer
(fail closed) are all checked through a real sidecar.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from meshctl.procs import free_port
from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = pytest.mark.e2e

AUTHZ_SERVICE_PORT = 8000
MESH_CONFIG = f"""
extensionProviders:
- name: shop-authz
  envoyExtAuthzHttp:
    service: ext-authz.default.svc.cluster.local
    port: {AUTHZ_SERVICE_PORT}
    timeout: 2s
    pathPrefix: /check
    includeRequestHeadersInCheck: [x-user]
    headersToUpstreamOnAllow: [x-user-id]
    headersToDownstreamOnDeny: [x-deny-reason]
"""

CUSTOM = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: admin-check, namespace: default}
spec:
  action: CUSTOM
  provider: {name: shop-authz}
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
"""

DENY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-secrets, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin/secrets"]}}]}]
"""


class Authorizer(http.server.BaseHTTPRequestHandler):
    """Allows alice (x-user), denies anyone else; records the paths it was asked."""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).asked.append(self.path)
        if self.headers.get("x-user") == "alice":
            self.send_response(200)
            self.send_header("x-user-id", "alice-42")
            self.send_header("x-not-forwarded", "1")
            self.end_headers()
        else:
            body = b"denied by the authorizer\n"
            self.send_response(403)
            self.send_header("x-deny-reason", "not alice")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_POST = do_DELETE = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mesh(envoy_bin: str, tmp_path: Path) -> Iterator[tuple[Mesh, http.server.HTTPServer]]:
    config = tmp_path / "mesh-config.yaml"
    config.write_text(MESH_CONFIG)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Authorizer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    m = Mesh(tmp_path, envoy=envoy_bin)
    try:
        m.start_consul()
        m.start_galley()
        m.start_pilot(extra_args=(f"--mesh-config={config}",))
        yield m, server
    finally:
        m.stop()
        server.shutdown()
        server.server_close()


def _register_authorizer(mesh: Mesh, port: int) -> None:
    out = mesh.meshctl(
        "register",
        f"--consul-addr={mesh.agent_addr}",
        "--service=ext-authz",
        "--namespace=default",
        "--id=ext-authz-1",
        "--address=127.0.0.1",
        f"--port={port}",
        f"--service-port={AUTHZ_SERVICE_PORT}",
    )
    assert out.returncode == 0, out.stderr


def _get(mesh: Mesh, client: Workload, path: str, user: str | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    headers = {"Host": "backend"}
    if user:
        headers["x-user"] = user
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"http://127.0.0.1:{client.outbound_port}{path}", headers=headers)
    try:
        with opener.open(req, timeout=10) as resp:
            import json

            return resp.status, {"headers": dict(resp.headers), "body": json.loads(resp.read())}
    except urllib.error.HTTPError as err:
        return err.code, {"headers": dict(err.headers), "body": err.read().decode()}


@pytest.mark.compat
def test_custom_policy_asks_the_external_authorizer(
    mesh: tuple[Mesh, http.server.HTTPServer],
) -> None:
    m, server = mesh
    _register_authorizer(m, server.server_address[1])
    m.add("backend", "backend-1")
    client = m.client("client")
    eventually(lambda: _get(m, client, "/admin/x")[0] == 200, what="backend reachable")
    m.apply(CUSTOM)

    # Bob is refused by the authorizer: its status, body and chosen header reach him.
    status, reply = eventually(
        lambda: (r := _get(m, client, "/admin/panel", "bob"))[0] == 403 and r,
        what="the authorizer's verdict in force",
    )
    assert "denied by the authorizer" in reply["body"]
    assert reply["headers"].get("x-deny-reason") == "not alice"
    assert "/check/admin/panel" in Authorizer.asked  # pathPrefix, then the request path

    # Alice is allowed; the authorizer's x-user-id reaches the app, its other headers not.
    status, reply = _get(m, client, "/admin/panel", "alice")
    assert status == 200, reply
    seen = {k.lower(): v for k, v in reply["body"]["headers"].items()}
    assert seen.get("x-user-id") == "alice-42"
    assert "x-not-forwarded" not in seen

    # Paths the CUSTOM rules do not select never reach the authorizer.
    before = len(Authorizer.asked)
    assert _get(m, client, "/public", "bob")[0] == 200
    assert len(Authorizer.asked) == before

    # DENY still applies after an allowing authorizer (CUSTOM, then DENY, then ALLOW).
    m.apply(DENY)
    eventually(
        lambda: _get(m, client, "/admin/secrets", "alice")[0] == 403, what="DENY after CUSTOM"
    )
    assert _get(m, client, "/admin/panel", "alice")[0] == 200

    # The authorizer gone: fail closed (403), while unselected paths still work.
    server.shutdown()
    server.server_close()
    eventually(lambda: _get(m, client, "/admin/panel", "alice")[0] == 403, what="fail closed")
    assert _get(m, client, "/public")[0] == 200
    assert m.pilot_metric("pilot_xds_nacks_total") == 0


def test_custom_policy_with_an_unknown_provider_denies(
    mesh: tuple[Mesh, http.server.HTTPServer],
) -> None:
    m, _ = mesh
    m.add("backend", "backend-1")
    client = m.client("client")
    eventually(lambda: _get(m, client, "/admin/x")[0] == 200, what="backend reachable")
    m.apply(CUSTOM.replace("shop-authz", "nobody"))
    eventually(lambda: _get(m, client, "/admin/x", "alice")[0] == 403, what="fail closed")
    assert _get(m, client, "/public")[0] == 200
