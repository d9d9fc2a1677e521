"""HTTPS at the gateway, on the wire: TLS terminated with a credential Citadel serves
over SDS, client certificates for MUTUAL, HTTP->HTTPS redirects, the minimum TLS
version, SNI passthrough to a backend that terminates TLS itself, and a credential
rotated without restarting anything.

The gateway proxy's token carries the gateway role (`meshctl token --gateway`); its
credentials live in its own namespace (`meshctl secret create tls`), and one of
another namespace is never served to it, except to a Gateway API listener whose
certificateRef a ReferenceGrant in that namespace allows, for as long as it does.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from meshctl.procs import free_port
from tests.e2e.harness import Mesh, Workload, eventually
from tests.e2e.tls_server import HttpsServer, ThrowawayCa, make_pki

pytestmark = pytest.mark.e2e

SHOP = "shop.example.com"
API = "api.example.com"
OTHER = "other.example.com"
BACKEND = "backend.example.com"
CROSS = "cross.example.com"


class Env:
    def __init__(self, mesh: Mesh, gw: Workload, pki: ThrowawayCa) -> None:
        self.mesh, self.gw, self.pki = mesh, gw, pki
        self.https_port, self.http_port, self.pass_port = free_port(), free_port(), free_port()
        self.certs: dict[str, x509.Certificate] = {}

    def secret(self, name: str, namespace: str, dns: str, *, ca: bool = False) -> None:
        cert_file, key_file, cert = self.pki.leaf(name, dns, dns=dns)
        extra = [f"--ca-cert={self.pki.ca_file}"] if ca else []
        out = self.mesh.meshctl(
            "secret",
            "create",
            "tls",
            name,
            f"--cert={cert_file}",
            f"--key={key_file}",
            *extra,
            f"--namespace={namespace}",
            *self.mesh.citadel_admin_args(),
        )
        assert out.returncode == 0, out.stderr
        assert "PRIVATE KEY" not in out.stdout + out.stderr
        self.certs[name] = cert

    def tls_context(self, *, client: str | None = None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.pki.ca_file)
        if client is not None:
            cert_file, key_file, _ = self.pki.leaf(client, f"{client}.example.com")
            ctx.load_cert_chain(cert_file, key_file)
        return ctx

    def served_cert(self, sni: str, port: int | None = None) -> x509.Certificate:
        """The certificate the gateway presents for `sni` (no verification: just look)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port or self.https_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)

    def get(self, sni: str, ctx: ssl.SSLContext, port: int | None = None) -> int:
        """GET / over TLS with `sni` (the certificate is checked against that name)."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.https_port, timeout=5)
        raw = socket.create_connection(("127.0.0.1", port or self.https_port), timeout=5)
        try:
            conn.sock = ctx.wrap_socket(raw, server_hostname=sni)
        except BaseException:
            raw.close()
            raise
        try:
            conn.request("GET", "/", headers={"Host": sni})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def active_secrets(self) -> set[str]:
        dump = json.loads(self.gw.admin("/config_dump?resource=dynamic_active_secrets"))
        return {c.get("name", "") for c in dump.get("configs", [])}


def _gateway_config(env: Env) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge, namespace: istio-system}}
spec:
  selector: {{istio: edge}}
  servers:
  - port: {{number: {env.https_port}, name: https-shop, protocol: HTTPS}}
    hosts: [{SHOP}]
    tls: {{mode: SIMPLE, credentialName: shop-cert, minProtocolVersion: TLSV1_3}}
  - port: {{number: {env.https_port}, name: https-api, protocol: HTTPS}}
    hosts: [{API}]
    tls: {{mode: MUTUAL, credentialName: api-cert}}
  - port: {{number: {env.https_port}, name: https-other, protocol: HTTPS}}
    hosts: [{OTHER}]
    tls: {{mode: SIMPLE, credentialName: elsewhere-cert}}
  - port: {{number: {env.http_port}, name: http-shop, protocol: HTTP}}
    hosts: [{SHOP}]
    tls: {{httpsRedirect: true}}
  - port: {{number: {env.pass_port}, name: tls-backend, protocol: TLS}}
    hosts: [{BACKEND}]
    tls: {{mode: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: edge, namespace: default}}
spec:
  hosts: [{SHOP}, {API}, {OTHER}]
  gateways: [istio-system/edge]
  http: [{{route: [{{destination: {{host: frontpage, port: {{number: 9080}}}}}}]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: backend-passthrough, namespace: default}}
spec:
  hosts: [{BACKEND}]
  gateways: [istio-system/edge]
  tls:
  - match: [{{sniHosts: [{BACKEND}]}}]
    route: [{{destination: {{host: tls-backend, port: {{number: 9080}}}}}}]
"""


@pytest.fixture(scope="module")
def env(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = Path(tmp_path_factory.mktemp("gateway-tls"))
    backend_pki = make_pki(workdir, BACKEND)
    with Mesh.running(workdir, envoy_bin, citadel=True) as mesh:
        with HttpsServer(backend_pki, mutual=False) as backend:
            mesh.add("frontpage", "frontpage-v1")
            tls_backend = Workload("tls-backend", "tls-backend-1", "default", {})
            tls_backend.inbound_port = backend.port
            mesh.register(tls_backend, check=False)
            gw = mesh.gateway("edge", identity_sa="edge-gateway")
            e = Env(mesh, gw, ThrowawayCa(workdir / "gateway-pki", "gateway-test-ca"))
            e.secret("shop-cert", "istio-system", SHOP)
            e.secret("api-cert", "istio-system", API, ca=True)
            e.secret("elsewhere-cert", "default", OTHER)  # another namespace's credential
            mesh.apply(_gateway_config(e))
            eventually(
                lambda: f"gateway_127.0.0.1_{e.pass_port}" in gw.admin("/listeners"),
                timeout=30,
                what="the gateway's TLS listeners",
            )
            yield e


@pytest.mark.compat
def test_simple_tls_serves_the_credential_from_citadel(env: Env) -> None:
    served = eventually(lambda: env.served_cert(SHOP), what="the shop's certificate served")
    assert served == env.certs["shop-cert"]
    assert env.get(SHOP, env.tls_context()) == 200
    # The SNI picks the chain: the API's certificate for its own name.
    assert eventually(lambda: env.served_cert(API)) == env.certs["api-cert"]


def test_min_protocol_version_refuses_older_clients(env: Env) -> None:
    eventually(lambda: env.served_cert(SHOP), what="the shop's certificate served")
    old = env.tls_context()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        env.get(SHOP, old)
    current = env.tls_context()
    current.minimum_version = ssl.TLSVersion.TLSv1_3
    assert env.get(SHOP, current) == 200


def test_mutual_tls_admits_only_clients_with_a_certificate_from_the_ca(env: Env) -> None:
    eventually(lambda: env.served_cert(API), what="the API's certificate served")
    assert env.get(API, env.tls_context(client="partner")) == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        env.get(API, env.tls_context())  # no client certificate
    stranger = ThrowawayCa(env.pki.dir.parent / "stranger-pki", "stranger-ca")
    ctx = env.tls_context()
    cert_file, key_file, _ = stranger.leaf("stranger", "stranger.example.com")
    ctx.load_cert_chain(cert_file, key_file)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        env.get(API, ctx)  # a certificate from another CA


def test_a_credential_of_another_namespace_is_not_served(env: Env) -> None:
    eventually(lambda: env.served_cert(SHOP), what="the gateway serves its own credentials")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        env.served_cert(OTHER)
    active = env.active_secrets()
    assert "kubernetes://shop-cert" in active
    assert "kubernetes://elsewhere-cert" not in active


def test_http_redirects_to_https(env: Env) -> None:
    def redirect() -> str | None:
        conn = http.client.HTTPConnection("127.0.0.1", env.http_port, timeout=5)
        try:
            conn.request("GET", "/cart?item=1", headers={"Host": SHOP})
            resp = conn.getresponse()
            resp.read()
            return resp.getheader("location") if resp.status == 301 else None
        finally:
            conn.close()

    location = eventually(redirect, what="the redirect on the plain HTTP port")
    assert location == f"https://{SHOP}/cart?item=1"


def test_passthrough_relays_tls_to_the_backend_by_sni(env: Env) -> None:
    served = eventually(
        lambda: env.served_cert(BACKEND, env.pass_port), what="the backend's own certificate"
    )
    assert served.subject.rfc4514_string() == f"CN={BACKEND}"  # not a gateway credential
    ctx = ssl.create_default_context(cafile=str(env.mesh.workdir / "ca.pem"))
    assert env.get(BACKEND, ctx, env.pass_port) == 200
    with pytest.raises((ssl.SSLError, ConnectionError)):
        env.served_cert("unrouted.example.com", env.pass_port)  # no chain for that name


def test_a_rotated_credential_is_served_without_a_restart(env: Env) -> None:
    before = eventually(lambda: env.served_cert(SHOP), what="the shop's certificate served")
    env.secret("shop-cert", "istio-system", SHOP)
    after = eventually(
        lambda: (c := env.served_cert(SHOP)) != before and c, what="the new certificate served"
    )
    assert after == env.certs["shop-cert"]
    assert env.get(SHOP, env.tls_context()) == 200


def _cross_namespace_config(port: int) -> str:
    """A Gateway API Gateway in `storefront` whose certificate is a Secret of `certs`,
    granted there; its route (in `default`, beside the backend) sends to the frontpage."""
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: shopfront, namespace: storefront}}
spec:
  gatewayClassName: istio
  listeners:
  - name: https
    port: {port}
    protocol: HTTPS
    hostname: {CROSS}
    tls:
      mode: Terminate
      certificateRefs: [{{name: cross-cert, namespace: certs}}]
    allowedRoutes: {{namespaces: {{from: All}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shopfront, namespace: default}}
spec:
  parentRefs: [{{name: shopfront, namespace: storefront}}]
  rules: [{{backendRefs: [{{name: frontpage, port: 9080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {{name: storefront-gateways, namespace: certs}}
spec:
  from: [{{group: gateway.networking.k8s.io, kind: Gateway, namespace: storefront}}]
  to: [{{group: "", kind: Secret, name: cross-cert}}]
"""


def test_a_granted_certificate_of_another_namespace_is_served_until_the_grant_goes(
    env: Env,
) -> None:
    mesh, port = env.mesh, free_port()
    env.secret("cross-cert", "certs", CROSS)
    gw = mesh.gateway("shopfront", namespace="storefront", identity_sa="shopfront-gw")
    mesh.apply(_cross_namespace_config(port))

    served = eventually(
        lambda: env.served_cert(CROSS, port), timeout=30, what="certs' certificate served"
    )
    assert served == env.certs["cross-cert"]
    assert served.subject.rfc4514_string() == f"CN={CROSS}"
    san = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [CROSS]
    assert env.get(CROSS, env.tls_context(), port) == 200  # verified against CROSS
    active = json.loads(gw.admin("/config_dump?resource=dynamic_active_secrets"))
    names = {c.get("name") for c in active.get("configs", [])}
    assert "kubernetes-gateway://certs/cross-cert" in names
    assert _listener_condition(mesh, "ResolvedRefs") == ("True", "ResolvedRefs")

    out = mesh.meshctl(
        "delete", "referencegrants", "storefront-gateways", "-n", "certs", *mesh.galley_args()
    )
    assert out.returncode == 0, out.stderr
    assert _listener_condition(mesh, "ResolvedRefs") == ("False", "RefNotPermitted")

    def refused() -> bool:
        try:
            env.served_cert(CROSS, port)
        except (ssl.SSLError, ConnectionError):
            return True
        return False

    eventually(refused, timeout=30, what="the handshake refused once the grant is gone")


def _listener_condition(mesh: Mesh, kind: str) -> tuple[str, str]:
    """The Gateway `storefront/shopfront`'s listener condition `kind`, as Galley reports it."""
    out = mesh.meshctl(
        "get", "gtw", "shopfront", "-n", "storefront", "-o", "json", *mesh.galley_args()
    )
    assert out.returncode == 0, out.stderr
    listener = json.loads(out.stdout)["status"]["listeners"][0]
    cond = {c["type"]: c for c in listener["conditions"]}[kind]
    return cond["status"], cond["reason"]
