"""A gateway server's TLS termination: Istio's ServerTLSSettings -> DownstreamTlsContext.

Certificates never pass through Pilot. `credentialName` (and `credentialNames`)
become SDS references to Citadel (`names.credential_secret`), which serves them only
to gateways of the credential's namespace, or of a namespace a ReferenceGrant there
allows (`kubernetes-gateway://NS/NAME`, what a Gateway API certificateRef to another
namespace becomes); `ISTIO_MUTUAL` uses the gateway's own mesh identity.
A server whose TLS cannot be honoured as written gets no filter chain at all
(`Refusal` says why): never plaintext, never a weaker check than asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2

from api.networking.policy import ServerTLSSettings
from pilot.networking import mtls, names

__all__ = ["TERMINATING_MODES", "Refusal", "downstream_context"]

TERMINATING_MODES = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL"})
# A credential that does not exist (yet) must not hold the port's other servers back:
# the listener goes live without it after this long, and gets it when it is created.
_CREDENTIAL_WAIT = duration_pb2.Duration(seconds=2)
# HTTPS servers speak both HTTP versions, as Istio's gateways do.
_HTTP_ALPN = ("h2", "http/1.1")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a TLS server gets no filter chain (logged by the caller)."""

    reason: str


def _protocol(version: str | None) -> common_pb2.TlsParameters.TlsProtocol.ValueType:
    """Istio's TLSV1_2 is Envoy's TLSv1_2."""
    return common_pb2.TlsParameters.TlsProtocol.Value(
        (version or "TLS_AUTO").replace("TLSV", "TLSv")
    )


def _san_matchers(sans: list[str]) -> list[common_pb2.SubjectAltNameMatcher]:
    """Istio's subjectAltNames: a client certificate passes if any SAN equals any entry.
    URIs (SPIFFE IDs) and DNS names are the two forms a SAN list carries."""
    out = []
    for san in sans:
        san_type = (
            common_pb2.SubjectAltNameMatcher.URI
            if "://" in san
            else common_pb2.SubjectAltNameMatcher.DNS
        )
        out.append(
            common_pb2.SubjectAltNameMatcher(
                san_type=san_type, matcher=string_pb2.StringMatcher(exact=san)
            )
        )
    return out


def _verify(validation: common_pb2.CertificateValidationContext, tls: ServerTLSSettings) -> None:
    """The client-certificate checks the server asks for beyond the CA."""
    validation.match_typed_subject_alt_names.extend(_san_matchers(tls.subject_alt_names or []))
    validation.verify_certificate_spki.extend(tls.verify_certificate_spki or [])
    validation.verify_certificate_hash.extend(tls.verify_certificate_hash or [])


def downstream_context(
    tls: ServerTLSSettings,
    sds: tuple[str, str, str] | None,
    trust_domain: str,
    *,
    http: bool,
) -> tls_pb2.DownstreamTlsContext | Refusal:
    """The TLS context a terminating server's filter chain serves, or why there is none."""
    mode = tls.mode or "PASSTHROUGH"
    if mode not in TERMINATING_MODES:
        return Refusal(f"mode {mode} does not terminate TLS")
    if sds is None:
        return Refusal("the gateway has no SDS identity (Citadel address, token, root)")
    if tls.ca_crl:
        return Refusal("caCrl: revocation lists cannot be checked, so clients are not admitted")
    if mode == "ISTIO_MUTUAL":
        ctx = mtls.downstream_tls(sds, trust_domain)
        default = ctx.common_tls_context.combined_validation_context.default_validation_context
        if tls.subject_alt_names:  # narrower than "any identity of the trust domain"
            del default.match_typed_subject_alt_names[:]
        _verify(default, tls)
    else:
        credentials = list(
            tls.credential_names or ([tls.credential_name] if tls.credential_name else [])
        )
        if not credentials:
            return Refusal(
                "file-mounted certificates (serverCertificate, tlsCertificates) are not "
                "served: name a credential (credentialName, `meshctl secret create tls`)"
            )
        ctx = tls_pb2.DownstreamTlsContext(
            common_tls_context=tls_pb2.CommonTlsContext(
                tls_certificate_sds_secret_configs=[
                    mtls.sds_secret(names.credential_secret(c), sds, _CREDENTIAL_WAIT)
                    for c in credentials
                ]
            )
        )
        if mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
            if tls.ca_certificates and not tls.ca_cert_credential_name:
                return Refusal(
                    "caCertificates (a file) is not served: put the CA in the credential "
                    "(`meshctl secret create tls NAME --ca-cert`) or in NAME-cacert"
                )
            ca_from = tls.ca_cert_credential_name or credentials[0]
            validation = ctx.common_tls_context.combined_validation_context
            validation.validation_context_sds_secret_config.CopyFrom(
                mtls.sds_secret(names.credential_ca_secret(ca_from), sds, _CREDENTIAL_WAIT)
            )
            _verify(validation.default_validation_context, tls)
            ctx.require_client_certificate.value = mode == "MUTUAL"
    common = ctx.common_tls_context
    if tls.min_protocol_version or tls.max_protocol_version:
        common.tls_params.tls_minimum_protocol_version = _protocol(tls.min_protocol_version)
        common.tls_params.tls_maximum_protocol_version = _protocol(tls.max_protocol_version)
    if tls.cipher_suites:
        common.tls_params.cipher_suites.extend(tls.cipher_suites)
    if http:
        common.alpn_protocols.extend(_HTTP_ALPN)
    return ctx
