"""The mesh CA: a root it keeps (or a plugged-in intermediate), signing workload certs.

Workload certificates carry one URI SAN, the SPIFFE identity
``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``, use EC P-256
keys and are short-lived. Keys are written 0600 and never logged.

Plugged-in CA (as Istio's ``cacerts``): a directory with ``ca-cert.pem``,
``ca-key.pem``, ``cert-chain.pem`` and ``root-cert.pem``; several Citadels
given the same files issue under one root.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from api.checks import is_k8s_label, is_k8s_name
from citadel.issued import IssuedLog, IssuedRecord

__all__ = ["CaError", "CertificateAuthority", "IssuedCert", "spiffe_id"]

ROOT_TTL = datetime.timedelta(days=3650)


class CaError(Exception):
    """The CA cannot start or cannot issue (bad files, bad identity)."""


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    if not is_k8s_label(namespace):
        raise CaError(f"namespace {namespace!r} is not a DNS label")
    if not is_k8s_name(service_account):
        raise CaError(f"service account {service_account!r} is not a valid name")
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_private(path: Path, data: bytes) -> None:
    """Create with 0600 from the start: no window where the key is readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


@dataclass(frozen=True, slots=True)
class IssuedCert:
    identity: str
    cert_chain_pem: bytes  # leaf first, then intermediates
    key_pem: bytes  # empty when the caller kept its own key (CSR flow)
    not_before: datetime.datetime
    not_after: datetime.datetime
    serial: int


class CertificateAuthority:
    def __init__(
        self,
        trust_domain: str,
        signing_cert: x509.Certificate,
        signing_key: ec.EllipticCurvePrivateKey,
        chain: list[x509.Certificate],
        roots: list[x509.Certificate],
    ) -> None:
        self.trust_domain = trust_domain
        self._cert = signing_cert
        self._key = signing_key
        self._chain = chain  # from the signing cert up to (not including) the root
        self.roots = roots
        self.issued = IssuedLog()  # what was signed (no keys), for GET /v1/certificates

    # --- construction ---

    @classmethod
    def load_or_create(cls, state_dir: Path, trust_domain: str) -> CertificateAuthority:
        """Keep a self-signed root in state_dir, creating it on first start."""
        state_dir.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = state_dir / "root-cert.pem", state_dir / "root-key.pem"
        if cert_path.exists() and key_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise CaError(f"{key_path}: expected an EC private key")
            os.chmod(key_path, 0o600)
            return cls(trust_domain, cert, key, [], [cert])
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
                x509.NameAttribute(NameOID.COMMON_NAME, f"meshpy root CA ({trust_domain})"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + ROOT_TTL)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        cert_path.write_bytes(_pem(cert))
        return cls(trust_domain, cert, key, [], [cert])

    @classmethod
    def plugged_in(cls, directory: Path, trust_domain: str) -> CertificateAuthority:
        """An intermediate from files, as Istio's cacerts secret."""
        try:
            cert = x509.load_pem_x509_certificate((directory / "ca-cert.pem").read_bytes())
            key = serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), None)
            chain = x509.load_pem_x509_certificates((directory / "cert-chain.pem").read_bytes())
            roots = x509.load_pem_x509_certificates((directory / "root-cert.pem").read_bytes())
        except (OSError, ValueError) as err:
            raise CaError(f"plugged-in CA in {directory}: {err}") from err
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError("plugged-in CA key must be an EC key")
        if cert.public_key() != key.public_key():
            raise CaError("plugged-in CA: ca-key.pem does not match ca-cert.pem")
        # cert-chain.pem starts with the CA cert itself in Istio's layout; keep what is above it.
        above = [c for c in chain if c != cert and c not in roots]
        return cls(trust_domain, cert, key, above, roots)

    # --- issuing ---

    def root_bundle_pem(self) -> bytes:
        return b"".join(_pem(r) for r in self.roots)

    def issue(self, namespace: str, service_account: str, ttl: datetime.timedelta) -> IssuedCert:
        """A fresh key and certificate for the identity."""
        key = ec.generate_private_key(ec.SECP256R1())
        issued = self._sign(
            spiffe_id(self.trust_domain, namespace, service_account), key.public_key(), ttl
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return IssuedCert(
            issued.identity,
            issued.cert_chain_pem,
            key_pem,
            issued.not_before,
            issued.not_after,
            issued.serial,
        )

    def issue_server(
        self,
        namespace: str,
        service_account: str,
        dns_names: list[str],
        ips: list[str],
        ttl: datetime.timedelta,
    ) -> IssuedCert:
        """A control-plane serving cert: the SPIFFE identity plus DNS and IP SANs."""
        key = ec.generate_private_key(ec.SECP256R1())
        identity = spiffe_id(self.trust_domain, namespace, service_account)
        extra: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        extra += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        issued = self._sign(identity, key.public_key(), ttl, extra)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return IssuedCert(
            identity,
            issued.cert_chain_pem,
            key_pem,
            issued.not_before,
            issued.not_after,
            issued.serial,
        )

    def sign_csr(
        self, csr_pem: bytes, namespace: str, service_account: str, ttl: datetime.timedelta
    ) -> IssuedCert:
        """Sign a CSR for the caller's proven identity (whatever the CSR itself asks for)."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as err:
            raise CaError(f"not a PEM certificate request: {err}") from err
        if not csr.is_signature_valid:
            raise CaError("the CSR's signature does not verify")
        public_key = csr.public_key()
        if (
            not isinstance(public_key, ec.EllipticCurvePublicKey)
            or public_key.curve.name != "secp256r1"
        ):
            raise CaError("the CSR must carry an EC P-256 public key")
        return self._sign(spiffe_id(self.trust_domain, namespace, service_account), public_key, ttl)

    def _sign(
        self,
        identity: str,
        public_key: ec.EllipticCurvePublicKey,
        ttl: datetime.timedelta,
        extra_sans: list[x509.GeneralName] | None = None,
    ) -> IssuedCert:
        now = datetime.datetime.now(datetime.UTC)
        not_before = now - datetime.timedelta(minutes=1)  # tolerate small clock skew
        not_after = min(now + ttl, self._cert.not_valid_after_utc)
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.trust_domain)])
            )
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(identity), *(extra_sans or [])]
                ),
                critical=True,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=True,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        chain = _pem(cert) + b"".join(
            _pem(c)
            for c in ([self._cert] if self._chain or self._cert not in self.roots else [])
            + self._chain
        )
        self.issued.add(IssuedRecord(identity, serial, not_before, not_after))
        return IssuedCert(identity, chain, b"", not_before, not_after, serial)
