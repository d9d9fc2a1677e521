"""Gateway credentials encrypted at rest: AES-256-GCM under a key only Citadel holds.

Consul's KV is readable by whoever holds a Consul token with read access to
``mesh/secrets/``; a private key stored there must be useless to them. Each
value is sealed with a fresh 96-bit nonce, and the credential's
``<namespace>/<name>`` is the associated data: a ciphertext copied to another
key (another namespace, another name) no longer opens, so write access to KV
cannot hand one namespace's key to another namespace's gateway.

Stored form, a JSON envelope (``v`` is the format version; ``kid`` names the
key, so a value sealed under another Citadel's key is reported as such
rather than as tampering)::

    {"v": 1, "alg": "AES-256-GCM", "kid": "<16 hex>", "nonce": "<b64>", "ciphertext": "<b64>"}

The key is 32 random bytes in Citadel's state directory, created 0600 from
the first byte (as the CA and token keys). Several Citadels sharing one
Consul need the same key file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from citadel.ca import _write_private

__all__ = ["FORMAT_VERSION", "KEY_FILE", "SealError", "Sealer"]

FORMAT_VERSION = 1
KEY_FILE = "credentials-key"
_ALG = "AES-256-GCM"
_KEY_BYTES = 32
_NONCE_BYTES = 12


class SealError(Exception):
    """A key that cannot be used, or a value that does not open (tampered, moved, other key)."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise SealError(f"the credentials key must be {_KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"meshpy credentials key id\0" + key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Sealer(kid={self.key_id})"

    @classmethod
    def load_or_create(cls, path: Path) -> Sealer:
        if path.exists():
            os.chmod(path, 0o600)
            return cls(path.read_bytes())
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(_KEY_BYTES)
        _write_private(path, key)
        return cls(key)

    def seal(self, associated: str, plaintext: bytes) -> str:
        """The envelope (JSON text) for plaintext, bound to `associated` (``ns/name``)."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, associated.encode())
        envelope = {
            "v": FORMAT_VERSION,
            "alg": _ALG,
            "kid": self.key_id,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(sealed).decode(),
        }
        return json.dumps(envelope, separators=(",", ":"), sort_keys=True)

    def open(self, associated: str, envelope: bytes | str) -> bytes:
        """The plaintext, if the envelope was sealed by this key for `associated`."""
        try:
            doc: Any = json.loads(envelope)
        except (ValueError, UnicodeDecodeError) as err:
            raise SealError("not a sealed envelope (not JSON)") from err
        if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
            raise SealError(f"not a version {FORMAT_VERSION} sealed envelope")
        if doc.get("alg") != _ALG:
            raise SealError(f"sealed with another algorithm than {_ALG}")
        if doc.get("kid") != self.key_id:
            raise SealError("sealed under another key (its kid is not this key's)")
        nonce, sealed = doc.get("nonce"), doc.get("ciphertext")
        if not isinstance(nonce, str) or not isinstance(sealed, str):
            raise SealError("the envelope lacks its nonce or ciphertext")
        try:
            raw_nonce = base64.b64decode(nonce, validate=True)
            raw_sealed = base64.b64decode(sealed, validate=True)
        except (binascii.Error, ValueError) as err:
            raise SealError("the envelope's nonce or ciphertext is not base64") from err
        if len(raw_nonce) != _NONCE_BYTES:
            raise SealError("the envelope's nonce has the wrong length")
        try:
            return self._aead.decrypt(raw_nonce, raw_sealed, associated.encode())
        except InvalidTag as err:
            raise SealError(
                f"does not authenticate as {associated} (tampered, or moved from another name)"
            ) from err
