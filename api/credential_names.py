"""A gateway server's ``credentialName`` and the SDS names Envoy asks Citadel for, as
Istio spells them: written by the Gateway API translation and Pilot, read by Citadel.

- ``NAME`` (or ``kubernetes://NAME``): the credential NAME of the gateway's own
  namespace; SDS name ``kubernetes://NAME``.
- ``kubernetes-gateway://NS/NAME``: the credential NAME of namespace NS (what a Gateway
  API listener's certificateRef to another namespace becomes); the SDS name is the same.
  Citadel serves it to a gateway of another namespace only while a ReferenceGrant in NS
  allows Gateways of the gateway's namespace to refer to that Secret.

The bundle that verifies a MUTUAL server's clients is the SDS name plus ``-cacert``.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.checks import is_k8s_label, is_k8s_name

__all__ = [
    "CA_SUFFIX",
    "KUBERNETES",
    "KUBERNETES_GATEWAY",
    "SdsCredential",
    "ca_sds_name",
    "namespaced",
    "parse_sds_name",
    "problem",
    "sds_name",
]

KUBERNETES = "kubernetes://"
KUBERNETES_GATEWAY = "kubernetes-gateway://"
CA_SUFFIX = "-cacert"


def namespaced(namespace: str, name: str) -> str:
    """The credentialName of the credential `name` of `namespace`."""
    return f"{KUBERNETES_GATEWAY}{namespace}/{name}"


def sds_name(credential_name: str) -> str:
    """The SDS name of a server's certificate (chain and key); a name written with
    either prefix is already one, as in Istio."""
    if credential_name.startswith((KUBERNETES_GATEWAY, KUBERNETES)):
        return credential_name
    return KUBERNETES + credential_name


def ca_sds_name(credential_name: str) -> str:
    """The SDS name of the CA bundle that verifies a server's clients."""
    return sds_name(credential_name) + CA_SUFFIX


@dataclass(frozen=True, slots=True)
class SdsCredential:
    """What an SDS name asks for."""

    namespace: str | None  # None: the asking gateway's own
    name: str  # the credential (for the CA form, the one whose bundle is asked for)
    ca: bool  # the -cacert form: a validation context, not a certificate


def parse_sds_name(resource: str) -> SdsCredential | None:
    """None for anything that is not one of the two forms with Kubernetes names. A name
    that ends in ``-cacert`` is always the CA form, as in Istio."""
    if resource.startswith(KUBERNETES):
        namespace, name = None, resource.removeprefix(KUBERNETES)
    elif resource.startswith(KUBERNETES_GATEWAY):
        namespace, slash, name = resource.removeprefix(KUBERNETES_GATEWAY).partition("/")
        if not slash or not is_k8s_label(namespace):
            return None
    else:
        return None
    ca = name.endswith(CA_SUFFIX)
    base = name.removesuffix(CA_SUFFIX) if ca else name
    return SdsCredential(namespace, base, ca) if is_k8s_name(base) else None


def problem(credential_name: str) -> str | None:
    """Why Citadel could never serve this credentialName, or None."""
    if parse_sds_name(sds_name(credential_name)) is None:
        return (
            f"{credential_name!r} is not a credential name: NAME (a Kubernetes name, "
            f"optionally {KUBERNETES}NAME) or {KUBERNETES_GATEWAY}NAMESPACE/NAME"
        )
    return None
