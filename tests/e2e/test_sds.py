"""Citadel serves SPIFFE certificates to real Envoy over SDS, rotates them, and
refuses callers that cannot prove their identity."""

from __future__ import annotations

import json
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.grpc_credential.v3 import file_based_metadata_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, struct_pb2

from meshctl.procs import Supervisor, bin_path, free_port
from tests.e2e.harness import eventually

pytestmark = pytest.mark.e2e
ADMIN = "admin-secret"


def _any(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _addr(port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
    )


def sds_source(
    citadel: CitadelProc, token: str, token_file: Path | None
) -> config_source_pb2.ConfigSource:
    """SDS with the token in initial metadata (plaintext port), or read from a file by
    Envoy's file-based call credentials over TLS to Citadel (so the token can rotate)."""
    api = config_source_pb2.ApiConfigSource(
        api_type=config_source_pb2.ApiConfigSource.GRPC, transport_api_version=config_source_pb2.V3
    )
    if token_file is None:
        api.grpc_services.append(
            grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name="sds-grpc"),
                initial_metadata=[
                    base_pb2.HeaderValue(key="authorization", value=f"Bearer {token}")
                ],
            )
        )
    else:
        root = citadel.state / "root-cert.pem"
        google = grpc_service_pb2.GrpcService.GoogleGrpc(
            target_uri=f"127.0.0.1:{citadel.tls}",
            stat_prefix="sds",
            credentials_factory_name="envoy.grpc_credentials.file_based_metadata",
        )
        google.channel_credentials.ssl_credentials.root_certs.filename = str(root)
        plugin = google.call_credentials.add().from_plugin
        plugin.name = "envoy.grpc_credentials.file_based_metadata"
        plugin.typed_config.CopyFrom(
            _any(
                file_based_metadata_pb2.FileBasedMetadataConfig(
                    secret_data=base_pb2.DataSource(filename=str(token_file)),
                    header_key="authorization",
                    header_prefix="Bearer ",
                )
            )
        )
        api.grpc_services.append(grpc_service_pb2.GrpcService(google_grpc=google))
    return config_source_pb2.ConfigSource(
        resource_api_version=config_source_pb2.V3, api_config_source=api
    )


def tls_listener_bootstrap(
    admin: int,
    listener: int,
    sds: config_source_pb2.ConfigSource,
    citadel_port: int,
    namespace: str,
    sa: str,
) -> str:
    """A stock Envoy with one TLS listener whose cert and trust come from Citadel over SDS."""
    tls = tls_pb2.DownstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_sds_secret_configs=[
                secret_pb2.SdsSecretConfig(name="default", sds_config=sds)
            ],
            validation_context_sds_secret_config=secret_pb2.SdsSecretConfig(
                name="ROOTCA", sds_config=sds
            ),
        )
    )
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="tls",
        http_filters=[hcm_pb2.HttpFilter(name="router", typed_config=_any(router_pb2.Router()))],
        route_config=route_pb2.RouteConfiguration(
            virtual_hosts=[
                route_components_pb2.VirtualHost(
                    name="all",
                    domains=["*"],
                    routes=[
                        route_components_pb2.Route(
                            match=route_components_pb2.RouteMatch(prefix="/"),
                            direct_response=route_components_pb2.DirectResponseAction(status=200),
                        )
                    ],
                )
            ]
        ),
    )
    meta = struct_pb2.Struct()
    meta.update({"NAMESPACE": namespace, "SERVICE_ACCOUNT": sa})
    h2 = hpo_pb2.HttpProtocolOptions()
    h2.explicit_http_config.http2_protocol_options.SetInParent()
    boot = bootstrap_pb2.Bootstrap(
        node=base_pb2.Node(id=f"{sa}-1", cluster=sa, metadata=meta),
        admin=bootstrap_pb2.Admin(address=_addr(admin)),
        static_resources=bootstrap_pb2.Bootstrap.StaticResources(
            listeners=[
                listener_pb2.Listener(
                    name="tls",
                    address=_addr(listener),
                    filter_chains=[
                        listener_components_pb2.FilterChain(
                            filters=[
                                listener_components_pb2.Filter(name="hcm", typed_config=_any(hcm))
                            ],
                            transport_socket=base_pb2.TransportSocket(
                                name="tls", typed_config=_any(tls)
                            ),
                        )
                    ],
                )
            ],
            clusters=[
                cluster_pb2.Cluster(
                    name="sds-grpc",
                    type=cluster_pb2.Cluster.STATIC,
                    connect_timeout=duration_pb2.Duration(seconds=1),
                    typed_extension_protocol_options={
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _any(h2)
                    },
                    load_assignment={
                        "cluster_name": "sds-grpc",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": citadel_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                )
            ],
        ),
    )
    return json_format.MessageToJson(boot)


class CitadelProc:
    def __init__(self, sup: Supervisor, state: Path, ttl: int) -> None:
        self.sup, self.state, self.ttl = sup, state, ttl
        self.grpc, self.http, self.tls = free_port(), free_port(), free_port()

    def start(self) -> None:
        self.sup.start(
            "citadel",
            [
                sys.executable,
                "-m",
                "citadel",
                f"--state-dir={self.state}",
                f"--sds-addr=127.0.0.1:{self.grpc}",
                f"--sds-tls-addr=127.0.0.1:{self.tls}",
                f"--http-addr=127.0.0.1:{self.http}",
                f"--workload-ttl-seconds={self.ttl}",
            ],
            env={"CITADEL_ADMIN_TOKEN": ADMIN},
        )
        self.sup.wait_http("citadel", f"http://127.0.0.1:{self.http}/healthz")

    def token(self, namespace: str, sa: str) -> str:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http}/v1/tokens",
            method="POST",
            data=json.dumps(
                {"namespace": namespace, "serviceAccount": sa, "ttlSeconds": 600}
            ).encode(),
            headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return str(json.loads(resp.read())["token"])

    def root_pem(self) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/v1/roots", timeout=5) as resp:
            return bytes(resp.read())

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as resp:
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in resp.read().decode().splitlines()
                if line.startswith(name)
            )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Supervisor, CitadelProc, Path]]:
    sup = Supervisor(tmp_path / "logs")
    citadel = CitadelProc(sup, tmp_path / "citadel", ttl=6)
    try:
        citadel.start()
        yield sup, citadel, tmp_path
    finally:
        sup.stop_all()


def start_envoy(sup: Supervisor, tmp: Path, name: str, config: str, admin: int) -> None:
    path = tmp / f"{name}.json"
    path.write_text(config)
    sup.start(
        name,
        [
            bin_path("envoy"),
            "-c",
            str(path),
            "--base-id",
            str(free_port()),
            "--concurrency",
            "1",
            "--log-level",
            "info",
        ],
    )
    # Admin up (not /ready: a listener waits for its secrets, which a refused caller never gets).
    sup.wait_http(name, f"http://127.0.0.1:{admin}/server_info", timeout=10)


def served_cert(port: int, root_pem: bytes) -> x509.Certificate:
    """The certificate the listener presents, verified against Citadel's root."""
    ctx = ssl.create_default_context(cadata=root_pem.decode())
    ctx.check_hostname = False  # SPIFFE identities are URI SANs, not host names
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def uri_sans(cert: x509.Certificate) -> list[str]:
    return cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.UniformResourceIdentifier)


@pytest.mark.parametrize("proof", ["initial-metadata", "token-file"])
def test_envoy_gets_rotating_spiffe_certs_over_sds(
    env: tuple[Supervisor, CitadelProc, Path], proof: str
) -> None:
    sup, citadel, tmp = env
    admin, port = free_port(), free_port()
    token = citadel.token("shop", "reviews")
    token_file = None
    if proof == "token-file":
        token_file = tmp / "token"
        token_file.write_text(token)
        token_file.chmod(0o600)
    sds = sds_source(citadel, token, token_file)
    start_envoy(
        sup,
        tmp,
        "envoy",
        tls_listener_bootstrap(admin, port, sds, citadel.grpc, "shop", "reviews"),
        admin,
    )
    root = citadel.root_pem()
    cert = eventually(lambda: served_cert(port, root), what="TLS listener serving a Citadel cert")
    assert uri_sans(cert) == ["spiffe://cluster.local/ns/shop/sa/reviews"]
    # Rotation: new certificates arrive over the open stream; every handshake succeeds meanwhile.
    serials = {cert.serial_number}
    deadline = time.monotonic() + 30
    while len(serials) < 4 and time.monotonic() < deadline:
        serials.add(served_cert(port, root).serial_number)
        time.sleep(0.2)
    assert len(serials) >= 4, f"only {len(serials)} certificates in 30 s"
    assert citadel.metric("citadel_cert_rotations_total") >= 3
    assert "ENVOY_SIGTERM" not in (tmp / "logs" / "envoy.log").read_text()  # never restarted

    # Citadel restarts: same root, Envoy reconnects and keeps getting certificates.
    sup.stop("citadel")
    citadel.start()
    assert citadel.root_pem() == root
    before = served_cert(port, root).serial_number
    eventually(
        lambda: served_cert(port, root).serial_number != before,
        timeout=20,
        what="a new certificate after the restart",
    )


def test_callers_without_proof_get_nothing(env: tuple[Supervisor, CitadelProc, Path]) -> None:
    sup, citadel, tmp = env
    # A valid token for another identity, node metadata claiming reviews: PERMISSION_DENIED.
    other = citadel.token("shop", "ratings")
    admin1, port1 = free_port(), free_port()
    start_envoy(
        sup,
        tmp,
        "impostor",
        tls_listener_bootstrap(
            admin1, port1, sds_source(citadel, other, None), citadel.grpc, "shop", "reviews"
        ),
        admin1,
    )
    # A forged token.
    admin2, port2 = free_port(), free_port()
    start_envoy(
        sup,
        tmp,
        "forger",
        tls_listener_bootstrap(
            admin2, port2, sds_source(citadel, "v1.e30.AAAA", None), citadel.grpc, "shop", "reviews"
        ),
        admin2,
    )
    eventually(
        lambda: (
            citadel.metric('citadel_auth_failures_total{reason="mismatch"}') >= 1
            and citadel.metric('citadel_auth_failures_total{reason="invalid"}') >= 1
        ),
        what="both refused",
    )
    time.sleep(1)
    for admin in (admin1, admin2):
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/certs", timeout=5) as resp:
            certs = json.loads(resp.read())["certificates"]
        assert all(not c.get("cert_chain") for c in certs), certs


def test_meshctl_cert_gets_files_for_the_proven_identity(
    env: tuple[Supervisor, CitadelProc, Path],
) -> None:
    _, citadel, tmp = env
    token_file = tmp / "token"
    token_file.write_text(citadel.token("batch", "reporter"))
    root = citadel.state / "root-cert.pem"
    for extra in (
        [f"--citadel-addr=127.0.0.1:{citadel.grpc}"],
        [f"--citadel-addr=127.0.0.1:{citadel.tls}", f"--tls-root={root}"],
    ):
        out_dir = tmp / f"certs-{len(extra)}"
        out = subprocess.run(
            [
                bin_path("meshctl"),
                "cert",
                f"--token-file={token_file}",
                f"--out-dir={out_dir}",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert stat.S_IMODE((out_dir / "key.pem").stat().st_mode) == 0o600
        leaf = x509.load_pem_x509_certificates((out_dir / "cert-chain.pem").read_bytes())[0]
        assert uri_sans(leaf) == ["spiffe://cluster.local/ns/batch/sa/reporter"]
        leaf.verify_directly_issued_by(
            x509.load_pem_x509_certificate((out_dir / "root-cert.pem").read_bytes())
        )
    token_file.write_text("v1.e30.AAAA")
    out = subprocess.run(
        [
            bin_path("meshctl"),
            "cert",
            f"--token-file={token_file}",
            f"--out-dir={tmp / 'nope'}",
            f"--citadel-addr=127.0.0.1:{citadel.grpc}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1 and "PERMISSION_DENIED" in out.stderr
    assert out.stderr.count("\n") == 1


def test_garbage_csr_calls_get_invalid_argument_and_no_traceback(
    env: tuple[Supervisor, CitadelProc, Path],
) -> None:
    import grpc

    _, citadel, tmp = env
    token = citadel.token("shop", "reviews")
    with grpc.insecure_channel(f"127.0.0.1:{citadel.grpc}") as channel:
        call = channel.unary_unary(
            "/meshpy.citadel.v1.CertificateService/CreateCertificate",
            request_serializer=None,
            response_deserializer=None,
        )
        for metadata, code in (
            ((), grpc.StatusCode.UNAUTHENTICATED),  # no proof: nothing else is looked at
            ((("authorization", f"Bearer {token}"),), grpc.StatusCode.INVALID_ARGUMENT),
        ):
            for _ in range(3):
                with pytest.raises(grpc.RpcError) as info:
                    call(b"\xff\xff\xff\xff", metadata=metadata, timeout=5)
                assert info.value.code() == code, info.value
    log = (tmp / "logs" / "citadel.log").read_text()
    assert "Traceback" not in log
    assert log.count("not a CreateCertificateRequest") == 3  # one line per bad call
