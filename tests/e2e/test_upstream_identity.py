"""Who a sidecar accepts as the server, checked on the wire: a ServiceEntry's
subjectAltNames and its endpoints' service accounts (mesh mTLS and TLS a rule
originates), and a DestinationRule's caCrl (a revoked server certificate is refused).

Each case shows both sides: the same request succeeds when the server's certificate
satisfies the config and fails (503, with Envoy's own verification counter saying why)
when it does not, so a check that is silently dropped cannot pass.
"""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from citadel.ca import CertificateAuthority
from tests.e2e.harness import Mesh, Reply, Workload, eventually
from tests.e2e.tls_server import HttpsServer, ThrowawayCa, write_crl

pytestmark = pytest.mark.e2e

TRUST_DOMAIN = "cluster.local"


@pytest.fixture(scope="module")
def mesh(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with Mesh.running(
        Path(tmp_path_factory.mktemp("identity")), envoy=envoy_bin, citadel=True
    ) as m:
        yield m


@pytest.fixture(scope="module")
def client(mesh: Mesh) -> Workload:
    return mesh.client("caller", service_account="caller")


@pytest.fixture(scope="module")
def vm(mesh: Mesh) -> Workload:
    """A workload whose sidecar holds the mesh identity `vm-db`, known to the mesh only
    through the ServiceEntries below (it is not in the catalog)."""
    return mesh.add("vmdb", "vmdb-1", service_account="vm-db", register=False)


def spiffe(account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/default/sa/{account}"


def tls_failures(client: Workload, host: str, stat: str) -> int:
    """Envoy's count of upstream handshakes to `host` that failed verification."""
    lines = client.admin(f"/stats?filter=ssl\\.{stat}$").splitlines()
    return sum(int(line.rsplit(": ", 1)[1]) for line in lines if f"|{host}.ssl." in line)


def refused(mesh: Mesh, client: Workload, host: str, stat: str) -> bool:
    """The request fails, and because the server's certificate failed `stat`."""
    return mesh.request(client.outbound_port, host).status == 503 and (
        tls_failures(client, host, stat) > 0
    )


def answered(mesh: Mesh, client: Workload, host: str) -> Reply | None:
    reply = mesh.request(client.outbound_port, host)
    return reply if reply.status == 200 else None


def xfcc(body: object) -> str:
    headers = body.get("headers", {}) if isinstance(body, dict) else {}
    return next((v for k, v in headers.items() if k.lower() == "x-forwarded-client-cert"), "")


def vm_entry(host: str, vm: Workload, extra: str = "", account: str = "") -> str:
    endpoint = f"{{address: 127.0.0.1, ports: {{http: {vm.inbound_port}}}"
    endpoint += f", serviceAccount: {account}}}" if account else "}"
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {host.split(".")[0]}}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{endpoint}]
{extra}"""


# --- ServiceEntry identities, mesh mTLS ----------------------------------------------------------


def test_endpoint_service_account_is_the_identity_automatic_mtls_checks(
    mesh: Mesh, client: Workload, vm: Workload
) -> None:
    host = "vm-db.mesh.internal"
    mesh.apply(vm_entry(host, vm, account="vm-db"))
    reply = eventually(
        lambda: answered(mesh, client, host), what="automatic mTLS to the entry's endpoint"
    )
    assert reply is not None
    # Over mTLS: the server's sidecar saw the caller's identity.
    assert f"URI={spiffe('caller')}" in xfcc(reply.body), reply.body
    # The same endpoint declared as another workload: its certificate does not match.
    mesh.apply(vm_entry(host, vm, account="billing"))
    eventually(lambda: refused(mesh, client, host, "fail_verify_san"), what="SAN refused")
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0


def test_entry_subject_alt_names_are_checked_with_istio_mutual(
    mesh: Mesh, client: Workload, vm: Workload
) -> None:
    host = "vm-sans.mesh.internal"
    rule = f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: vm-sans}}
spec:
  host: {host}
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}
"""
    mesh.apply(vm_entry(host, vm, f"  subjectAltNames: [{spiffe('someone-else')}]\n") + rule)
    eventually(lambda: refused(mesh, client, host, "fail_verify_san"), what="SAN refused")
    mesh.apply(vm_entry(host, vm, f"  subjectAltNames: [{spiffe('vm-db')}]\n") + rule)
    reply = eventually(lambda: answered(mesh, client, host), what="the entry's SAN matches")
    assert reply is not None
    assert f"URI={spiffe('caller')}" in xfcc(reply.body), reply.body
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0


# --- TLS a DestinationRule originates ------------------------------------------------------------


class Pki(ThrowawayCa):
    """A throwaway CA with a server certificate for one DNS name (and CRLs)."""

    def __init__(self, directory: Path, dns: str) -> None:
        super().__init__(directory, "identity-test-ca")
        server, server_key, self.server = self.leaf("server", dns, dns=dns)
        self.files = {"ca": self.ca_file, "server": server, "server_key": server_key}


def https_entry(host: str, port: int, sans: list[str], tls: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {host.split(".")[0]}}}
spec:
  hosts: [{host}]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  subjectAltNames: {sans}
  endpoints: [{{address: 127.0.0.1, ports: {{http: {port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {host.split(".")[0]}}}
spec:
  host: {host}
  trafficPolicy:
    tls: {tls}
"""


def test_entry_subject_alt_names_are_checked_when_a_rule_originates_tls(
    mesh: Mesh, client: Workload, tmp_path: Path
) -> None:
    host = "origin.example"
    pki = Pki(tmp_path, "origin.example")
    tls = f"{{mode: SIMPLE, caCertificates: {pki.files['ca']}, sni: origin.example}}"
    with HttpsServer(pki.files, mutual=False) as server:
        mesh.apply(https_entry(host, server.port, ["elsewhere.example"], tls))
        eventually(lambda: refused(mesh, client, host, "fail_verify_san"), what="SAN refused")
        mesh.apply(https_entry(host, server.port, ["origin.example"], tls))
        reply = eventually(lambda: answered(mesh, client, host), what="the entry's SAN matches")
        assert (
            reply is not None
            and isinstance(reply.body, dict)
            and reply.body["instance"] == "tls-server"
        )
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0


def test_ca_crl_refuses_a_revoked_server_certificate(
    mesh: Mesh, client: Workload, tmp_path: Path
) -> None:
    host = "revocable.example"
    pki = Pki(tmp_path, host)
    good = pki.crl("none-revoked.pem", [12345])
    bad = pki.crl("server-revoked.pem", [pki.server.serial_number])

    def rule(crl: Path | str) -> str:
        tls = f"{{mode: SIMPLE, caCertificates: {pki.files['ca']}, caCrl: {crl}, sni: {host}}}"
        return https_entry(host, server.port, [host], tls)

    with HttpsServer(pki.files, mutual=False) as server:
        mesh.apply(rule(good))
        eventually(
            lambda: mesh.request(client.outbound_port, host).status == 200,
            what="a certificate the CRL does not name is accepted",
        )
        mesh.apply(rule(bad))
        eventually(lambda: refused(mesh, client, host, "fail_verify_error"), what="revoked")
        # A CRL file the proxy cannot read: no endpoints (503), never a NACK, never no check.
        mesh.apply(rule(tmp_path / "missing-crl.pem"))
        eventually(
            lambda: '"type": "STATIC"' in cluster_json(client, host),
            what="the unusable cluster is in force",
        )
        assert mesh.request(client.outbound_port, host).status == 503
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0


def cluster_json(client: Workload, host: str) -> str:
    return client.admin(f"/config_dump?resource=dynamic_active_clusters&name_regex=.*{host}")


# --- caCrl with ISTIO_MUTUAL: checked against the mesh root --------------------------------------


def server_certificate(mesh: Mesh, port: int, tmp: Path) -> x509.Certificate:
    """The certificate a sidecar's inbound port presents (the handshake needs a mesh client
    certificate; the test issues one with the mesh CA's key, as Citadel would)."""
    ca = CertificateAuthority.load_or_create(mesh.citadel_state, TRUST_DOMAIN)
    issued = ca.issue("default", "probe", datetime.timedelta(hours=1))
    cert, key = tmp / "probe.pem", tmp / "probe.key"
    cert.write_bytes(issued.cert_chain_pem)
    key.write_bytes(issued.key_pem)
    ctx = ssl.create_default_context(cadata=ca.root_bundle_pem().decode())
    ctx.check_hostname = False
    ctx.load_cert_chain(cert, key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_ca_crl_with_istio_mutual_is_checked_against_the_mesh_root(
    mesh: Mesh, client: Workload, vm: Workload, tmp_path: Path
) -> None:
    host = "vm-crl.mesh.internal"
    presented = server_certificate(mesh, vm.inbound_port, tmp_path)
    root_key = serialization.load_pem_private_key(
        (mesh.citadel_state / "root-key.pem").read_bytes(), password=None
    )
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    good = write_crl(tmp_path / "mesh-none.pem", presented.issuer, root_key, [12345])
    bad = write_crl(tmp_path / "mesh-vm.pem", presented.issuer, root_key, [presented.serial_number])

    def apply(crl: Path) -> None:
        mesh.apply(
            vm_entry(host, vm, account="vm-db")
            + f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: vm-crl}}
spec:
  host: {host}
  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL, caCrl: {crl}}}}}
"""
        )

    apply(good)
    eventually(
        lambda: mesh.request(client.outbound_port, host).status == 200,
        what="a mesh certificate the CRL does not name is accepted",
    )
    apply(bad)
    eventually(lambda: refused(mesh, client, host, "fail_verify_error"), what="revoked")
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0
