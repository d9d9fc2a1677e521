"""Gateway (gateway.networking.k8s.io v1, v1beta1): a proxy of a GatewayClass, its
listeners (name, port, protocol, hostname, TLS, which routes may attach) and
addresses; validated as the Gateway API's CRD does, CEL rules included (plus the
experimental channel's defaultScope field).

Istio's own protocols (HBONE, and any DOMAIN/NAME) pass the CRD's protocol pattern and
are accepted here; which listeners a controller serves is the translator's business.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field

from api import checks
from api.gateway_api import common
from api.gateway_api.common import (
    LabelSelector,
    LocalObjectReference,
    ObjectReference,
    PortNumber,
    SecretObjectReference,
)
from api.issues import Issues
from api.model import Spec
from api.resources import GATEWAY_API, KindInfo

__all__ = [
    "KIND",
    "AllowedListeners",
    "AllowedRoutes",
    "FrontendTLSConfig",
    "FrontendTLSValidation",
    "GatewayBackendTLS",
    "GatewayInfrastructure",
    "GatewaySpec",
    "GatewaySpecAddress",
    "GatewayTLSConfig",
    "Listener",
    "ListenerNamespaces",
    "ListenerTLSConfig",
    "LocalParametersReference",
    "RouteGroupKind",
    "RouteNamespaces",
    "TLSConfig",
    "TLSPortConfig",
    "validate",
]

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
# A protocol: a name (HTTP, HTTPS, TLS, TCP, UDP, HBONE, ...) or DOMAIN/NAME.
_PROTOCOL = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?|" + _SUBDOMAIN + r"/[A-Za-z0-9]+")
_ADDRESS_TYPE = re.compile(
    r"Hostname|IPAddress|NamedAddress|" + _SUBDOMAIN + r"/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
)
# Infrastructure label and annotation keys: [DNS-SUBDOMAIN/]NAME.
_META_KEY = re.compile(r"(" + _SUBDOMAIN + r"/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_NO_TLS = ("HTTP", "TCP", "UDP")
_NO_HOSTNAME = ("TCP", "UDP")
_NEEDS_TLS = ("HTTPS", "TLS")


class GatewaySpecAddress(Spec):
    type: str | None = None  # IPAddress
    value: str | None = None


class RouteGroupKind(Spec):
    group: str | None = None  # gateway.networking.k8s.io
    kind: str


class RouteNamespaces(Spec):
    from_: Literal["All", "Selector", "Same"] | None = Field(default=None, alias="from")  # Same
    selector: LabelSelector | None = None


class AllowedRoutes(Spec):
    namespaces: RouteNamespaces | None = None
    kinds: list[RouteGroupKind] | None = None


class ListenerTLSConfig(Spec):
    mode: Literal["Terminate", "Passthrough"] | None = None  # Terminate
    certificate_refs: list[SecretObjectReference] | None = None
    options: dict[str, str] | None = None


class Listener(Spec):
    name: str
    hostname: str | None = None
    port: PortNumber
    protocol: str
    tls: ListenerTLSConfig | None = None
    allowed_routes: AllowedRoutes | None = None  # routes of the Gateway's namespace


class LocalParametersReference(LocalObjectReference):
    """The implementation's own configuration for this Gateway, in its namespace."""


class GatewayInfrastructure(Spec):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    parameters_ref: LocalParametersReference | None = None


class ListenerNamespaces(Spec):
    from_: Literal["All", "Selector", "Same", "None"] | None = Field(
        default=None, alias="from"
    )  # None
    selector: LabelSelector | None = None


class AllowedListeners(Spec):
    namespaces: ListenerNamespaces | None = None


class GatewayBackendTLS(Spec):
    client_certificate_ref: SecretObjectReference | None = None


class FrontendTLSValidation(Spec):
    ca_certificate_refs: list[ObjectReference]
    mode: Literal["AllowValidOnly", "AllowInsecureFallback"] | None = None  # AllowValidOnly


class TLSConfig(Spec):
    validation: FrontendTLSValidation | None = None


class TLSPortConfig(Spec):
    port: PortNumber
    tls: TLSConfig


class FrontendTLSConfig(Spec):
    default: TLSConfig
    per_port: list[TLSPortConfig] | None = None


class GatewayTLSConfig(Spec):
    backend: GatewayBackendTLS | None = None
    frontend: FrontendTLSConfig | None = None


class GatewaySpec(Spec):
    gateway_class_name: str
    listeners: list[Listener]
    addresses: list[GatewaySpecAddress] | None = None
    infrastructure: GatewayInfrastructure | None = None
    allowed_listeners: AllowedListeners | None = None
    tls: GatewayTLSConfig | None = None
    default_scope: Literal["All", "None"] | None = None  # experimental channel


# --- listeners -------------------------------------------------------------------------


def _check_listener_tls(tls: ListenerTLSConfig, issues: Issues) -> None:
    if (m := checks.max_items(tls.certificate_refs, 64)) is not None:
        issues.error(m, "certificateRefs")
    for i, ref in enumerate(tls.certificate_refs or []):
        common.check_secret_ref(ref, issues.at("certificateRefs", i))
    if (m := checks.max_entries(tls.options, 16)) is not None:
        issues.error(m, "options")
    for key, value in (tls.options or {}).items():
        if (m := checks.max_length(value, 4096)) is not None:
            issues.error(m, "options", key)
    if (tls.mode or "Terminate") == "Terminate" and not tls.certificate_refs and not tls.options:
        issues.error(
            "certificateRefs or options must be specified when mode is Terminate",
            "certificateRefs",
        )


def _check_protocol_rules(listener: Listener, issues: Issues) -> None:
    protocol, tls = listener.protocol, listener.tls
    if protocol in _NO_TLS and tls is not None:
        issues.error(f"tls must not be specified for protocol {protocol}", "tls")
    if protocol in _NO_HOSTNAME and listener.hostname is not None:
        issues.error(f"hostname must not be specified for protocol {protocol}", "hostname")
    if protocol in _NEEDS_TLS and tls is None:
        issues.error(f"required for protocol {protocol}", "tls")
    if protocol == "HTTPS" and tls is not None and (tls.mode or "Terminate") != "Terminate":
        issues.error("tls mode must be Terminate for protocol HTTPS", "tls", "mode")


def _check_listener(listener: Listener, issues: Issues) -> None:
    if (m := common.section_name(listener.name)) is not None:
        issues.error(m, "name")
    if listener.hostname is not None and (m := common.hostname(listener.hostname)) is not None:
        issues.error(m, "hostname")
    protocol = listener.protocol
    if not protocol:
        issues.error("must not be empty", "protocol")
    elif (m := checks.max_length(protocol, 255)) is not None:
        issues.error(m, "protocol")
    elif not _PROTOCOL.fullmatch(protocol):
        issues.error(
            f"{protocol!r} is not a valid protocol (a name such as HTTP, or DOMAIN/NAME)",
            "protocol",
        )
    _check_protocol_rules(listener, issues)
    if listener.tls is not None:
        _check_listener_tls(listener.tls, issues.at("tls"))
    routes = listener.allowed_routes
    if routes is not None:
        if (m := checks.max_items(routes.kinds, 8)) is not None:
            issues.error(m, "allowedRoutes", "kinds")
        namespaces = routes.namespaces
        if namespaces is not None and namespaces.from_ == "Selector":
            at = issues.at("allowedRoutes", "namespaces")
            if namespaces.selector is None:
                at.warn("from Selector without a selector selects no namespace", "selector")
            else:
                common.warn_label_selector(namespaces.selector, at.at("selector"))
        for i, kind in enumerate(routes.kinds or []):
            at = issues.at("allowedRoutes", "kinds", i)
            if kind.group is not None and (m := common.group_name(kind.group)) is not None:
                at.error(m, "group")
            if (m := common.kind_name(kind.kind)) is not None:
                at.error(m, "kind")


def _check_listeners(listeners: Sequence[Listener], issues: Issues) -> None:
    if (m := checks.min_items(listeners, 1) or checks.max_items(listeners, 64)) is not None:
        issues.error(m, "listeners")
    names: dict[str, int] = {}
    combinations: dict[tuple[int, str, str | None], int] = {}
    for i, listener in enumerate(listeners):
        at = issues.at("listeners", i)
        _check_listener(listener, at)
        if (j := names.setdefault(listener.name, i)) != i:
            at.error(f"listener name must be unique within the Gateway (as listeners[{j}])", "name")
        combination = (listener.port, listener.protocol, listener.hostname)
        if (j := combinations.setdefault(combination, i)) != i:
            at.error(
                "the combination of port, protocol and hostname must be unique for each "
                f"listener (listeners[{j}] has the same)"
            )


# --- addresses, infrastructure, TLS ----------------------------------------------------


def _check_address(address: GatewaySpecAddress, issues: Issues) -> None:
    kind, value = address.type or "IPAddress", address.value
    if address.type is not None:
        if not address.type:
            issues.error("must not be empty", "type")
        elif (m := checks.max_length(address.type, 253)) is not None:
            issues.error(m, "type")
        elif not _ADDRESS_TYPE.fullmatch(address.type):
            issues.error(
                f"{address.type!r} is not an address type (Hostname, IPAddress, NamedAddress "
                "or DOMAIN/NAME)",
                "type",
            )
    if value is None:
        return
    if (m := checks.max_length(value, 253)) is not None:
        issues.error(m, "value")
    elif kind == "IPAddress" and not common.is_ip(value):
        issues.error(f"{value!r} is not an IPv4 or IPv6 address (type IPAddress)", "value")
    elif kind == "Hostname" and not common.HOSTNAME.fullmatch(value):
        issues.error(
            f"{value!r} is not a valid hostname (lower-case DNS labels, optionally '*.' first)",
            "value",
        )


def _check_addresses(addresses: Sequence[GatewaySpecAddress] | None, issues: Issues) -> None:
    if (m := checks.max_items(addresses, 16)) is not None:
        issues.error(m, "addresses")
    seen: set[tuple[str, str]] = set()
    for i, address in enumerate(addresses or []):
        _check_address(address, issues.at("addresses", i))
        key = (address.type or "IPAddress", address.value)
        if key[0] in ("IPAddress", "Hostname") and key[1] is not None:
            if key in seen:
                issues.error(f"{key[0]} values must be unique", "addresses", i, "value")
            seen.add((key[0], key[1]))


def _check_meta_map(
    values: Mapping[str, str] | None, issues: Issues, field: str, most: int, labels: bool
) -> None:
    """infrastructure.labels (`labels`) or .annotations."""
    if values is None:
        return
    if (m := checks.max_entries(values, most)) is not None:
        issues.error(m, field)
    for key, value in values.items():
        if not _META_KEY.fullmatch(key):
            issues.error(
                f"key {key!r} must be an optional DNS subdomain prefix and '/' followed by a "
                "name of up to 63 characters",
                field,
                key,
            )
        elif len(key.split("/")[0]) >= 253:
            issues.error(f"key {key!r}: the prefix must be shorter than 253 characters", field, key)
        if labels and (m := checks.max_length(value, 63)) is not None:
            issues.error(m, field, key)
        elif labels and not _LABEL_VALUE.fullmatch(value):
            issues.error(f"{value!r} is not a valid label value", field, key)
        elif not labels and (m := checks.max_length(value, 4096)) is not None:
            issues.error(m, field, key)


def _check_infrastructure(infrastructure: GatewayInfrastructure, issues: Issues) -> None:
    _check_meta_map(infrastructure.labels, issues, "labels", 8, labels=True)
    _check_meta_map(infrastructure.annotations, issues, "annotations", 16, labels=False)
    if infrastructure.parameters_ref is not None:
        common.check_local_ref(infrastructure.parameters_ref, issues.at("parametersRef"))


def _check_tls_config(config: TLSConfig, issues: Issues) -> None:
    validation = config.validation
    if validation is None:
        return
    refs = validation.ca_certificate_refs
    if (m := checks.min_items(refs, 1) or checks.max_items(refs, 16)) is not None:
        issues.error(m, "validation", "caCertificateRefs")
    for i, ref in enumerate(refs):
        common.check_object_ref(ref, issues.at("validation", "caCertificateRefs", i))


def _check_gateway_tls(tls: GatewayTLSConfig, issues: Issues) -> None:
    if tls.backend is not None and tls.backend.client_certificate_ref is not None:
        common.check_secret_ref(
            tls.backend.client_certificate_ref, issues.at("backend", "clientCertificateRef")
        )
    frontend = tls.frontend
    if frontend is None:
        return
    at = issues.at("frontend")
    _check_tls_config(frontend.default, at.at("default"))
    if (m := checks.max_items(frontend.per_port, 64)) is not None:
        at.error(m, "perPort")
    ports: dict[int, int] = {}
    for i, config in enumerate(frontend.per_port or []):
        if (j := ports.setdefault(config.port, i)) != i:
            at.error(
                f"port for TLS configuration must be unique within the Gateway (as perPort[{j}])",
                "perPort",
                i,
                "port",
            )
        _check_tls_config(config.tls, at.at("perPort", i, "tls"))


def validate(spec: GatewaySpec, meta: Mapping[str, Any], issues: Issues) -> None:
    if (m := common.object_name(spec.gateway_class_name)) is not None:
        issues.error(m, "gatewayClassName")
    _check_listeners(spec.listeners, issues)
    _check_addresses(spec.addresses, issues)
    if spec.infrastructure is not None:
        _check_infrastructure(spec.infrastructure, issues.at("infrastructure"))
    if spec.tls is not None:
        _check_gateway_tls(spec.tls, issues.at("tls"))
    # allowedRoutes/allowedListeners selectors: the CRD checks nothing in a label selector.


KIND = KindInfo(
    kind="Gateway",
    group=GATEWAY_API,
    versions=("v1beta1", "v1"),
    plural="gateways",
    spec_model=GatewaySpec,
    validate=validate,
    spec_required=True,
)
