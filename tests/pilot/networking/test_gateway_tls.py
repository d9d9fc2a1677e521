"""A gateway server's TLS: what each mode asks of Envoy, and the servers refused a chain
because their TLS cannot be honoured as written (never served weaker, never plaintext)."""

from __future__ import annotations

import pytest
from envoy.extensions.transport_sockets.tls.v3 import common_pb2

from api.networking.policy import ServerTLSSettings
from pilot.networking.gateway_tls import Refusal, downstream_context

SDS = ("127.0.0.1:15013", "/token", "/root.pem")


def tls(**fields: object) -> ServerTLSSettings:
    return ServerTLSSettings.model_validate(fields)


@pytest.mark.parametrize(
    ("settings", "sds", "reason"),
    [
        (tls(mode="SIMPLE", credentialName="c"), None, "no SDS identity"),
        (tls(mode="SIMPLE", credentialName="c", caCrl="/crl.pem"), SDS, "caCrl"),
        (tls(mode="SIMPLE", serverCertificate="/c.pem", privateKey="/k.pem"), SDS, "file-mounted"),
        (tls(mode="MUTUAL", credentialName="c", caCertificates="/ca.pem"), SDS, "caCertificates"),
        (tls(mode="PASSTHROUGH"), SDS, "does not terminate"),
        (tls(mode="AUTO_PASSTHROUGH"), SDS, "does not terminate"),
    ],
)
def test_tls_that_cannot_be_honoured_gets_no_chain(
    settings: ServerTLSSettings, sds: tuple[str, str, str] | None, reason: str
) -> None:
    got = downstream_context(settings, sds, "cluster.local", http=True)
    assert isinstance(got, Refusal)
    assert reason in got.reason


def test_simple_serves_each_named_credential_and_asks_nothing_of_clients() -> None:
    got = downstream_context(
        tls(mode="SIMPLE", credentialNames=["rsa", "ec"]), SDS, "cluster.local", http=True
    )
    assert not isinstance(got, Refusal)
    names = [c.name for c in got.common_tls_context.tls_certificate_sds_secret_configs]
    assert names == ["kubernetes://rsa", "kubernetes://ec"]
    assert not got.require_client_certificate.value
    assert not got.common_tls_context.HasField("combined_validation_context")
    assert list(got.common_tls_context.alpn_protocols) == ["h2", "http/1.1"]


@pytest.mark.parametrize(("mode", "required"), [("MUTUAL", True), ("OPTIONAL_MUTUAL", False)])
def test_mutual_verifies_clients_against_the_credentials_ca(mode: str, required: bool) -> None:
    got = downstream_context(
        tls(mode=mode, credentialName="api", subjectAltNames=["client.example.com"]),
        SDS,
        "cluster.local",
        http=True,
    )
    assert not isinstance(got, Refusal)
    assert got.require_client_certificate.value is required
    combined = got.common_tls_context.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "kubernetes://api-cacert"
    (san,) = combined.default_validation_context.match_typed_subject_alt_names
    assert san.san_type == common_pb2.SubjectAltNameMatcher.DNS
    assert san.matcher.exact == "client.example.com"


def test_a_separate_ca_credential_is_used_when_named() -> None:
    got = downstream_context(
        tls(mode="MUTUAL", credentialName="api", caCertCredentialName="partners"),
        SDS,
        "cluster.local",
        http=True,
    )
    assert not isinstance(got, Refusal)
    sds = got.common_tls_context.combined_validation_context.validation_context_sds_secret_config
    assert sds.name == "kubernetes://partners-cacert"


def test_istio_mutual_uses_the_mesh_identity_narrowed_by_subject_alt_names() -> None:
    wide = downstream_context(tls(mode="ISTIO_MUTUAL"), SDS, "cluster.local", http=True)
    narrow = downstream_context(
        tls(mode="ISTIO_MUTUAL", subjectAltNames=["spiffe://cluster.local/ns/a/sa/b"]),
        SDS,
        "cluster.local",
        http=True,
    )
    assert not isinstance(wide, Refusal) and not isinstance(narrow, Refusal)
    for ctx in (wide, narrow):
        assert ctx.require_client_certificate.value
        assert ctx.common_tls_context.tls_certificate_sds_secret_configs[0].name == "default"
    wide_sans = wide.common_tls_context.combined_validation_context.default_validation_context
    narrow_sans = narrow.common_tls_context.combined_validation_context.default_validation_context
    assert wide_sans.match_typed_subject_alt_names[0].matcher.prefix == "spiffe://cluster.local/"
    assert [m.matcher.exact for m in narrow_sans.match_typed_subject_alt_names] == [
        "spiffe://cluster.local/ns/a/sa/b"
    ]


def test_protocol_versions_use_envoys_names() -> None:
    got = downstream_context(
        tls(mode="SIMPLE", credentialName="c", minProtocolVersion="TLSV1_3"),
        SDS,
        "cluster.local",
        http=False,
    )
    assert not isinstance(got, Refusal)
    params = got.common_tls_context.tls_params
    assert params.tls_minimum_protocol_version == common_pb2.TlsParameters.TLSv1_3
    assert not got.common_tls_context.alpn_protocols
