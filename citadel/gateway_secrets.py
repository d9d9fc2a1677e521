"""SDS names for gateway credentials, as Istio spells them (`api.credential_names`), and
the Secrets they resolve to.

- ``kubernetes://NAME``: a ``Secret`` named exactly that with ``tls_certificate``
  (the chain and the key) from the ``tls`` credential NAME of the caller's own
  namespace (the token's);
- ``kubernetes://NAME-cacert``: a ``Secret`` named exactly that with
  ``validation_context.trusted_ca``: credential NAME's ``caCert`` if it has
  one, else the credential named ``NAME-cacert`` (its ``caCert``, else its
  ``cert``), Istio's convention for MUTUAL gateways;
- ``kubernetes-gateway://NS/NAME`` and ``kubernetes-gateway://NS/NAME-cacert``: the
  same from namespace NS. For a caller of another namespace each credential read
  must be allowed by a ReferenceGrant in NS (`GrantSource`); one that is not is
  treated as absent (Istio's SDS leaves such a resource out of its answer too).

Pure: a credential source and a grant source in, protobuf out.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from api.credential_names import CA_SUFFIX, parse_sds_name
from citadel.credentials import CredentialSource, GatewayCredential
from citadel.grants import GrantSource

__all__ = [
    "ABSENT",
    "DENIED",
    "GatewayName",
    "Resolved",
    "parse_name",
    "resolve",
]

ABSENT = "absent"
DENIED = "denied"  # of another namespace, and no ReferenceGrant there allows it


@dataclass(frozen=True, slots=True)
class GatewayName:
    resource: str  # the SDS resource name, as Envoy asked for it
    credential: str  # NAME
    ca: bool  # the -cacert form: a validation context, not a certificate
    namespace: str | None = None  # NS of the kubernetes-gateway:// form; None: the caller's


def parse_name(resource: str) -> GatewayName | None:
    """None for anything that is not a gateway credential's SDS name."""
    parsed = parse_sds_name(resource)
    if parsed is None:
        return None
    return GatewayName(resource, parsed.name, parsed.ca, parsed.namespace)


@dataclass(frozen=True, slots=True)
class Resolved:
    secret: secret_pb2.Secret | None  # None: not there (yet), or not allowed
    # What it was made from, "<credential>@<revision>", "absent" or "denied":
    # part of the SDS version, and safe to log (it says nothing of the key).
    source: str


def _source(cred: GatewayCredential) -> str:
    return f"{cred.name}@{cred.revision}"


def resolve(
    name: GatewayName, caller: str, credentials: CredentialSource, grants: GrantSource
) -> Resolved:
    """`caller`: the namespace of the gateway asking (its token's)."""
    namespace = name.namespace or caller

    def permitted(credential: str) -> bool:
        return namespace == caller or grants.allows(caller, namespace, credential)

    def get(credential: str) -> GatewayCredential | None:
        return credentials.get(namespace, credential) if permitted(credential) else None

    readable = [name.credential, name.credential + CA_SUFFIX] if name.ca else [name.credential]
    if not any(permitted(c) for c in readable):
        return Resolved(None, DENIED)
    if not name.ca:
        cred = get(name.credential)
        if cred is None or cred.type != "tls":
            return Resolved(None, ABSENT)
        secret = secret_pb2.Secret(
            name=name.resource,
            tls_certificate=common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_bytes=cred.cert_chain_pem),
                private_key=base_pb2.DataSource(inline_bytes=cred.key_pem),
            ),
        )
        return Resolved(secret, _source(cred))
    own = get(name.credential)
    if own is not None and own.ca_pem:
        bundle, source = own.ca_pem, own
    else:
        other = get(name.credential + CA_SUFFIX)
        if other is None or not (other.ca_pem or other.cert_chain_pem):
            return Resolved(None, ABSENT)
        bundle, source = other.ca_pem or other.cert_chain_pem, other
    secret = secret_pb2.Secret(
        name=name.resource,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_bytes=bundle)
        ),
    )
    return Resolved(secret, _source(source))
