"""Sidecar (networking.istio.io): the listeners and reachable hosts of a workload's proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Literal

from api import checks
from api.issues import Issues
from api.model import Spec
from api.networking.policy import (
    AlphaWorkloadSelector,
    ConnectionPoolSettings,
    Port,
    PortSelector,
    ServerTLSSettings,
)
from api.networking.policy_checks import (
    UNIX_PREFIX,
    check_alpha_selector,
    check_connection_pool,
    unix_address,
)
from api.networking.policy_tls import check_server_tls
from api.resources import NETWORKING, KindInfo

__all__ = [
    "KIND",
    "IstioEgressListener",
    "IstioIngressListener",
    "OutboundTrafficPolicy",
    "SidecarSpec",
]

CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]
_LOOPBACK_HOSTS = frozenset({"", "127.0.0.1", "0.0.0.0", "::1", "::"})


class IstioIngressListener(Spec):
    port: Port | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    default_endpoint: str | None = None
    tls: ServerTLSSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None


class IstioEgressListener(Spec):
    port: Port | None = None
    bind: str | None = None
    capture_mode: CaptureMode | None = None
    hosts: list[str] | None = None


class Destination(Spec):
    """The egress proxy: a VirtualService-style destination."""

    host: str | None = None
    subset: str | None = None
    port: PortSelector | None = None


class OutboundTrafficPolicy(Spec):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY", "ALLOW_ANY_DYNAMIC_DNS"] | None = None
    egress_proxy: Destination | None = None


class SidecarSpec(Spec):
    workload_selector: AlphaWorkloadSelector | None = None
    ingress: list[IstioIngressListener] | None = None
    egress: list[IstioEgressListener] | None = None
    inbound_connection_pool: ConnectionPoolSettings | None = None
    outbound_traffic_policy: OutboundTrafficPolicy | None = None

    refuse_removed = checks.refuse_removed_fields()  # localhost, localhostClientTls, ...


def _check_port_name_and_protocol(port: Port, at: Issues) -> None:
    if port.name and (m := checks.dns_label(port.name)) is not None:
        at.error(f"invalid port name: {m}", "port", "name")
    if port.protocol and (m := checks.protocol(port.protocol)) is not None:
        at.error(m, "port", "protocol")
    if port.target_port:
        at.error("targetPort is not supported on Sidecar ports", "port", "targetPort")


def _default_endpoint(value: str) -> str | None:
    if value.startswith(UNIX_PREFIX):
        return unix_address(value.removeprefix(UNIX_PREFIX))
    host, colon, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        colon = ""  # an unbracketed IPv6 address: not host:port
    if not colon:
        return f"defaultEndpoint {value!r} must be host:port or unix://path"
    if host not in _LOOPBACK_HOSTS:
        return (
            f"defaultEndpoint {value!r} must be 127.0.0.1:<port>, 0.0.0.0:<port>, "
            "[::1]:<port>, [::]:<port> or unix://path"
        )
    if not port.isdigit() or checks.port(int(port)) is not None:
        return f"defaultEndpoint port {port!r} is not valid"
    return None


def _check_ingress(spec: SidecarSpec, issues: Issues) -> None:
    numbers: set[int] = set()
    for i, listener in enumerate(spec.ingress or []):
        at = issues.at("ingress", i)
        port = listener.port
        if port is None:
            at.error("required field is missing", "port")
            continue
        number = port.number or 0
        if (m := checks.port(number)) is not None:
            at.error(m, "port", "number")
        _check_port_name_and_protocol(port, at)
        if listener.bind and not checks.is_ip(listener.bind):
            at.error(f"bind {listener.bind!r} must be an IP address", "bind")
        if number in numbers:
            at.error(f"port {number} is already used by another ingress listener", "port", "number")
        numbers.add(number)
        if listener.default_endpoint and (m := _default_endpoint(listener.default_endpoint)):
            at.error(m, "defaultEndpoint")
        protocol = (port.protocol or "").upper()
        if (tls := listener.tls) is not None:
            for name, value in (
                ("subjectAltNames", tls.subject_alt_names),
                ("httpsRedirect", tls.https_redirect),
                ("credentialName", tls.credential_name),
                ("credentialNames", tls.credential_names),
                ("tlsCertificates", tls.tls_certificates),
            ):
                if value:
                    at.error("not supported in Sidecar ingress TLS", "tls", name)
            if tls.mode in ("ISTIO_MUTUAL", "AUTO_PASSTHROUGH"):
                at.error(f"mode {tls.mode} is not supported in Sidecar ingress TLS", "tls", "mode")
            if protocol not in checks.TLS_LIKE:
                at.error("TLS settings need an HTTPS or TLS port", "tls")
            check_server_tls(tls, at.at("tls"))
        check_connection_pool(listener.connection_pool, at.at("connectionPool"))
        pool = listener.connection_pool
        if pool is not None and pool.http is not None and protocol not in checks.HTTP_LIKE:
            at.warn(
                f"HTTP connection pool settings on port {number} whose protocol is not HTTP "
                f"({protocol or 'unset'}): only the TCP settings apply",
                "connectionPool",
                "http",
            )


def _check_egress_port(listener: IstioEgressListener, at: Issues) -> None:
    """An egress entry with a port gets a listener of its own on bind:port (Pilot's
    model for sidecars without traffic capture); the warnings say what is not served."""
    assert listener.port is not None
    bind = listener.bind or ""
    _check_port_name_and_protocol(listener.port, at)
    if not listener.port.number:
        if not bind.startswith(UNIX_PREFIX):
            at.error("port 0 needs a unix:// bind address", "bind")
        elif (m := unix_address(bind.removeprefix(UNIX_PREFIX))) is not None:
            at.error(m, "bind")
        else:
            at.warn(
                "accepted but not applied by this mesh: unix socket egress listeners are "
                "not served (no listener)",
                "bind",
            )
        if listener.capture_mode not in (None, "DEFAULT", "NONE"):
            at.error("unix socket listeners need captureMode DEFAULT or NONE", "captureMode")
        return
    if (m := checks.port(listener.port.number)) is not None:
        at.error(m, "port", "number")
    if bind and not checks.is_ip(bind):
        at.error(f"bind {bind!r} must be an IP address", "bind")
    elif bind and not _local_bind(bind):
        at.warn(
            f"bind {bind} is served only by proxies whose instance address it is; "
            "a loopback address (127.0.0.1 when unset) or 0.0.0.0 binds on every proxy",
            "bind",
        )
    protocol = (listener.port.protocol or "").upper()
    if protocol == "UDP":
        at.warn(
            "accepted but not applied by this mesh: UDP egress ports get no listener",
            "port",
            "protocol",
        )
    elif not protocol:
        at.warn(
            "no protocol: the listener relays TCP (there is no protocol sniffing); "
            "set HTTP to route by Host",
            "port",
            "protocol",
        )


def _local_bind(bind: str) -> bool:
    address = ipaddress.ip_address(bind)
    return address.is_loopback or address.is_unspecified


def _check_egress_hosts(listener: IstioEgressListener, namespace: str, at: Issues) -> None:
    if not listener.hosts:
        at.error("an egress listener needs at least one host", "hosts")
        return
    by_namespace: dict[str, set[str]] = {}
    for j, host in enumerate(listener.hosts):
        ns, slash, name = host.partition("/")
        if slash:
            ns = namespace if ns == "." else ns
            names = by_namespace.setdefault(ns, set())
            if name != "*" and (name in names or "*" in names):
                at.warn(f"duplicate egress host {host!r}", "hosts", j)
            elif name == "*" and names:
                at.warn(
                    f"{host!r} already covers the earlier hosts of namespace {ns!r}", "hosts", j
                )
            names.add(name)
        # '~/host' (import nothing): checks.namespace_host only takes '~' before a namespace.
        checked = "*" + host[1:] if host.startswith("~/") else host
        if (m := checks.namespace_host(checked, sidecar=True)) is not None:
            at.error(m, "hosts", j)
    if "*" in by_namespace.get("*", set()) and len(by_namespace) > 1:
        at.warn("'*/*' selects every host; the other hosts add nothing", "hosts")


def _check_egress(spec: SidecarSpec, namespace: str, issues: Issues) -> None:
    numbers: set[int] = set()
    sockets: set[str] = set()
    catch_all = False
    last = len(spec.egress or []) - 1
    for i, listener in enumerate(spec.egress or []):
        at = issues.at("egress", i)
        if listener.port is None:
            if catch_all:
                at.error("only one egress listener may omit its port", "port")
            elif i != last:
                at.error("the egress listener without a port must be the last one", "port")
            catch_all = True
        else:
            _check_egress_port(listener, at)
            number = listener.port.number or 0
            if number == 0:
                bind = listener.bind or ""
                if bind in sockets:
                    at.error(f"unix socket {bind!r} is already used by another listener", "bind")
                sockets.add(bind)
            else:
                if number in numbers:
                    at.error(
                        f"port {number} is already used by another egress listener",
                        "port",
                        "number",
                    )
                numbers.add(number)
        _check_egress_hosts(listener, namespace, at)


def _check_outbound(policy: OutboundTrafficPolicy | None, issues: Issues) -> None:
    if policy is None:
        return
    if policy.mode == "ALLOW_ANY_DYNAMIC_DNS":
        issues.error("ALLOW_ANY_DYNAMIC_DNS can only be set in mesh config", "mode")
    proxy = policy.egress_proxy
    if proxy is None:
        return
    at = issues.at("egressProxy")
    if policy.mode != "ALLOW_ANY":
        issues.error("egressProxy needs mode ALLOW_ANY", "mode")
    host = proxy.host or ""
    if not host:
        at.error("required field is missing", "host")
    elif host == "*" or checks.fqdn(host) is not None:
        at.error(f"{host!r} must be a fully qualified domain name", "host")
    if proxy.subset and (m := checks.dns_label(proxy.subset)) is not None:
        at.error(m, "subset")
    if proxy.port is None:
        at.error("required field is missing", "port")
    elif (m := checks.port(proxy.port.number or 0)) is not None:
        at.error(m, "port", "number")


def validate(spec: SidecarSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    namespace = str(meta.get("namespace", ""))
    if not check_alpha_selector(spec.workload_selector, issues):
        return
    if (
        not spec.ingress
        and not spec.egress
        and spec.outbound_traffic_policy is None
        and spec.inbound_connection_pool is None
    ):
        issues.error(
            "a sidecar needs at least one of ingress, egress, outboundTrafficPolicy or "
            "inboundConnectionPool"
        )
    _check_ingress(spec, issues)
    _check_egress(spec, namespace, issues)
    _check_outbound(spec.outbound_traffic_policy, issues.at("outboundTrafficPolicy"))
    check_connection_pool(spec.inbound_connection_pool, issues.at("inboundConnectionPool"))


KIND = KindInfo(
    kind="Sidecar",
    group=NETWORKING,
    versions=("v1alpha3", "v1beta1", "v1"),
    plural="sidecars",
    spec_model=SidecarSpec,
    validate=validate,
)
