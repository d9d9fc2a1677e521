"""Gateway (networking.istio.io): the ports, hosts and TLS of an ingress/egress proxy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api import checks
from api.issues import Issues
from api.model import Spec
from api.networking.policy import Port, ServerTLSSettings
from api.networking.policy_checks import UNIX_PREFIX, unix_address
from api.networking.policy_tls import check_server_tls
from api.resources import NETWORKING, KindInfo

__all__ = ["KIND", "GatewaySpec", "Server", "server_admits"]

# Set on gateways converted from the Kubernetes Gateway API.
GATEWAY_SEMANTICS = "internal.istio.io/gateway-semantics"


class Server(Spec):
    port: Port | None = None
    bind: str | None = None
    hosts: list[str] | None = None
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None


class GatewaySpec(Spec):
    servers: list[Server] | None = None
    selector: dict[str, str] | None = None


def server_admits(
    server_host: str, vs_host: str, vs_namespace: str, gateway_namespace: str
) -> bool:
    """A server's `[namespace/]host` admits a VirtualService's host: `*/` or no prefix
    any namespace, `./` the Gateway's own namespace, `ns/` that one."""
    ns, slash, host = server_host.partition("/")
    if not slash:
        ns, host = "*", server_host
    if ns == ".":
        ns = gateway_namespace
    if ns != "*" and ns != vs_namespace:
        return False
    if host == "*" or vs_host == "*":
        return True
    if host.startswith("*"):
        return vs_host.endswith(host[1:])
    return host == vs_host


def _check_host(host: str, converted: bool) -> str | None:
    if converted and host.startswith("~"):
        ns, slash, name = host[1:].partition("/")
        host = f"{ns or '*'}{slash}{name}"
    return checks.namespace_host(host, sidecar=False)


def _check_port(server: Server, at: Issues) -> bool:
    """Port and bind; True when the port is usable for the protocol checks."""
    port, bind = server.port, server.bind or ""
    if port is None:
        at.error("required field is missing", "port")
        return False
    ok = True
    if not port.protocol:
        at.error("required field is missing", "port", "protocol")
        ok = False
    elif (m := checks.protocol(port.protocol)) is not None:
        at.error(m, "port", "protocol")
        ok = False
    number = port.number or 0
    if bind.startswith(UNIX_PREFIX):
        if number != 0:
            at.error("port number must be 0 with a unix socket bind", "port", "number")
            ok = False
        if (m := unix_address(bind.removeprefix(UNIX_PREFIX))) is not None:
            at.error(m, "bind")
    else:
        if (m := checks.port(number)) is not None:
            at.error(m, "port", "number")
            ok = False
        if bind and not checks.is_ip(bind):
            at.error(f"bind {bind!r} must be an IP address or unix://path", "bind")
    if port.target_port:
        at.error("targetPort is not supported on Gateway ports", "port", "targetPort")
    if not port.name:
        at.error("required field is missing", "port", "name")
    return ok


def _check_server(server: Server, converted: bool, at: Issues) -> None:
    if not server.hosts:
        at.error("a server needs at least one host", "hosts")
    for i, host in enumerate(server.hosts or []):
        if (m := _check_host(host, converted)) is not None:
            at.error(m, "hosts", i)
    port_ok = _check_port(server, at)
    check_server_tls(server.tls, at.at("tls"))
    if not port_ok or server.port is None:
        return
    protocol = (server.port.protocol or "").upper()
    tls = server.tls
    if protocol in checks.TLS_LIKE:
        if tls is None:
            at.error(f"{protocol} servers need TLS settings", "tls")
    elif tls is not None:
        if protocol in checks.HTTP_LIKE:
            passthrough = (tls.mode or "PASSTHROUGH") in ("PASSTHROUGH", "AUTO_PASSTHROUGH")
            if not passthrough or tls.ca_certificates or tls.private_key or tls.server_certificate:
                at.error(
                    "plain-text HTTP servers cannot have TLS settings (only httpsRedirect)", "tls"
                )
        else:
            at.error(f"{protocol} servers cannot have TLS settings", "tls")


def validate(spec: GatewaySpec, meta: Mapping[str, Any], issues: Issues) -> None:
    converted = (meta.get("annotations") or {}).get(GATEWAY_SEMANTICS) == "gateway"
    name = str(meta.get("name", ""))
    if name and not converted and checks.dns_label(name) is not None:
        metadata = Issues(("metadata",), issues.items)  # shares the list
        metadata.error(f"gateway name {name!r} must be a DNS label (no dots)", "name")
    if not spec.servers:
        issues.error("a gateway needs at least one server", "servers")
    port_names: set[str] = set()
    for i, server in enumerate(spec.servers or []):
        at = issues.at("servers", i)
        _check_server(server, converted, at)
        if server.port is None:
            continue
        port_name = server.port.name or ""
        if port_name in port_names:
            at.error(f"port names must be unique across servers: {port_name!r}", "port", "name")
        port_names.add(port_name)
        protocol = (server.port.protocol or "").upper()
        if (
            server.tls is not None
            and server.tls.https_redirect
            and protocol not in checks.HTTP_LIKE
        ):
            at.warn("httpsRedirect only applies to HTTP servers", "tls", "httpsRedirect")
    # spec.selector: Istio checks nothing there (not even wildcards or empty keys), and
    # neither does its CRD; a selector no proxy's labels match just selects none.


KIND = KindInfo(
    kind="Gateway",
    group=NETWORKING,
    versions=("v1alpha3", "v1beta1", "v1"),
    plural="gateways",
    spec_model=GatewaySpec,
    validate=validate,
)
