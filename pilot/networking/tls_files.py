"""Whether Envoy will load the TLS files a rule names, or refuse the whole update.

Envoy reads `filename` data sources when the config arrives and NACKs the update
(every cluster of the CDS response, not just the one) when a file is missing, in
/dev, /proc or /sys, holds no PEM of the expected kind, or holds a private key that
does not belong to its certificate. Pilot checks the same things first, on its
own host, the only place it can look (the proxies' host under `meshctl up`; where
proxies run elsewhere, a file must be at the same path on both); a rule that fails
is then not honourable and the caller fails closed. Parsed files are cached by
path, size and modification time: a snapshot build checks the same few files for
many clusters.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import warnings
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["envoy_can_load", "loadable"]

# Envoy refuses (as the whole update) a file whose real path starts with one of these.
_ENVOY_ILLEGAL_PATHS = ("/dev", "/sys", "/proc")
_MAX_BYTES = 16 * 1024 * 1024  # bigger than any CA bundle; not read into memory


def envoy_can_load(path: str) -> bool:
    """A regular file, outside the trees Envoy never reads from."""
    real = os.path.realpath(path)
    return os.path.isfile(real) and not real.startswith(_ENVOY_ILLEGAL_PATHS)


def loadable(ca: str = "", crl: str = "", cert_chain: str = "", private_key: str = "") -> bool:
    """Every file given (empty: not used) is one Envoy will load as that kind, and the
    key, when given with a chain, belongs to the chain's first certificate."""
    checks = (("ca", ca), ("crl", crl), ("chain", cert_chain), ("key", private_key))
    parsed = {}
    for kind, path in checks:
        if not path:
            continue
        if not envoy_can_load(path):
            return False
        stat = os.stat(path)
        value = _parse(os.path.realpath(path), stat.st_size, stat.st_mtime_ns, kind)
        if value is None:
            return False
        parsed[kind] = value
    if "chain" in parsed and "key" in parsed:
        return parsed["chain"] == parsed["key"]
    return True


@lru_cache(maxsize=256)
def _parse(path: str, size: int, mtime_ns: int, kind: str) -> bytes | None:
    """None when the file is not one Envoy would load as `kind`; else something to
    match a chain to its key by (the DER of the public key), or b"" when no match
    is needed. `size` and `mtime_ns` are only the cache key."""
    if size > _MAX_BYTES:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
        if kind == "ca":
            # Only the shape of each certificate: a bundle may hold certificates that
            # BoringSSL loads and stricter parsers refuse (Debian's has one with a
            # negative serial).
            return b"" if _pem_blocks(data, b"CERTIFICATE") else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecations are not refusals
            if kind == "chain":
                certs = x509.load_pem_x509_certificates(data)
                return _public_der(certs[0].public_key())
            if kind == "crl":
                x509.load_pem_x509_crl(data)
                return b""
            key = serialization.load_pem_private_key(data, password=None)
            return _public_der(key.public_key())
    except (OSError, ValueError, TypeError):
        return None


_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def _pem_blocks(data: bytes, label: bytes) -> int:
    """How many `label` PEM blocks hold a certificate's outer shape; 0 if any does not."""
    count = 0
    for found, body in _PEM.findall(data):
        if found != label:
            continue
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except binascii.Error:
            return 0
        if not _certificate_shaped(der):
            return 0
        count += 1
    return count


def _certificate_shaped(der: bytes) -> bool:
    """DER of SEQUENCE { SEQUENCE tbsCertificate, SEQUENCE algorithm, BIT STRING
    signature } and nothing after it (RFC 5280 4.1): not its contents, which only the
    TLS library that loads it judges."""
    outer = _tlv(der, 0)
    if outer is None or outer[0] != 0x30 or outer[2] != len(der):
        return False
    tags = []
    at = outer[1]
    while at < len(der):
        element = _tlv(der, at)
        if element is None:
            return False
        tags.append(element[0])
        at = element[2]
    return tags == [0x30, 0x30, 0x03]


def _tlv(der: bytes, at: int) -> tuple[int, int, int] | None:
    """(tag, start of the value, end of the element) of the DER element at `at`."""
    if at + 2 > len(der):
        return None
    tag, first = der[at], der[at + 1]
    start = at + 2
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if size == 0 or size > 4 or start + size > len(der):
            return None
        length = int.from_bytes(der[start : start + size], "big")
        start += size
    end = start + length
    return (tag, start, end) if end <= len(der) else None


def _public_der(public_key: object) -> bytes:
    return public_key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
