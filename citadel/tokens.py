"""Workload tokens: proof of an identity, signed by Citadel, bound to ns + sa, expiring.

    v1.<base64url(JSON claims)>.<base64url(Ed25519 signature)>

Claims: ``ns``, ``sa``, ``iat``, ``exp``, ``jti``, and ``gw: true`` on a
gateway's token (absent otherwise, so tokens minted before the claim existed
still verify, as non-gateway). Only an admin credential mints them
(`meshctl token [--gateway]`); Envoy presents one in its SDS stream's initial
metadata, a CSR client in its call metadata. The gateway role is what lets a
caller fetch its namespace's gateway credentials (``kubernetes://NAME``) over SDS.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from citadel.ca import _write_private, spiffe_id

__all__ = ["Claims", "TokenError", "TokenSigner"]

MAX_TTL = 366 * 24 * 3600


class TokenError(Exception):
    """A token that proves nothing: malformed, forged or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Claims:
    namespace: str
    service_account: str
    issued_at: int
    expires_at: int
    token_id: str
    gateway: bool = False  # may fetch its namespace's gateway credentials over SDS


class TokenSigner:
    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key
        self._public = key.public_key()

    @classmethod
    def load_or_create(cls, path: Path) -> TokenSigner:
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, ed25519.Ed25519PrivateKey):
                raise TokenError(f"{path}: expected an Ed25519 key")
            os.chmod(path, 0o600)
            return cls(key)
        key = ed25519.Ed25519PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(
            path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        return cls(key)

    def mint(
        self, namespace: str, service_account: str, ttl_seconds: int, gateway: bool = False
    ) -> str:
        spiffe_id("x", namespace, service_account)  # validates both names
        if not 0 < ttl_seconds <= MAX_TTL:
            raise TokenError(f"ttl must be within 1..{MAX_TTL} seconds")
        now = int(time.time())
        claims: dict[str, str | int | bool] = {
            "ns": namespace,
            "sa": service_account,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": secrets.token_hex(8),
        }
        if gateway:
            claims["gw"] = True
        body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        signature = _b64(self._key.sign(f"v1.{body}".encode()))
        return f"v1.{body}.{signature}"

    def verify(self, token: str, now: float | None = None) -> Claims:
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != "v1":
            raise TokenError("not a meshpy workload token")
        try:
            self._public.verify(_unb64(parts[2]), f"v1.{parts[1]}".encode())
            raw = json.loads(_unb64(parts[1]))
            gateway = raw.get("gw", False)
            if not isinstance(gateway, bool):
                raise ValueError("gw must be a boolean")
            claims = Claims(
                str(raw["ns"]),
                str(raw["sa"]),
                int(raw["iat"]),
                int(raw["exp"]),
                str(raw["jti"]),
                gateway,
            )
        except InvalidSignature as err:
            raise TokenError("token signature does not verify") from err
        except (ValueError, KeyError, TypeError) as err:
            raise TokenError("malformed token") from err
        if (now if now is not None else time.time()) >= claims.expires_at:
            raise TokenError("token expired")
        return claims
