"""Mutual TLS between sidecars with identities from Citadel, checked on the wire."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from citadel.ca import CertificateAuthority
from pilot.networking import names
from tests.e2e.harness import Mesh, Workload, eventually
from tests.e2e.tls_server import make_pki

pytestmark = [pytest.mark.e2e, pytest.mark.compat]


@pytest.fixture(scope="module")
def mesh(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    m = Mesh(Path(tmp_path_factory.mktemp("mtls")), envoy=envoy_bin)
    try:
        m.start_consul()
        m.start_citadel()
        m.start_galley()
        m.start_pilot(tls=True)
        yield m
    finally:
        m.stop()


def tls_handshake(
    port: int, root: bytes, cert: Path | None = None, key: Path | None = None
) -> x509.Certificate:
    """Connect straight to a sidecar's inbound port; return the server's certificate."""
    ctx = ssl.create_default_context(cadata=root.decode())
    ctx.check_hostname = False
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = tls.recv(1024)
        assert reply.startswith(b"HTTP/1.1 200"), reply
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def plaintext_works(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(1024).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def header(body: object, name: str) -> str:
    headers = body.get("headers", {}) if isinstance(body, dict) else {}
    return next((v for k, v in headers.items() if k.lower() == name), "")


def uri_sans(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return ext.value.get_values_for_type(x509.UniformResourceIdentifier)


def client_cert(mesh: Mesh, tmp: Path, sa: str) -> tuple[Path, Path]:
    """A cert from the mesh CA for a test identity (the test reads Citadel's key file)."""
    ca = CertificateAuthority.load_or_create(mesh.citadel_state, "cluster.local")
    issued = ca.issue("default", sa, datetime.timedelta(hours=1))
    cert, key = tmp / f"{sa}.pem", tmp / f"{sa}.key"
    cert.write_bytes(issued.cert_chain_pem)
    key.write_bytes(issued.key_pem)
    return cert, key


def strict(mesh: Mesh, name: str) -> None:
    mesh.apply(f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: default}}
spec:
  mtls: {{mode: STRICT}}
""")


def test_strict_mtls_between_sidecars(mesh: Mesh, tmp_path: Path) -> None:
    server = mesh.add("secure", "secure-1", service_account="secure-sa")
    client = mesh.client("client", service_account="client-sa")
    eventually(lambda: mesh.request(client.outbound_port, "secure").status == 200)
    strict(mesh, "default")
    eventually(lambda: not plaintext_works(server.inbound_port), what="plaintext refused")
    # Traffic between the sidecars flows, over mTLS, and the app sees the caller.
    reply = eventually(
        lambda: (r := mesh.request(client.outbound_port, "secure")).status == 200 and r
    )
    xfcc = header(reply.body, "x-forwarded-client-cert")
    assert "URI=spiffe://cluster.local/ns/default/sa/client-sa" in xfcc, xfcc
    secrets = mesh.meshctl(
        "proxy-config", "secrets", "client", f"--pilot-http=127.0.0.1:{mesh.pilot_http}"
    ).stdout
    assert "default" in secrets and "ROOTCA" in secrets and str(mesh.citadel_tls) in secrets
    stats = client.admin("/stats?filter=outbound.*secure.*ssl.handshake")
    assert any(int(line.rsplit(": ", 1)[1]) > 0 for line in stats.splitlines()), stats
    # On the wire: the server presents its SPIFFE identity, chained to the mesh root.
    root = (mesh.citadel_state / "root-cert.pem").read_bytes()
    cert, key = client_cert(mesh, tmp_path, "tester")
    presented = tls_handshake(server.inbound_port, root, cert, key)
    assert uri_sans(presented) == ["spiffe://cluster.local/ns/default/sa/secure-sa"]
    presented.verify_directly_issued_by(x509.load_pem_x509_certificate(root))
    # Without a client certificate, or with one from another CA: refused.
    with pytest.raises((ssl.SSLError, OSError, AssertionError)):
        tls_handshake(server.inbound_port, root)
    foreign = make_pki(tmp_path, "elsewhere")
    with pytest.raises((ssl.SSLError, OSError, AssertionError)):
        tls_handshake(server.inbound_port, root, foreign["client"], foreign["client_key"])
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0


def test_permissive_accepts_both(mesh: Mesh) -> None:
    server = mesh.add("open", "open-1", service_account="open-sa")
    client = mesh.client("client-open", service_account="client-sa")
    mesh.apply("""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: open-permissive, namespace: default}
spec:
  selector: {matchLabels: {version: v1}}
  mtls: {mode: PERMISSIVE}
""")
    eventually(lambda: plaintext_works(server.inbound_port), what="plaintext accepted")
    reply = eventually(
        lambda: (r := mesh.request(client.outbound_port, "open")).status == 200 and r
    )
    assert "spiffe://cluster.local/ns/default/sa/client-sa" in header(
        reply.body, "x-forwarded-client-cert"
    )


def test_server_with_the_wrong_identity_is_refused(mesh: Mesh) -> None:
    # The catalog says the instance runs as expected-sa; its sidecar holds impostor-sa.
    mesh.add("guarded", "guarded-1", service_account="expected-sa", identity="impostor-sa")
    client = mesh.client("client-guarded", service_account="client-sa")
    eventually(
        lambda: mesh.request(client.outbound_port, "guarded").status == 503,
        what="SAN mismatch refused",
    )
    stats = client.admin("/stats?filter=guarded.*ssl.fail_verify_san")
    assert any(int(line.rsplit(": ", 1)[1]) > 0 for line in stats.splitlines()), stats


def get(client_port: int, host: str, path: str = "/", headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{client_port}{path}", headers={"Host": host, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def enforced_policies(mesh: Mesh, w: Workload, filter_name: str) -> set[str]:
    """The AuthorizationPolicy names whose rules the proxy holds in one ECDS filter, once
    Pilot's sync status shows it ACKed the filter configs it was last sent (else empty)."""
    synced = any(
        p["proxy"] == w.instance
        and (ecds := p["types"].get("ecds", {})).get("version_acked")
        and ecds["version_acked"] == ecds["version_sent"]
        for p in mesh.pilot_json("/debug/syncz")["proxies"]
    )
    if not synced:
        return set()
    for config in json.loads(w.filter_configs()).get("configs", []):
        found = config.get("ecds_filter", {})
        if found.get("name") == filter_name:
            keys = found.get("typed_config", {}).get("rules", {}).get("policies", {})
            return {k.split("-policy[", 1)[1].split("]", 1)[0] for k in keys}
    return set()


def test_authorization_policy_allow_deny(mesh: Mesh) -> None:
    orders = mesh.add("orders", "orders-1", version="v7", service_account="orders-sa")
    frontend = mesh.client("frontend", service_account="frontend")
    other = mesh.client("other", service_account="other")
    eventually(lambda: get(frontend.outbound_port, "orders") == 200)
    mesh.apply("""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: orders-allow, namespace: default}
spec:
  selector: {matchLabels: {version: v7}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/frontend"]}
    to:
    - operation: {methods: [GET]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: orders-deny-admin, namespace: default}
spec:
  selector: {matchLabels: {version: v7}}
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/admin*"]}
""")
    # DENY and ALLOW are two ECDS resources, applied by Envoy one after the other: a
    # request that sees the ALLOW in force proves nothing about the DENY. Wait until
    # the orders proxy holds both (and has ACKed them), then check on the wire.
    for filter_name, policy in [
        (names.RBAC_DENY_FILTER, "orders-deny-admin"),
        (names.RBAC_ALLOW_FILTER, "orders-allow"),
    ]:
        eventually(
            lambda f=filter_name, p=policy: p in enforced_policies(mesh, orders, f),
            timeout=30,
            what=f"orders enforces {policy} in {filter_name}",
        )
    assert get(other.outbound_port, "orders") == 403
    assert get(frontend.outbound_port, "orders") == 200
    assert get(frontend.outbound_port, "orders", "/admin/users") == 403  # DENY wins over ALLOW
    assert get(other.outbound_port, "orders", "/admin/users") == 403
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(key: rsa.RSAPrivateKey, claims: dict[str, object]) -> str:
    head = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "k1"}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(sig)}"


def test_request_authentication_with_required_token(mesh: Mesh) -> None:
    mesh.add("billing", "billing-1", version="v8", service_account="billing-sa")
    caller = mesh.client("billing-caller", service_account="frontend")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    jwks = json.dumps(
        {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": "k1",
                    "alg": "RS256",
                    "use": "sig",
                    "n": _b64(numbers.n.to_bytes(256, "big")),
                    "e": _b64(numbers.e.to_bytes(3, "big")),
                }
            ]
        }
    )
    mesh.apply(f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: billing-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{version: v8}}}}
  jwtRules:
  - issuer: test-issuer
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: billing-needs-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{version: v8}}}}
  rules:
  - from:
    - source: {{requestPrincipals: ["test-issuer/*"]}}
""")
    now = int(time.time())
    good = _jwt(key, {"iss": "test-issuer", "sub": "alice", "iat": now, "exp": now + 600})
    forged = _jwt(
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        {"iss": "test-issuer", "sub": "mallory", "iat": now, "exp": now + 600},
    )
    eventually(lambda: get(caller.outbound_port, "billing") == 401, what="no token: 401")
    assert (
        get(caller.outbound_port, "billing", headers={"Authorization": f"Bearer {forged}"}) == 401
    )
    assert get(caller.outbound_port, "billing", headers={"Authorization": f"Bearer {good}"}) == 200
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0


def test_xds_over_tls_verifies_pilots_identity(mesh: Mesh) -> None:
    mesh.add("catalog", "catalog-1", service_account="catalog-sa")
    client = mesh.client("tls-xds-client", service_account="client-sa", xds_tls=True)
    eventually(
        lambda: mesh.request(client.outbound_port, "catalog").status == 200,
        what="config received over TLS xDS",
    )
    assert "ssl.handshake: 1" in client.admin("/stats?filter=cluster.xds-grpc.ssl.handshake")
    # Pilot's TLS port presents the SPIFFE identity the bootstrap pins.
    root = (mesh.citadel_state / "root-cert.pem").read_bytes()
    ctx = ssl.create_default_context(cadata=root.decode())
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", mesh.pilot_tls), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    assert uri_sans(x509.load_der_x509_certificate(der)) == [
        "spiffe://cluster.local/ns/mesh-system/sa/pilot"
    ]


def test_request_authentication_with_jwks_from_a_uri(mesh: Mesh) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()
    jwks = json.dumps(
        {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": "k1",
                    "alg": "RS256",
                    "n": _b64(numbers.n.to_bytes(256, "big")),
                    "e": _b64(numbers.e.to_bytes(3, "big")),
                }
            ]
        }
    ).encode()

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(jwks)))
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        mesh.add("ledger", "ledger-1", version="v9", service_account="ledger-sa")
        caller = mesh.client("ledger-caller", service_account="frontend")
        mesh.apply(f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ledger-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{version: v9}}}}
  jwtRules:
  - issuer: uri-issuer
    jwksUri: http://127.0.0.1:{server.server_address[1]}/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ledger-needs-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{version: v9}}}}
  rules:
  - from:
    - source: {{requestPrincipals: ["uri-issuer/*"]}}
""")
        now = int(time.time())
        good = _jwt(key, {"iss": "uri-issuer", "sub": "bob", "iat": now, "exp": now + 600})
        eventually(lambda: get(caller.outbound_port, "ledger") == 401, what="policy in force")
        eventually(
            lambda: (
                get(caller.outbound_port, "ledger", headers={"Authorization": f"Bearer {good}"})
                == 200
            ),
            what="token verified with the fetched JWKS",
        )
    finally:
        server.shutdown()
        server.server_close()
