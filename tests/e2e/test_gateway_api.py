"""The Gateway API on the wire: Istio's and the Gateway API project's own example YAML
(tests/e2e/examples/, applied unchanged) served by real Envoy from real Consul.

- Istio's bookinfo Gateway + HTTPRoute: the ingress gateway proxy for the Gateway
  `bookinfo-gateway` (`meshctl bootstrap --gateway bookinfo-gateway`) serves it on
  port 80 of its own loopback address.
- Istio's reviews 90/10 HTTPRoute whose parent is the Service `reviews` (GAMMA): a
  sidecar's requests to reviews split between the reviews-v1 and reviews-v2 services;
  a consumer route (in the client's namespace) wins for that namespace only.
- The Gateway API's HTTP routing example (hostnames, a header match), TCP routing
  example and TLS passthrough example, on Gateways of a GatewayClass that names this
  mesh's controller; and Istio's tcp-echo 80/20 TCPRoute.
- Status: Galley reports each route's Accepted/ResolvedRefs conditions.

Every gateway listens on its own 127.0.0.x address, so the examples' ports (80, 443,
8080) are used as written without clashing with anything on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import socketserver
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from meshctl.procs import free_port
from tests.e2e.harness import Mesh, Workload, eventually
from tests.e2e.tls_server import HttpsServer, make_pki

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).parent / "examples"
CLASS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: example-gateway-class}
spec: {controllerName: istio.io/gateway-controller}
"""
# The Gateway of Istio's tcp-echo sample (its file also holds Kubernetes Services).
TCP_ECHO_GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tcp-echo-gateway}
spec:
  gatewayClassName: istio
  listeners:
  - name: tcp-31400
    protocol: TCP
    port: 31400
    allowedRoutes:
      kinds:
      - kind: TCPRoute
"""


class EchoServer:
    """A TCP server that says its name, then echoes what it is sent."""

    def __init__(self, name: str) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(f"{name}\n".encode())
                while data := self.request.recv(4096):
                    self.request.sendall(data)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Env:
    mesh: Mesh
    client: Workload
    addresses: dict[str, str]  # gateway name -> its loopback address
    tls_ca: Path

    def apply_file(self, *names: str, namespace: str = "default") -> None:
        for name in names:
            out = self.mesh.meshctl(
                "apply",
                "-f",
                str(EXAMPLES / name),
                f"--namespace={namespace}",
                *self.mesh.galley_args(),
            )
            assert out.returncode == 0, out.stderr + out.stdout

    def http(
        self, gateway: str, port: int, host: str, path: str = "/", **headers: str
    ) -> tuple[int, str]:
        req = urllib.request.Request(
            f"http://{self.addresses[gateway]}:{port}{path}", headers={"Host": host, **headers}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read()).get("instance", "")
        except urllib.error.HTTPError as err:
            return err.code, ""

    def tcp_hello(self, gateway: str, port: int) -> str:
        with socket.create_connection((self.addresses[gateway], port), timeout=5) as s:
            s.sendall(b"ping\n")
            data = b""
            while b"ping" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        name, _, rest = data.decode().partition("\n")
        assert rest == "ping\n", data
        return name

    def status(self, kind: str, name: str, namespace: str = "default") -> dict[str, object]:
        out = self.mesh.meshctl(
            "get", kind, name, f"--namespace={namespace}", "-o", "json", *self.mesh.galley_args()
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout).get("status", {})


def _loopback(i: int) -> str:
    return f"127.0.{100 + i}.{free_port() % 200 + 2}"


def _backend(
    mesh: Mesh,
    service: str,
    instance: str,
    port: int,
    *,
    app_port: int | None = None,
    protocol: str = "http",
    namespace: str = "default",
) -> Workload:
    """A backend without a sidecar: the catalog points at the app itself."""
    w = Workload(service, instance, namespace, {})
    if app_port is None:
        mesh.start_app(w)
        app_port = w.app_port
    out = mesh.meshctl(
        "register",
        f"--consul-addr={mesh.agent_addr}",
        f"--service={service}",
        f"--namespace={namespace}",
        f"--id={instance}",
        "--address=127.0.0.1",
        f"--port={app_port}",
        f"--service-port={port}",
        f"--protocol={protocol}",
    )
    assert out.returncode == 0, out.stderr
    return w


@pytest.fixture(scope="module")
def env(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = Path(tmp_path_factory.mktemp("gateway-api"))
    pki = make_pki(workdir, "foo.example.com")
    echoes = {name: EchoServer(name) for name in ("tcp-echo-v1", "tcp-echo-v2", "my-foo-service")}
    with Mesh.running(workdir, envoy_bin) as mesh, HttpsServer(pki, mutual=False) as tls:
        try:
            for service in ("productpage", "example-svc", "bar-svc", "bar-svc-canary"):
                port = {"productpage": 9080, "example-svc": 80}.get(service, 8080)
                _backend(mesh, service, f"{service}-1", port)
            for service in ("reviews", "reviews-v1", "reviews-v2"):
                _backend(mesh, service, f"{service}-1", 9080)
            for name, echo in echoes.items():
                port = 6000 if name == "my-foo-service" else 9000
                _backend(mesh, name, f"{name}-1", port, app_port=echo.port, protocol="tcp")
            _backend(
                mesh,
                "foo-svc",
                "foo-svc-1",
                443,
                app_port=tls.port,
                protocol="tcp",
                namespace="tls",
            )
            addresses = {}
            for i, (gw, ns) in enumerate(
                [
                    ("bookinfo-gateway", "default"),
                    ("example-gateway", "default"),
                    ("my-tcp-gateway", "default"),
                    ("tcp-echo-gateway", "default"),
                    ("example-gateway", "tls"),
                ]
            ):
                addresses[f"{ns}/{gw}"] = address = _loopback(i)
                mesh.gateway(gw, namespace=ns, address=address, instance=f"{gw}-{ns}")
            client = mesh.client("tester")
            yield Env(mesh, client, addresses, pki["ca"])
        finally:
            for echo in echoes.values():
                echo.close()


@pytest.mark.compat
def test_istio_bookinfo_gateway_serves_the_productpage(env: Env) -> None:
    env.apply_file("istio/bookinfo-gateway.yaml")
    gw = "default/bookinfo-gateway"
    eventually(
        lambda: env.http(gw, 80, "bookinfo.example.com", "/productpage") == (200, "productpage-1"),
        timeout=30,
        what="the productpage through the Gateway API gateway",
    )
    assert env.http(gw, 80, "any.host", "/static/style.css")[0] == 200  # PathPrefix
    assert env.http(gw, 80, "any.host", "/productpage/other")[0] == 404  # Exact
    assert env.http(gw, 80, "any.host", "/admin")[0] == 404
    conds = {
        c["type"]: c["status"]
        for c in env.status("httproute", "bookinfo")["parents"][0]["conditions"]
    }
    assert conds == {"Accepted": "True", "ResolvedRefs": "True"}
    gateway = env.status("gtw", "bookinfo-gateway")
    assert gateway["listeners"][0]["attachedRoutes"] == 1


@pytest.mark.compat
def test_istio_reviews_canary_splits_mesh_traffic_90_10(env: Env) -> None:
    env.apply_file("istio/route-reviews-90-10.yaml")
    host = "reviews.default.svc.cluster.local:9080"
    eventually(
        lambda: env.mesh.request(env.client.outbound_port, host).instance == "reviews-v2-1",
        timeout=30,
        what="the canary reached through the mesh route",
    )
    seen = {"reviews-v1-1": 0, "reviews-v2-1": 0}
    n = 1000
    for _ in range(n):
        reply = env.mesh.request(env.client.outbound_port, host)
        key = reply.instance or f"status-{reply.status}"
        seen[key] = seen.get(key, 0) + 1
    # 10 % of 1,000: 100 ± 4.5 standard deviations (one deviation: 9.5).
    assert seen["reviews-v1-1"] + seen["reviews-v2-1"] == n, seen
    assert 57 <= seen["reviews-v2-1"] <= 143, seen


def test_gateway_api_http_routing_by_hostname_and_header(env: Env) -> None:
    out = env.mesh.apply(CLASS)
    assert out.returncode == 0, out.stderr
    env.apply_file("gateway-api/http-routing-gateway.yaml", "gateway-api/bar-httproute.yaml")
    gw = "default/example-gateway"
    eventually(
        lambda: env.http(gw, 80, "bar.example.com", env="canary") == (200, "bar-svc-canary-1"),
        timeout=30,
        what="the header-matched canary",
    )
    assert env.http(gw, 80, "bar.example.com") == (200, "bar-svc-1")
    assert env.http(gw, 80, "example.com") == (200, "example-svc-1")
    assert env.http(gw, 80, "unknown.example.com")[0] == 404
    # Only its own Gateway's listeners: the bookinfo route is not served here.
    assert env.http(gw, 80, "bar.example.com", "/productpage") == (200, "bar-svc-1")


def test_gateway_api_tcp_routing(env: Env) -> None:
    out = env.mesh.apply(CLASS)
    assert out.returncode == 0, out.stderr
    env.apply_file("gateway-api/tcp-routing-gateway.yaml", "gateway-api/tcp-route.yaml")
    eventually(
        lambda: env.tcp_hello("default/my-tcp-gateway", 8080) == "my-foo-service",
        timeout=30,
        what="TCP through the Gateway API gateway",
    )


def test_istio_tcp_echo_splits_80_20(env: Env) -> None:
    out = env.mesh.apply(TCP_ECHO_GATEWAY)
    assert out.returncode == 0, out.stderr
    env.apply_file("istio/tcp-echo-20-v2.yaml")
    gw = "default/tcp-echo-gateway"
    eventually(lambda: env.tcp_hello(gw, 31400) == "tcp-echo-v2", timeout=30, what="the 20 % share")
    n = 500
    v2 = sum(env.tcp_hello(gw, 31400) == "tcp-echo-v2" for _ in range(n))
    # 20 % of 500: 100 ± 4.5 standard deviations (one deviation: 8.9).
    assert 60 <= v2 <= 140, v2


def test_gateway_api_tls_passthrough_by_sni(env: Env) -> None:
    out = env.mesh.apply(CLASS)
    assert out.returncode == 0, out.stderr
    env.apply_file(
        "gateway-api/tls-routing-gateway.yaml", "gateway-api/tls-route.yaml", namespace="tls"
    )
    address = env.addresses["tls/example-gateway"]

    def served() -> x509.Certificate:
        ctx = ssl.create_default_context(cafile=str(env.tls_ca))
        with socket.create_connection((address, 443), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="foo.example.com") as tls:
                der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)

    cert = eventually(served, timeout=30, what="the backend's certificate through passthrough")
    assert cert.subject.rfc4514_string() == "CN=foo.example.com"
    status = env.status("gtw", "example-gateway", namespace="tls")
    listeners = {entry["name"]: entry for entry in status["listeners"]}
    assert listeners["tls"]["attachedRoutes"] == 1
    # Its Terminate listener names a Secret nobody created: never served in plaintext.
    with pytest.raises(OSError):
        with socket.create_connection((address, 8443), timeout=2) as raw:
            ssl.create_default_context(cafile=str(env.tls_ca)).wrap_socket(
                raw, server_hostname="foo.example.com"
            )


CONSUMER_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews-for-shop, namespace: shop}
spec:
  parentRefs:
  - {group: "", kind: Service, name: reviews, namespace: default, port: 9080}
  rules:
  - backendRefs: [{name: reviews-v2, namespace: default, port: 9080}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: shop-routes, namespace: default}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop}]
  to: [{group: "", kind: Service}]
"""


def test_a_consumer_route_applies_to_its_own_namespace_only(env: Env) -> None:
    """GAMMA: a route in the client's namespace whose parent is a Service of another
    namespace sends only that namespace's requests its way, ahead of the Service's own."""
    shopper = env.mesh.client("shopper", namespace="shop")
    host = "reviews.default.svc.cluster.local:9080"
    out = env.mesh.apply(CONSUMER_ROUTE)
    assert out.returncode == 0, out.stderr + out.stdout
    conds = {
        c["type"]: c["status"]
        for c in env.status("httproute", "reviews-for-shop", "shop")["parents"][0]["conditions"]
    }
    assert conds == {"Accepted": "True", "ResolvedRefs": "True"}

    def shop_sees_v2_only() -> bool:
        return all(
            env.mesh.request(shopper.outbound_port, host).instance == "reviews-v2-1"
            for _ in range(20)
        )

    eventually(shop_sees_v2_only, timeout=30, what="shop's requests on shop's own route")
    # default's client is not in the route's namespace: never all on v2 (the Service's own
    # route sends it 90 % to v1, no route at all to the reviews instance itself).
    others = {env.mesh.request(env.client.outbound_port, host).instance for _ in range(20)}
    assert others - {"reviews-v2-1"}, others


def test_status_reports_a_backend_that_does_not_exist(env: Env) -> None:
    out = env.mesh.apply(
        """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken}
spec:
  parentRefs: [{name: bookinfo-gateway}]
  hostnames: [broken.example.com]
  rules: [{backendRefs: [{name: nowhere, port: 9080}]}]
"""
    )
    assert out.returncode == 0, out.stderr
    conds = {
        c["type"]: (c["status"], c["reason"])
        for c in env.status("httproute", "broken")["parents"][0]["conditions"]
    }
    assert conds["ResolvedRefs"] == ("False", "BackendNotFound")
    eventually(
        lambda: env.http("default/bookinfo-gateway", 80, "broken.example.com")[0] == 500,
        timeout=30,
        what="the unresolved backend answers 500",
    )
