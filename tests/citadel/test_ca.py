"""The CA and the workload tokens, without a network."""

from __future__ import annotations

import base64
import datetime
import json
import stat
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from citadel.ca import CaError, CertificateAuthority, spiffe_id
from citadel.tokens import TokenError, TokenSigner

DAY = datetime.timedelta(days=1)


def test_root_is_created_once_kept_0600_and_reused(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "cluster.local")
    key = tmp_path / "root-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    again = CertificateAuthority.load_or_create(tmp_path, "cluster.local")
    assert again.root_bundle_pem() == ca.root_bundle_pem()


def test_workload_cert_has_the_spiffe_id_and_chains_to_the_root(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "example.org")
    issued = ca.issue("shop", "reviews", DAY)
    leaf = x509.load_pem_x509_certificates(issued.cert_chain_pem)[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://example.org/ns/shop/sa/reviews"
    ]
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    root = x509.load_pem_x509_certificate(ca.root_bundle_pem())
    leaf.verify_directly_issued_by(root)
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert DAY <= life <= DAY + datetime.timedelta(minutes=2)
    key = serialization.load_pem_private_key(issued.key_pem, None)
    assert key.public_key() == leaf.public_key()  # type: ignore[union-attr]


def test_csr_gets_the_proven_identity_not_the_requested_one(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "cluster.local")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/kube-system/sa/admin")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    issued = ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM), "shop", "ratings", DAY)
    leaf = x509.load_pem_x509_certificates(issued.cert_chain_pem)[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/shop/sa/ratings"
    ]
    with pytest.raises(CaError):
        ca.sign_csr(b"not a csr", "shop", "ratings", DAY)


def test_plugged_in_intermediate(tmp_path: Path) -> None:
    root_ca = CertificateAuthority.load_or_create(tmp_path / "root", "cluster.local")
    # Make an intermediate signed by that root, laid out as Istio's cacerts.
    key = ec.generate_private_key(ec.SECP256R1())
    root_cert = root_ca.roots[0]
    root_key = serialization.load_pem_private_key(
        (tmp_path / "root" / "root-key.pem").read_bytes(), None
    )
    now = datetime.datetime.now(datetime.UTC)
    inter = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "intermediate")]))
        .issuer_name(root_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root_key, hashes.SHA256())
    )  # type: ignore[arg-type]
    plug = tmp_path / "cacerts"
    plug.mkdir()
    pem = serialization.Encoding.PEM
    (plug / "ca-cert.pem").write_bytes(inter.public_bytes(pem))
    (plug / "ca-key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (plug / "cert-chain.pem").write_bytes(inter.public_bytes(pem) + root_cert.public_bytes(pem))
    (plug / "root-cert.pem").write_bytes(root_cert.public_bytes(pem))
    ca = CertificateAuthority.plugged_in(plug, "cluster.local")
    chain = x509.load_pem_x509_certificates(ca.issue("a", "b", DAY).cert_chain_pem)
    assert len(chain) == 2
    chain[0].verify_directly_issued_by(inter)
    inter.verify_directly_issued_by(root_cert)


@pytest.mark.parametrize(
    ("namespace", "account"), [("Bad_NS", "sa"), ("ns", "x\n"), ("ns\n", "sa"), ("ns", "s\u00e4")]
)
def test_bad_identity_names_are_refused(namespace: str, account: str, tmp_path: Path) -> None:
    assert spiffe_id("td", "ns", "sa") == "spiffe://td/ns/ns/sa/sa"
    with pytest.raises(CaError):
        spiffe_id("td", namespace, account)
    # A token for such a name would become a certificate whose SAN ends oddly.
    with pytest.raises(CaError):
        TokenSigner.load_or_create(tmp_path / "k.pem").mint(namespace, account, 60)


def test_tokens_bind_identity_and_expire(tmp_path: Path) -> None:
    signer = TokenSigner.load_or_create(tmp_path / "token-key.pem")
    assert stat.S_IMODE((tmp_path / "token-key.pem").stat().st_mode) == 0o600
    token = signer.mint("shop", "reviews", 60)
    claims = signer.verify(token)
    assert (claims.namespace, claims.service_account) == ("shop", "reviews")
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, now=claims.expires_at + 1)
    head, _body, sig = token.split(".")
    forged = TokenSigner.load_or_create(tmp_path / "other.pem").mint("shop", "admin", 60)
    with pytest.raises(TokenError, match="signature"):
        signer.verify(f"{head}.{forged.split('.')[1]}.{sig}")
    with pytest.raises(TokenError):
        signer.verify("garbage")
    again = TokenSigner.load_or_create(tmp_path / "token-key.pem")  # a restarted Citadel
    assert again.verify(token).token_id == claims.token_id


def test_the_gateway_role_is_an_optional_claim(tmp_path: Path) -> None:
    signer = TokenSigner.load_or_create(tmp_path / "token-key.pem")
    assert signer.verify(signer.mint("istio-system", "ingressgateway", 60, gateway=True)).gateway
    plain = signer.mint("shop", "reviews", 60)
    assert not signer.verify(plain).gateway
    assert "gw" not in json.loads(base64.urlsafe_b64decode(plain.split(".")[1] + "=="))

    # A token minted before the claim existed, and forged variants of the claim.
    def signed(claims: dict[str, object]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        sig = signer._key.sign(f"v1.{body}".encode())
        return f"v1.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"

    now = int(time.time())
    old = {"ns": "shop", "sa": "web", "iat": now, "exp": now + 60, "jti": "00"}
    assert signer.verify(signed(old)).gateway is False
    assert signer.verify(signed({**old, "gw": False})).gateway is False
    for bad in ("true", 1, None, [True]):
        with pytest.raises(TokenError, match="malformed"):
            signer.verify(signed({**old, "gw": bad}))
