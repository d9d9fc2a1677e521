"""The TLS files Envoy would refuse (and with them the whole CDS update) are found first."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pilot.networking.tls_files import loadable
from tests.citadel.helpers import make_ca

CRL = "tests/pilot/golden/dr-tls-ca-crl/crl.pem"
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


def _pair(tmp: Path, name: str) -> tuple[str, str]:
    issued = make_ca(name)
    cert_path, key_path = tmp / f"{name}.pem", tmp / f"{name}-key.pem"
    cert_path.write_text(issued.cert_pem)
    key_path.write_text(issued.key_pem)
    return str(cert_path), str(key_path)


def test_real_files_of_each_kind_load(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "client")
    assert loadable(ca=SYSTEM_CA)
    assert loadable(crl=CRL)
    assert loadable(ca=cert, cert_chain=cert, private_key=key)
    assert loadable()  # nothing named, nothing to refuse


def test_files_of_the_wrong_kind_or_broken_do_not(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "client")
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate\n")
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n")
    assert not loadable(ca=str(text))
    assert not loadable(ca=str(broken))
    assert not loadable(ca=key)  # a key is no CA
    assert not loadable(crl=cert)  # a certificate is no revocation list
    assert not loadable(cert_chain=key, private_key=key)
    assert not loadable(private_key=cert)
    assert not loadable(ca=str(tmp_path))  # a directory
    assert not loadable(ca=str(tmp_path / "missing.pem"))


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    cert, _ = _pair(tmp_path, "a")
    _, other_key = _pair(tmp_path, "b")
    assert not loadable(cert_chain=cert, private_key=other_key)


def test_an_encrypted_key_is_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "enc.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    assert not loadable(private_key=str(path))  # Envoy has no password to decrypt it


def test_a_file_replaced_in_place_is_read_again(tmp_path: Path) -> None:
    cert, _ = _pair(tmp_path, "ca")
    target = tmp_path / "bundle.pem"
    target.write_text("placeholder\n")
    assert not loadable(ca=str(target))
    target.write_bytes(Path(cert).read_bytes())
    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert loadable(ca=str(target))


def _pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"


def test_a_ca_block_that_is_not_shaped_like_a_certificate_is_refused(tmp_path: Path) -> None:
    real = Path(_pair(tmp_path, "ca")[0]).read_text()
    der = base64.b64decode("".join(real.splitlines()[1:-1]))
    for name, body in {
        "empty-sequence": bytes.fromhex("3000"),
        "truncated": der[:-10],
        "trailing": der + b"\x00",
        "two-parts": bytes.fromhex("30073003020101 3000".replace(" ", "")),
    }.items():
        path = tmp_path / f"{name}.pem"
        path.write_text(_pem(body))
        assert not loadable(ca=str(path)), name
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(real + _pem(bytes.fromhex("3000")))
    assert not loadable(ca=str(bundle))  # one bad block and Envoy refuses the file
    shaped = tmp_path / "shaped.pem"
    shaped.write_text(_pem(bytes.fromhex("300a3003020101300003010 0".replace(" ", ""))))
    assert loadable(ca=str(shaped))  # the shape only: its contents are the TLS library's
