"""Gateway credentials (Istio's ``credentialName``): what one is, the checks it passes,
and the in-memory map SDS serves them from.

A credential is what a Kubernetes ``tls`` or ``generic`` secret holds for an
Istio gateway, kept by Citadel per namespace:

- ``tls``: ``cert`` (the chain, leaf first) and ``key``, and optionally
  ``caCert`` (the bundle that verifies clients, for MUTUAL servers);
- ``generic``: ``caCert`` only (Istio's ``NAME-cacert`` convention).

The document an admin sends (``PUT /v1/secrets/...``) and the one sealed in
Consul are the same shape and go through the same check, `credential_from_document`:
a value read back from Consul is checked again, never trusted because we wrote it.
Key material never appears in a repr, an error message or a log line.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.checks import is_k8s_label, is_k8s_name

__all__ = [
    "CredentialError",
    "CredentialMap",
    "CredentialSource",
    "CredentialType",
    "GatewayCredential",
    "check_name",
    "check_namespace",
    "credential_from_document",
    "credential_warnings",
    "to_document",
]

CredentialType = Literal["tls", "generic"]
_FIELDS: dict[CredentialType, tuple[frozenset[str], frozenset[str]]] = {
    # type -> (required fields, optional fields), besides "type" itself
    "tls": (frozenset({"cert", "key"}), frozenset({"caCert"})),
    "generic": (frozenset({"caCert"}), frozenset()),
}
# What Envoy (BoringSSL) serves: refusing anything else here beats a NACK at the gateway.
_EC_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_RSA_MIN_BITS = 2048


class CredentialError(ValueError):
    """A credential refused, naming the field at fault (``type``, ``cert``, ``key``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        # An unknown field may be named anything ("", "a b"): quoted, it stays readable.
        super().__init__(f"{field if field.isidentifier() else repr(field)}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class GatewayCredential:
    namespace: str
    name: str
    type: CredentialType
    cert_chain_pem: bytes  # leaf first; empty for generic
    key_pem: bytes = field(repr=False)  # PKCS#8; empty for generic
    ca_pem: bytes  # empty when a tls credential has no caCert
    not_after: datetime.datetime  # the leaf's (tls), the earliest in the bundle (generic)
    # Changes with every write (a digest of the sealed value): SDS versions are built from
    # it, so a stream learns of a change without anything derived from key material.
    revision: str = ""


def check_namespace(namespace: str) -> None:
    if not is_k8s_label(namespace):
        raise CredentialError("namespace", f"{namespace!r} is not a DNS label")


def check_name(namespace: str, name: str) -> None:
    check_namespace(namespace)
    if not is_k8s_name(name):
        raise CredentialError("name", f"{name!r} is not a valid Kubernetes name")


def _bytes(field_name: str, text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800" in the JSON) is no PEM
        raise CredentialError(field_name, "is not PEM text") from None


def _certs(field_name: str, text: str) -> list[x509.Certificate]:
    raw = _bytes(field_name, text)
    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError:
        certs = []
    if not certs:
        raise CredentialError(field_name, "not a PEM certificate (or chain)")
    return certs


def _private_key(text: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    raw = _bytes("key", text)
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except TypeError:
        raise CredentialError(
            "key", "is encrypted: give it unencrypted (Citadel encrypts it at rest)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CredentialError("key", "not a PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_CURVES:
        return key
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= _RSA_MIN_BITS:
        return key
    raise CredentialError(
        "key", f"Envoy serves RSA ({_RSA_MIN_BITS} bits or more) or ECDSA P-256/384/521 keys"
    )


def _pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _fields(doc: Any) -> tuple[CredentialType, dict[str, str]]:
    if not isinstance(doc, dict):
        raise CredentialError("body", "must be a JSON object")
    kind = doc.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise CredentialError("type", 'must be "tls" or "generic"')
    required, optional = _FIELDS[kind]
    unknown = sorted(set(doc) - required - optional - {"type"})
    if unknown:
        allowed = ", ".join(sorted(required | optional))
        raise CredentialError(unknown[0], f"unknown field (a {kind} credential has {allowed})")
    missing = sorted(required - set(doc))
    if missing:
        raise CredentialError(missing[0], f"required for a {kind} credential")
    values: dict[str, str] = {}
    for name in sorted(required | optional):
        if name in doc:
            value = doc[name]
            if not isinstance(value, str):
                raise CredentialError(name, "must be a string (PEM)")
            values[name] = value
    return kind, values


def credential_from_document(
    namespace: str, name: str, doc: Any, revision: str = ""
) -> GatewayCredential:
    """A checked credential from its document, in canonical PEM (certificates
    re-encoded, the key as PKCS#8: text around the PEM blocks is dropped)."""
    check_name(namespace, name)
    kind, values = _fields(doc)
    ca = _certs("caCert", values["caCert"]) if "caCert" in values else []
    if kind == "generic":
        return GatewayCredential(
            namespace,
            name,
            kind,
            b"",
            b"",
            _pem(ca),
            min(c.not_valid_after_utc for c in ca),
            revision,
        )
    chain = _certs("cert", values["cert"])
    key = _private_key(values["key"])
    try:
        public = chain[0].public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise CredentialError("cert", "its public key is of a kind Envoy does not serve") from None
    if public != key.public_key():
        raise CredentialError("key", "does not match the public key of the certificate (cert)")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return GatewayCredential(
        namespace,
        name,
        kind,
        _pem(chain),
        key_pem,
        _pem(ca),
        chain[0].not_valid_after_utc,
        revision,
    )


def to_document(cred: GatewayCredential) -> dict[str, str]:
    """The document that is sealed: the same shape an admin sends."""
    doc: dict[str, str] = {"type": cred.type}
    if cred.type == "tls":
        doc["cert"] = cred.cert_chain_pem.decode()
        doc["key"] = cred.key_pem.decode()
    if cred.ca_pem:
        doc["caCert"] = cred.ca_pem.decode()
    return doc


def credential_warnings(cred: GatewayCredential, now: datetime.datetime) -> list[str]:
    """Accepted, but worth telling the admin (an expired cert may be a deliberate stopgap)."""
    out = []
    main = "cert" if cred.type == "tls" else "caCert"
    if cred.not_after <= now:
        out.append(f"{main}: expired at {cred.not_after.isoformat()}")
    first = x509.load_pem_x509_certificates(cred.cert_chain_pem or cred.ca_pem)[0]
    if first.not_valid_before_utc > now:
        out.append(f"{main}: not valid before {first.not_valid_before_utc.isoformat()}")
    if cred.type == "tls" and cred.name.endswith("-cacert"):
        base = cred.name.removesuffix("-cacert")
        out.append(
            f"name: kubernetes://{cred.name} is the CA bundle of {base!r}: this credential's "
            "certificate and key are never served (only its caCert, else its cert, as a CA)"
        )
    return out


class CredentialSource(Protocol):
    """What SDS reads gateway credentials from (`CredentialMap`; Consul feeds it)."""

    def get(self, namespace: str, name: str) -> GatewayCredential | None: ...

    def watch(self, namespace: str, event: asyncio.Event) -> None:
        """Set `event` whenever a credential of `namespace` is created, changed or deleted."""

    def unwatch(self, namespace: str, event: asyncio.Event) -> None: ...


class CredentialMap:
    """The credentials held in memory, by namespace and name. The Consul watch replaces
    the whole map at each change; tests put and remove single credentials."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], GatewayCredential] = {}
        self._watchers: dict[str, set[asyncio.Event]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, namespace: str, name: str) -> GatewayCredential | None:
        return self._items.get((namespace, name))

    def watch(self, namespace: str, event: asyncio.Event) -> None:
        self._watchers.setdefault(namespace, set()).add(event)

    def unwatch(self, namespace: str, event: asyncio.Event) -> None:
        events = self._watchers.get(namespace)
        if events is not None:
            events.discard(event)
            if not events:
                del self._watchers[namespace]

    def replace(self, items: Mapping[tuple[str, str], GatewayCredential]) -> set[tuple[str, str]]:
        """Hold exactly `items`; wake the namespaces where something changed. Returns the
        (namespace, name) pairs that changed."""
        old = self._items
        changed = {k for k in old.keys() ^ items.keys()}
        changed |= {k for k, v in items.items() if k in old and old[k].revision != v.revision}
        self._items = dict(items)
        for namespace in {ns for ns, _ in changed}:
            for event in self._watchers.get(namespace, ()):
                event.set()
        return changed

    def put(self, cred: GatewayCredential) -> None:
        self.replace({**self._items, (cred.namespace, cred.name): cred})

    def remove(self, namespace: str, name: str) -> None:
        self.replace({k: v for k, v in self._items.items() if k != (namespace, name)})
