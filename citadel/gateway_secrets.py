"""SDS names for gateway credentials, as Istio spells them, and the Secrets they resolve to.

- ``kubernetes://NAME``: a ``Secret`` named exactly that with ``tls_certificate``
  (the chain and the key) from the ``tls`` credential NAME;
- ``kubernetes://NAME-cacert``: a ``Secret`` named exactly that with
  ``validation_context.trusted_ca``: credential NAME's ``caCert`` if it has
  one, else the credential named ``NAME-cacert`` (its ``caCert``, else its
  ``cert``), Istio's convention for MUTUAL gateways.

Always in the caller's own namespace (the token's): the name carries none.
Pure: a credential source in, protobuf out.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from api.checks import is_k8s_name
from citadel.credentials import CredentialSource, GatewayCredential

__all__ = ["CA_SUFFIX", "PREFIX", "GatewayName", "Resolved", "parse_name", "resolve"]

PREFIX = "kubernetes://"
CA_SUFFIX = "-cacert"
ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class GatewayName:
    resource: str  # the SDS resource name, as Envoy asked for it
    credential: str  # NAME
    ca: bool  # the -cacert form: a validation context, not a certificate


def parse_name(resource: str) -> GatewayName | None:
    """None for anything that is not ``kubernetes://<Kubernetes name>``."""
    if not resource.startswith(PREFIX):
        return None
    name = resource.removeprefix(PREFIX)
    if name.endswith(CA_SUFFIX):  # always the CA form, as in Istio
        base = name.removesuffix(CA_SUFFIX)
        return GatewayName(resource, base, True) if is_k8s_name(base) else None
    return GatewayName(resource, name, False) if is_k8s_name(name) else None


@dataclass(frozen=True, slots=True)
class Resolved:
    secret: secret_pb2.Secret | None  # None: not there (yet)
    # What it was made from, "<credential>@<revision>" or "absent": part of the SDS
    # version, and safe to log (it says nothing of the key).
    source: str


def _source(cred: GatewayCredential) -> str:
    return f"{cred.name}@{cred.revision}"


def resolve(name: GatewayName, namespace: str, credentials: CredentialSource) -> Resolved:
    if not name.ca:
        cred = credentials.get(namespace, name.credential)
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
    own = credentials.get(namespace, name.credential)
    if own is not None and own.ca_pem:
        bundle, source = own.ca_pem, own
    else:
        other = credentials.get(namespace, name.credential + CA_SUFFIX)
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
