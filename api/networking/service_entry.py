"""ServiceEntry (networking.istio.io): adds hosts (often outside the mesh) to the registry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import field_validator

from api import checks
from api.issues import Issues
from api.model import Spec
from api.networking.policy import AlphaWorkloadSelector, Port, UInt32
from api.networking.policy_checks import (
    UNIX_PREFIX,
    check_alpha_selector,
    check_export_to,
    unix_address,
)
from api.resources import NETWORKING, KindInfo

__all__ = ["KIND", "ServiceEntrySpec", "WorkloadEntry", "check_entry_limits"]

Location = Literal["MESH_EXTERNAL", "MESH_INTERNAL"]
Resolution = Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"]
_DYNAMIC_DNS_PROTOCOLS = frozenset({"HTTP", "TLS", "GRPC", "HTTP2"})
_WAYPOINT_LABEL = "istio.io/use-waypoint"
# The CRD's rule for endpoint port names: shorter than 63 characters, and this pattern.
_ENDPOINT_PORT_NAME = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?")


class WorkloadEntry(Spec):
    address: str | None = None
    ports: dict[str, UInt32] | None = None
    labels: dict[str, str] | None = None
    network: str | None = None
    locality: str | None = None
    weight: UInt32 | None = None
    service_account: str | None = None


class ServiceEntrySpec(Spec):
    hosts: list[str]
    addresses: list[str] | None = None
    ports: list[Port] | None = None
    location: Location | None = None
    resolution: Resolution | None = None
    endpoints: list[WorkloadEntry] | None = None
    workload_selector: AlphaWorkloadSelector | None = None
    export_to: list[str] | None = None
    subject_alt_names: list[str] | None = None

    @field_validator("addresses", mode="before")
    @classmethod
    def _unsplit_ipv6(cls, value: Any) -> Any:
        # Unquoted in a flow list, `[1.2.3.4, 2001:db8::]` reads as a one-key mapping
        # {"2001:db8:": null} (the last ':' looks like a key separator); put it back together.
        if isinstance(value, list):
            return [
                next(iter(v)) + ":"
                if isinstance(v, dict) and len(v) == 1 and next(iter(v.values())) is None
                else v
                for v in value
            ]
        return value


def check_entry_limits(entry: WorkloadEntry, issues: Issues) -> None:
    """The CRD's size limits of a workload entry (ServiceEntry endpoints, WorkloadEntry,
    WorkloadGroup template), and its port names; `issues` is rooted at the entry."""
    for field, value, limit in (
        ("address", entry.address, 256),
        ("network", entry.network, 2048),
        ("locality", entry.locality, 2048),
        ("serviceAccount", entry.service_account, 253),
    ):
        if (m := checks.max_length(value, limit)) is not None:
            issues.error(m, field)
    if (m := checks.max_entries(entry.labels, 256)) is not None:
        issues.error(m, "labels")
    if (m := checks.max_entries(entry.ports, 128)) is not None:
        issues.error(m, "ports")
    for name in entry.ports or {}:
        if len(name) >= 63 or not _ENDPOINT_PORT_NAME.fullmatch(name):
            issues.error(
                f"port name {name!r} must be 1..62 letters, digits or '-', starting and "
                "ending with a letter or digit",
                "ports",
                name,
            )


def _protocol(port: Port) -> str:
    return (port.protocol or "").upper()


def _check_ports(spec: ServiceEntrySpec, issues: Issues) -> None:
    names: set[str] = set()
    numbers: set[int] = set()
    if (m := checks.max_items(spec.ports, 256)) is not None:
        issues.error(m, "ports")
    for i, port in enumerate(spec.ports or []):
        at = issues.at("ports", i)
        name, number = port.name or "", port.number or 0
        if name in names:
            at.error(f"port name {name!r} is already defined", "name")
        elif (m := checks.dns_label(name)) is not None:
            at.error(f"invalid port name: {m}", "name")
        names.add(name)
        if number in numbers:
            at.error(f"port number {number} is already defined", "number")
        elif (m := checks.port(number)) is not None:
            at.error(m, "number")
        numbers.add(number)
        if port.target_port is not None and (m := checks.port(port.target_port)) is not None:
            at.error(m, "targetPort")
        if port.protocol and (m := checks.protocol(port.protocol)) is not None:
            at.error(m, "protocol")
        if not spec.addresses and _protocol(port) in ("", "TCP"):
            at.warn(
                "addresses are required for ports serving TCP (or unset) protocol when IP "
                "auto-allocation is off",
                "protocol",
            )


def _check_endpoint_ports(endpoint: WorkloadEntry, port_names: set[str], at: Issues) -> None:
    for name, number in (endpoint.ports or {}).items():
        if name not in port_names:
            at.error(f"endpoint port {name!r} is not defined by the service entry", "ports", name)
        if (m := checks.port(number)) is not None:
            at.error(m, "ports", name)


def _check_static_endpoint(
    endpoint: WorkloadEntry, spec: ServiceEntrySpec, port_names: set[str], at: Issues
) -> None:
    address = endpoint.address or ""
    if not address:
        if endpoint.network:
            at.warn(f"address is unset with network {endpoint.network!r}", "address")
        else:
            at.error("required field is missing", "address")
    elif address.startswith(UNIX_PREFIX):
        if (m := unix_address(address.removeprefix(UNIX_PREFIX))) is not None:
            at.error(m, "address")
        if endpoint.ports:
            at.error("a unix socket endpoint must not list ports", "ports")
        if len(spec.ports or []) != 1:
            at.error("a unix socket endpoint needs exactly one service port", "address")
    elif not checks.is_ip(address):
        at.error(f"endpoint address {address!r} is not an IP address or unix:// path", "address")
    _check_endpoint_ports(endpoint, port_names, at)
    for message in checks.labels(endpoint.labels or {}):
        at.error(message, "labels")


def _check_hosts(spec: ServiceEntrySpec, resolution: str, issues: Issues) -> None:
    if not spec.hosts:
        issues.error("at least one host is required", "hosts")
    elif (m := checks.max_items(spec.hosts, 256)) is not None:
        issues.error(m, "hosts")
    for i, host in enumerate(spec.hosts):
        if host == "*":
            issues.error("hostname cannot be wildcard '*'", "hosts", i)
        elif (m := checks.wildcard_domain(host)) is not None:
            issues.error(m, "hosts", i)
        elif resolution != "DYNAMIC_DNS" and (m := checks.partial_wildcard(host)) is not None:
            issues.warn(m, "hosts", i)


def _check_addresses(spec: ServiceEntrySpec, resolution: str, issues: Issues) -> None:
    cidr = False
    if (m := checks.max_items(spec.addresses, 256)) is not None:
        issues.error(m, "addresses")
    for i, address in enumerate(spec.addresses or []):
        cidr = cidr or "/" in address
        if (m := checks.max_length(address, 64)) is not None:
            issues.error(m, "addresses", i)
        elif (m := checks.ip_or_cidr(address)) is not None:
            issues.error(m, "addresses", i)
    if cidr and resolution not in ("NONE", "STATIC"):
        issues.error(
            "CIDR addresses are allowed only for NONE/STATIC resolution types", "addresses"
        )


def _check_none(spec: ServiceEntrySpec, issues: Issues) -> None:
    """Resolution NONE: no endpoints, and a workload selector does nothing."""
    if spec.endpoints:
        issues.error("NONE mode cannot set endpoints", "endpoints")
    if spec.workload_selector is not None:
        issues.warn("workloadSelector has no effect with resolution NONE", "workloadSelector")


def _check_dns_endpoint(endpoint: WorkloadEntry, port_names: set[str], at: Issues) -> None:
    address = endpoint.address or ""
    if not checks.is_ip(address) and checks.fqdn(address) is not None:
        at.error(f"endpoint address {address!r} is not an FQDN or an IP address", "address")
    _check_endpoint_ports(endpoint, port_names, at)


def _check_dns(
    spec: ServiceEntrySpec, resolution: str, port_names: set[str], issues: Issues
) -> None:
    """Resolution DNS or DNS_ROUND_ROBIN."""
    endpoints = spec.endpoints or []
    if not endpoints:
        for i, host in enumerate(spec.hosts):
            if checks.fqdn(host) is not None:
                issues.error(
                    f"hosts must be fully qualified names when {resolution} has no endpoints",
                    "hosts",
                    i,
                )
    if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
        issues.error("DNS_ROUND_ROBIN mode cannot have multiple endpoints", "endpoints")
    for i, endpoint in enumerate(endpoints):
        _check_dns_endpoint(endpoint, port_names, issues.at("endpoints", i))
    if spec.addresses and len(spec.hosts) > 1:
        if any(_protocol(p) in checks.TCP_LIKE for p in spec.ports or []):
            issues.warn(
                "a service entry with addresses and a TCP port should have only one host",
                "hosts",
            )


def _check_dynamic_dns(spec: ServiceEntrySpec, meta: Mapping[str, Any], issues: Issues) -> None:
    """Resolution DYNAMIC_DNS: wildcard hosts, HTTP/TLS ports, no addresses or endpoints."""
    for i, host in enumerate(spec.hosts):
        if not host.startswith("*"):
            issues.error("DYNAMIC_DNS needs wildcard hosts ('*.example.com')", "hosts", i)
    if spec.addresses:
        issues.error("DYNAMIC_DNS mode cannot set addresses", "addresses")
    if spec.endpoints:
        issues.error("DYNAMIC_DNS mode cannot set endpoints", "endpoints")
    for i, port in enumerate(spec.ports or []):
        if _protocol(port) not in _DYNAMIC_DNS_PROTOCOLS:
            issues.error(
                "DYNAMIC_DNS supports only HTTP, TLS, GRPC and HTTP2 ports",
                "ports",
                i,
                "protocol",
            )
    labels = meta.get("labels") or {}
    if spec.location == "MESH_INTERNAL" and _WAYPOINT_LABEL in labels:
        issues.error("DYNAMIC_DNS with a waypoint cannot be MESH_INTERNAL", "location")


def _check_multi_host_ports(spec: ServiceEntrySpec, resolution: str, issues: Issues) -> None:
    """Several resolved hosts share ports only by HTTP or TLS; the first other port is reported."""
    if resolution != "NONE" and len(spec.hosts) > 1:
        for i, port in enumerate(spec.ports or []):
            protocol = _protocol(port)
            if protocol not in checks.HTTP_LIKE and protocol not in checks.TLS_LIKE:
                issues.error(
                    f"multiple hosts with resolution {resolution} need HTTP or TLS ports",
                    "ports",
                    i,
                    "protocol",
                )
                break


def validate(spec: ServiceEntrySpec, meta: Mapping[str, Any], issues: Issues) -> None:
    namespace = str(meta.get("namespace", ""))
    resolution = spec.resolution or "NONE"
    if spec.workload_selector is not None and spec.endpoints:
        issues.error("only one of workloadSelector or endpoints can be set", "workloadSelector")
    _check_hosts(spec, resolution, issues)
    _check_addresses(spec, resolution, issues)
    _check_ports(spec, issues)
    if (m := checks.max_items(spec.endpoints, 4096)) is not None:
        issues.error(m, "endpoints")
    for i, endpoint in enumerate(spec.endpoints or []):
        check_entry_limits(endpoint, issues.at("endpoints", i))
    port_names = {p.name or "" for p in spec.ports or []}
    if resolution == "NONE":
        _check_none(spec, issues)
    elif resolution == "STATIC":
        for i, endpoint in enumerate(spec.endpoints or []):
            _check_static_endpoint(endpoint, spec, port_names, issues.at("endpoints", i))
    elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
        _check_dns(spec, resolution, port_names, issues)
    else:  # DYNAMIC_DNS
        _check_dynamic_dns(spec, meta, issues)
    _check_multi_host_ports(spec, resolution, issues)
    check_export_to(spec.export_to, namespace, issues, allow_none=True)
    check_alpha_selector(spec.workload_selector, issues)


KIND = KindInfo(
    kind="ServiceEntry",
    group=NETWORKING,
    versions=("v1alpha3", "v1beta1", "v1"),
    plural="serviceentries",
    spec_model=ServiceEntrySpec,
    validate=validate,
    spec_required=True,
)
