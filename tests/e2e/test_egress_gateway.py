"""Istio's egress pattern on the wire: a sidecar's plain HTTP request for an external
host goes over mesh mTLS to an egress gateway (chosen by SNI, its server ISTIO_MUTUAL),
which originates TLS to the external server and verifies it against the CA a
DestinationRule names.

The "external" server is a local HTTPS server that speaks TLS only, so a reply proves
the egress gateway originated TLS; the egress gateway's own request counter proves the
sidecar did not go direct.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.procs import free_port
from tests.e2e.harness import Mesh, Reply, Workload, eventually
from tests.e2e.tls_server import HttpsServer, make_pki

pytestmark = pytest.mark.e2e

EXTERNAL = "external.example"
EGRESS_HOST = "egressgateway.istio-system.svc.cluster.local"


def _config(gateway_port: int, external_port: int, ca: Path) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: external, namespace: default}}
spec:
  hosts: [{EXTERNAL}]
  location: MESH_EXTERNAL
  ports:
  - {{number: 80, name: http, protocol: HTTP}}
  - {{number: 443, name: https, protocol: HTTPS}}
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {external_port}, https: {external_port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: egress, namespace: istio-system}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: {gateway_port}, name: https, protocol: HTTPS}}
    hosts: [{EXTERNAL}]
    tls: {{mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: egressgateway-for-external, namespace: default}}
spec:
  host: {EGRESS_HOST}
  trafficPolicy:
    tls: {{mode: ISTIO_MUTUAL, sni: {EXTERNAL}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: external-through-egress, namespace: default}}
spec:
  hosts: [{EXTERNAL}]
  gateways: [mesh, istio-system/egress]
  http:
  - match: [{{gateways: [mesh]}}]
    route: [{{destination: {{host: {EGRESS_HOST}, port: {{number: 9080}}}}}}]
  - match: [{{gateways: [istio-system/egress]}}]
    route: [{{destination: {{host: {EXTERNAL}, port: {{number: 443}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: originate-tls-for-external, namespace: default}}
spec:
  host: {EXTERNAL}
  trafficPolicy:
    portLevelSettings:
    - port: {{number: 443}}
      tls: {{mode: SIMPLE, caCertificates: {ca}, sni: {EXTERNAL}}}
"""


class Egress:
    def __init__(self, mesh: Mesh, gateway: Workload, client: Workload, port: int) -> None:
        self.mesh, self.gateway, self.client, self.port = mesh, gateway, client, port

    def gateway_requests(self) -> int:
        name = f"http.gateway_{self.port}_https.downstream_rq_total"
        for line in self.gateway.admin(f"/stats?filter=^{name}$").splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0


@pytest.fixture(scope="module")
def egress(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Egress]:
    workdir = Path(tmp_path_factory.mktemp("egress"))
    pki = make_pki(workdir, EXTERNAL)
    with Mesh.running(workdir, envoy_bin, citadel=True) as mesh:
        with HttpsServer(pki, mutual=False) as external:
            port = free_port()
            gateway = mesh.gateway("egressgateway", identity_sa="egressgateway")
            gateway.inbound_port = port  # the catalog sends mesh traffic to its server port
            mesh.register(gateway, check=False)
            client = mesh.client("sleep", service_account="sleep")
            mesh.apply(_config(port, external.port, pki["ca"]))
            yield Egress(mesh, gateway, client, port)


@pytest.mark.compat
def test_mesh_traffic_for_an_external_host_leaves_through_the_egress_gateway(
    egress: Egress,
) -> None:
    before = egress.gateway_requests()

    def answered() -> Reply | None:
        reply = Mesh.request(egress.client.outbound_port, EXTERNAL)
        return reply if reply.status == 200 else None

    reply = eventually(answered, timeout=30, what="the external host, through the egress gateway")
    assert reply is not None
    assert reply.instance == "tls-server"  # it speaks TLS only: the gateway originated it
    assert isinstance(reply.body, dict) and reply.body["host"] == EXTERNAL
    assert egress.gateway_requests() > before


def test_the_egress_gateway_admits_only_mesh_identities(egress: Egress) -> None:
    """Its ISTIO_MUTUAL server refuses a caller without a mesh certificate: plain HTTP
    and TLS without a client certificate both fail."""
    eventually(
        lambda: f"gateway_127.0.0.1_{egress.port}" in egress.gateway.admin("/listeners"),
        what="the egress gateway's listener",
    )
    with pytest.raises(OSError):
        Mesh.request(egress.port, EXTERNAL, timeout=3)
    ctx = ssl.create_default_context(cafile=str(egress.mesh.citadel_state / "root-cert.pem"))
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", egress.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with ctx.wrap_socket(raw, server_hostname=EXTERNAL) as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: external.example\r\n\r\n")
                if not tls.recv(1):
                    raise ConnectionResetError("closed without a reply")
