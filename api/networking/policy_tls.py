"""Server-side TLS options (Gateway servers, Sidecar ingress listeners)."""

from __future__ import annotations

from api import checks, credential_names
from api.issues import Issues
from api.networking.policy import ServerTLSSettings

__all__ = ["CIPHER_SUITES", "check_server_tls"]

# Cipher suites Envoy's BoringSSL accepts, plus its equal-preference groups.
CIPHER_SUITES = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-PSK-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-PSK-AES128-CBC-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
        "ECDHE-PSK-AES256-CBC-SHA",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
        "AES128-SHA",
        "PSK-AES128-CBC-SHA",
        "AES256-SHA",
        "PSK-AES256-CBC-SHA",
        "DES-CBC3-SHA",
        "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]",
        "[ECDHE-RSA-AES128-GCM-SHA256|ECDHE-RSA-CHACHA20-POLY1305]",
    }
)
_NEEDS_CERTS = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")


def _check_sources(tls: ServerTLSSettings, issues: Issues) -> None:
    """At most one certificate source."""
    sources = [
        name
        for name, used in (
            ("serverCertificate/privateKey", tls.server_certificate or tls.private_key),
            ("credentialName", tls.credential_name),
            ("credentialNames", tls.credential_names),
            ("tlsCertificates", tls.tls_certificates),
        )
        if used
    ]
    if len(sources) > 1:
        issues.error(f"only one certificate source may be set, not {' and '.join(sources)}")


def _check_tls_certificates(tls: ServerTLSSettings, mode: str, issues: Issues) -> None:
    """Each tlsCertificates entry needs its files (a CA for the mutual modes)."""
    certs = tls.tls_certificates or []
    mutual = mode != "SIMPLE"
    for i, cert in enumerate(certs):
        if not cert.server_certificate:
            issues.error(f"required in {mode} mode", "tlsCertificates", i, "serverCertificate")
        if not cert.private_key:
            issues.error(f"required in {mode} mode", "tlsCertificates", i, "privateKey")
        if mutual and not (cert.ca_certificates or tls.ca_certificates):
            issues.error(f"required in {mode} mode", "tlsCertificates", i, "caCertificates")


def _check_file_certificates(tls: ServerTLSSettings, mode: str, issues: Issues) -> None:
    """Without tlsCertificates, the top-level files are required."""
    if not tls.server_certificate:
        issues.error(f"required in {mode} mode", "serverCertificate")
    if not tls.private_key:
        issues.error(f"required in {mode} mode", "privateKey")
    if mode != "SIMPLE" and not tls.ca_certificates:
        issues.error(f"required in {mode} mode", "caCertificates")


def _check_ca_crl(tls: ServerTLSSettings, mode: str, issues: Issues) -> None:
    if tls.ca_crl:
        if tls.credential_name or tls.credential_names:
            issues.error("caCrl cannot be combined with credentialName(s)", "caCrl")
        if mode == "SIMPLE":
            issues.error("caCrl is not supported in SIMPLE mode", "caCrl")


def _check_credential_names(tls: ServerTLSSettings, issues: Issues) -> None:
    """A name Citadel cannot serve would end the gateway's whole secret stream."""
    if tls.credential_name and (m := credential_names.problem(tls.credential_name)):
        issues.error(m, "credentialName")
    for i, name in enumerate(tls.credential_names or []):
        if m := credential_names.problem(name):
            issues.error(m, "credentialNames", i)


def _check_ciphers(tls: ServerTLSSettings, issues: Issues) -> None:
    """Unknown or repeated cipher suites, and old protocol versions left without any."""
    seen: set[str] = set()
    for i, suite in enumerate(tls.cipher_suites or []):
        if suite not in CIPHER_SUITES:
            issues.warn(f"unknown cipher suite {suite!r} is ignored", "cipherSuites", i)
        elif suite in seen:
            issues.warn(f"duplicate cipher suite {suite!r} is ignored", "cipherSuites", i)
        seen.add(suite)
    if tls.min_protocol_version in ("TLSV1_0", "TLSV1_1") and not tls.cipher_suites:
        issues.warn(
            f"minProtocolVersion {tls.min_protocol_version} without cipherSuites allows "
            "insecure ciphers",
            "minProtocolVersion",
        )


def _refuse_unsupported(tls: ServerTLSSettings, issues: Issues) -> None:
    """Client-certificate verification settings this mesh cannot honour: refused, never
    accepted with a warning (api/unsupported.py), as for every TLS verification setting."""
    if tls.insecure_skip_verify:
        issues.error(
            "insecureSkipVerify is not supported by this mesh: a client certificate that "
            "fails verification cannot be let through",
            "insecureSkipVerify",
        )


def check_server_tls(tls: ServerTLSSettings | None, issues: Issues) -> None:
    """Issues rooted at the tls block."""
    if tls is None:
        return
    _refuse_unsupported(tls, issues)
    mode = tls.mode or "PASSTHROUGH"
    cert_fields = (
        ("serverCertificate", tls.server_certificate),
        ("privateKey", tls.private_key),
        ("caCertificates", tls.ca_certificates),
        ("tlsCertificates", tls.tls_certificates),
        ("credentialName", tls.credential_name),
        ("credentialNames", tls.credential_names),
    )
    if mode == "ISTIO_MUTUAL":
        for name, value in cert_fields:
            if value:
                issues.error("must not be set in ISTIO_MUTUAL mode", name)
        return
    if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and any(v for _, v in cert_fields):
        issues.warn(f"{mode} mode does not use certificates; they will be ignored")
    _check_sources(tls, issues)
    _check_credential_names(tls, issues)
    for name, values in (
        ("credentialNames", tls.credential_names),
        ("tlsCertificates", tls.tls_certificates),
    ):
        if (m := checks.min_items(values, 1)) is not None:
            issues.error(m, name)
        elif (m := checks.max_items(values, 2)) is not None:
            issues.error(f"{m} (one RSA and one ECDSA certificate)", name)
    if mode in _NEEDS_CERTS and not tls.credential_name and not tls.credential_names:
        if tls.tls_certificates:
            _check_tls_certificates(tls, mode, issues)
        else:
            _check_file_certificates(tls, mode, issues)
    _check_ca_crl(tls, mode, issues)
    _check_ciphers(tls, issues)
