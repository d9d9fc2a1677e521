"""WorkloadEntry and WorkloadGroup (networking.istio.io): VMs and other non-catalog
workloads, validated as Istio does.

A WorkloadEntry becomes an endpoint of the ServiceEntries of its namespace whose
workloadSelector matches its labels (pilot/model.py). A WorkloadGroup is the
template `meshctl register --workload-group` registers a catalog instance from
(meshctl/registration.py). The entry's shape is ServiceEntry's endpoint model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from api import checks
from api.issues import Issues
from api.model import Spec
from api.networking.policy_checks import UNIX_PREFIX, unix_address
from api.networking.service_entry import WorkloadEntry, check_entry_limits
from api.resources import NETWORKING, KindInfo

__all__ = ["GROUP_KIND", "KIND", "WorkloadGroupSpec"]

_PROBE_HEADER = re.compile(r"[-_A-Za-z0-9]+")


class ObjectMeta(Spec):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class HTTPHeader(Spec):
    name: str | None = None
    value: str | None = None


class HTTPGetAction(Spec):
    path: str | None = None
    port: int | None = None
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(Spec):
    host: str | None = None
    port: int | None = None


class GRPCAction(Spec):
    port: int | None = None
    service: str | None = None


class ExecAction(Spec):
    command: list[str] | None = None


class ReadinessProbe(Spec):
    initial_delay_seconds: int | None = None
    timeout_seconds: int | None = None
    period_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    grpc: GRPCAction | None = None


class WorkloadGroupSpec(Spec):
    metadata: ObjectMeta | None = None
    template: WorkloadEntry | None = None
    probe: ReadinessProbe | None = None


def _check_entry(entry: WorkloadEntry, issues: Issues, *, template: bool) -> None:
    address = entry.address or ""
    if template and address:
        issues.error("a template must not set an address: each workload brings its own", "address")
    elif not template and not address:
        # The CRD (and Istio) accept a network instead: the address comes from its gateway.
        if entry.network:
            issues.warn(f"address is unset with network {entry.network!r}", "address")
        else:
            issues.error("required field is missing", "address")
    elif address.startswith(UNIX_PREFIX):
        if (m := unix_address(address.removeprefix(UNIX_PREFIX))) is not None:
            issues.error(m, "address")
        if entry.ports:
            issues.error("a unix socket address must not list ports", "ports")
    elif address and not checks.is_ip(address) and checks.fqdn(address) is not None:
        issues.error(f"address {address!r} is not an IP address, a host name or unix://", "address")
    for name, port in (entry.ports or {}).items():
        if (m := checks.port(port)) is not None:
            issues.error(m, "ports", name)
    for message in checks.labels(entry.labels or {}):
        issues.error(message, "labels")
    check_entry_limits(entry, issues)
    if entry.service_account and checks.dns_label(entry.service_account):
        issues.error(
            f"service account {entry.service_account!r} is not a DNS label", "serviceAccount"
        )


def validate(spec: WorkloadEntry, meta: Mapping[str, Any], issues: Issues) -> None:
    _check_entry(spec, issues, template=False)


def _check_probe(probe: ReadinessProbe, issues: Issues) -> None:
    actions = [a for a in (probe.http_get, probe.tcp_socket, probe.exec, probe.grpc) if a]
    if len(actions) != 1:
        issues.error("exactly one of httpGet, tcpSocket, exec or grpc")
    for field, value in (
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ):
        if value is not None and value < 0:
            issues.error("must not be negative", field)
    for action, port in (
        ("httpGet", probe.http_get.port if probe.http_get else None),
        ("tcpSocket", probe.tcp_socket.port if probe.tcp_socket else None),
        ("grpc", probe.grpc.port if probe.grpc else None),
    ):
        if port is not None and (m := checks.port(port)) is not None:
            issues.error(m, action, "port")
    if probe.exec is not None and not probe.exec.command:
        issues.error("required field is missing", "exec", "command")
    for i, arg in enumerate((probe.exec.command or []) if probe.exec else []):
        if not arg:
            issues.error("must not be an empty string", "exec", "command", i)
    for action, port in (
        ("httpGet", probe.http_get.port if probe.http_get else 0),
        ("tcpSocket", probe.tcp_socket.port if probe.tcp_socket else 0),
    ):
        if port is None:
            issues.error("required field is missing", action, "port")
    if (http := probe.http_get) is not None:
        if http.scheme not in (None, "", "HTTP", "HTTPS"):
            issues.error(f"scheme must be HTTP or HTTPS, not {http.scheme!r}", "httpGet", "scheme")
        for i, header in enumerate(http.http_headers or []):
            if header.name is not None and not _PROBE_HEADER.fullmatch(header.name):
                issues.error(
                    f"header name {header.name!r} must match ^[-_A-Za-z0-9]+$",
                    "httpGet",
                    "httpHeaders",
                    i,
                    "name",
                )


def validate_group(spec: WorkloadGroupSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    if spec.template is None:
        issues.error("required field is missing", "template")
    else:
        _check_entry(spec.template, issues.at("template"), template=True)
    if spec.metadata is not None:
        for message in checks.labels(spec.metadata.labels or {}):
            issues.error(message, "metadata", "labels")
        for field, values in (
            ("labels", spec.metadata.labels),
            ("annotations", spec.metadata.annotations),
        ):
            if (m := checks.max_entries(values, 256)) is not None:
                issues.error(m, "metadata", field)
    if spec.probe is not None:
        _check_probe(spec.probe, issues.at("probe"))


KIND = KindInfo(
    kind="WorkloadEntry",
    group=NETWORKING,
    versions=("v1alpha3", "v1beta1", "v1"),
    plural="workloadentries",
    spec_model=WorkloadEntry,
    validate=validate,
    spec_required=True,
)
GROUP_KIND = KindInfo(
    kind="WorkloadGroup",
    group=NETWORKING,
    versions=("v1alpha3", "v1beta1", "v1"),
    plural="workloadgroups",
    spec_model=WorkloadGroupSpec,
    validate=validate_group,
    spec_required=True,
)
