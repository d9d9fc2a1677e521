"""The shape of a mesh workload in the Consul catalog.

`meshctl register` writes it and Registrator produces it from container env
(`SERVICE_NAME`, `SERVICE_TAGS`, `SERVICE_<KEY>=value` attributes, which
Registrator lower-cases into service meta). Pilot reads it back with
`instance_from_health_entry`, so both sources feed Pilot alike.

Meta keys with a meaning of their own:

- ``namespace``        the workload's namespace (default ``default``)
- ``service_account``  the workload's service account (default ``default``)
- ``service_port``     the logical port clients address (default 80); the
                       registered port is the sidecar's inbound port
- ``protocol``         ``http`` (default) or ``tcp``
- ``tls_mode``         ``istio`` when the instance's sidecar has a mesh identity
                       (it then accepts mutual TLS; clients use it automatically)
- ``region``, ``zone``, ``subzone``
                       the instance's locality (Istio's region/zone/subzone), labels
                       too; the region defaults to the Consul datacenter, and each
                       key may instead be set once for every service on a node, as
                       node meta

Every other meta key, and every ``key=value`` tag, is a workload label
(``version=v1`` and the like), which DestinationRule subsets select on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.checks import is_k8s_label

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SERVICE_ACCOUNT",
    "DEFAULT_SERVICE_PORT",
    "RESERVED_META",
    "CatalogError",
    "Instance",
    "instance_from_health_entry",
    "locality_label",
    "registration_payload",
]

DEFAULT_NAMESPACE = "default"
DEFAULT_SERVICE_ACCOUNT = "default"
DEFAULT_SERVICE_PORT = 80
RESERVED_META = frozenset(
    {"namespace", "service_account", "service_port", "protocol", "tls_mode", "prometheus_port"}
)
# Meta keys that say where an instance runs; labels too (a subset may select a zone).
LOCALITY_META = ("region", "zone", "subzone")

# Consul's own rule for meta keys; label keys must fit it to travel as meta.
_META_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
# A DNS-1123 label: what service names and namespaces must be.


class CatalogError(ValueError):
    """A registration that would not be a valid mesh workload."""


@dataclass(frozen=True, slots=True)
class Instance:
    """One healthy instance of a mesh service, as Pilot sees it."""

    id: str
    service: str
    namespace: str
    address: str
    port: int
    service_port: int = DEFAULT_SERVICE_PORT
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    protocol: str = "http"
    labels: Mapping[str, str] = field(default_factory=dict)
    tls_mode: str = "disabled"  # "istio": the sidecar terminates mesh mTLS
    # Istio's locality label, "region/zone/subzone" (trailing parts may be absent; "" for none).
    locality: str = ""

    def sort_key(self) -> tuple[str, int, str]:
        return (self.address, self.port, self.id)


def _tag_values(tags: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if sep and key:
            out[key] = value
    return out


def _labels_from(tags: Sequence[str], meta: Mapping[str, str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for key, value in _tag_values(tags).items():
        if key not in RESERVED_META:
            labels[key] = value
    for key, value in meta.items():
        if key not in RESERVED_META:
            labels[key] = value
    return labels


def _int_or(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def service_port(meta: Mapping[str, str]) -> int:
    """The logical port clients address, from an instance's meta."""
    return _int_or(meta.get("service_port"), DEFAULT_SERVICE_PORT)


def _locality_part(value: Any) -> str:
    """A region, zone or subzone: "" when unset, or when it could not be one ('/' splits them)."""
    return value if isinstance(value, str) and "/" not in value else ""


def locality_label(region: str, zone: str = "", subzone: str = "") -> str:
    """Istio's locality label: `region/zone/subzone`, trailing empty parts left out."""
    return "/".join((region, zone, subzone)).rstrip("/")


def _locality(meta: Mapping[str, str], node: Mapping[str, Any]) -> str:
    """The instance's meta, else its node's meta; the region defaults to the datacenter."""
    node_meta = node.get("Meta") or {}
    region, zone, subzone = (
        _locality_part(meta.get(key)) or _locality_part(node_meta.get(key)) for key in LOCALITY_META
    )
    return locality_label(region or _locality_part(node.get("Datacenter")), zone, subzone)


def instance_from_health_entry(entry: Mapping[str, Any]) -> Instance | None:
    """Turn one element of ``/v1/health/service/<name>`` into an Instance.

    Returns None for an entry that cannot be a mesh service (no address or
    port, a name or namespace that is not a DNS label), so one odd
    registration never breaks the rest of the catalog.
    """
    svc = entry.get("Service") or {}
    node = entry.get("Node") or {}
    address = svc.get("Address") or node.get("Address") or ""
    port = svc.get("Port") or 0
    name = svc.get("Service") or ""
    if not address or not port or not is_k8s_label(name):
        return None
    tags: Sequence[str] = svc.get("Tags") or []
    # Reserved keys come from meta, or from `key=value` tags when a registrar (Registrator
    # without meta support) can only write tags.
    from_tags = {k: v for k, v in _tag_values(tags).items() if k in RESERVED_META}
    meta: Mapping[str, str] = {**from_tags, **(svc.get("Meta") or {})}
    if not is_k8s_label(meta.get("namespace") or DEFAULT_NAMESPACE):
        return None
    protocol = (meta.get("protocol") or "http").lower()
    return Instance(
        id=svc.get("ID") or f"{name}-{address}-{port}",
        service=name,
        namespace=meta.get("namespace") or DEFAULT_NAMESPACE,
        address=address,
        port=int(port),
        service_port=service_port(meta),
        service_account=meta.get("service_account") or DEFAULT_SERVICE_ACCOUNT,
        protocol=protocol if protocol in ("http", "tcp") else "http",
        labels=_labels_from(tags, meta),
        tls_mode="istio" if meta.get("tls_mode") == "istio" else "disabled",
        locality=_locality(meta, node),
    )


def _check_locality(locality: Mapping[str, str], labels: Mapping[str, str]) -> None:
    for key, part in locality.items():
        if "/" in part:
            raise CatalogError(f"{key} {part!r}: must not contain '/'")
        if part and labels.get(key, part) != part:
            raise CatalogError(f"{key} {part!r}: the label {key}={labels[key]!r} says otherwise")
    if locality["subzone"] and not (locality["zone"] or labels.get("zone")):
        raise CatalogError("subzone: needs a zone")


def registration_payload(
    *,
    service: str,
    instance_id: str,
    address: str,
    port: int,
    namespace: str = DEFAULT_NAMESPACE,
    service_account: str = DEFAULT_SERVICE_ACCOUNT,
    service_port: int = DEFAULT_SERVICE_PORT,
    labels: Mapping[str, str] | None = None,
    check_http: str | None = None,
    check_interval: str = "1s",
    mtls: bool = False,
    region: str = "",
    zone: str = "",
    subzone: str = "",
    protocol: str = "http",
) -> dict[str, Any]:
    """The body of ``PUT /v1/agent/service/register`` for one mesh workload. Without a
    region, the instance's region is its Consul datacenter."""
    if not is_k8s_label(service):
        raise CatalogError(f"service {service!r}: must be a DNS label (a-z, 0-9, '-')")
    if not is_k8s_label(namespace):
        raise CatalogError(f"namespace {namespace!r}: must be a DNS label (a-z, 0-9, '-')")
    if not instance_id:
        raise CatalogError("id: must not be empty")
    if protocol not in ("http", "tcp"):
        raise CatalogError(f"protocol {protocol!r}: must be http or tcp")
    for name, value in (("port", port), ("service port", service_port)):
        if not 1 <= value <= 65535:
            raise CatalogError(f"{name} {value}: must be within 1..65535")
    labels = dict(labels or {})
    locality = {"region": region, "zone": zone, "subzone": subzone}
    _check_locality(locality, labels)
    for key in labels:
        if not _META_KEY.fullmatch(key) or key in RESERVED_META:
            raise CatalogError(
                f"label {key!r}: must match [A-Za-z0-9_-]+ and not be one of "
                f"{', '.join(sorted(RESERVED_META))}"
            )
    meta = {
        "namespace": namespace,
        "service_account": service_account,
        "service_port": str(service_port),
        **labels,
    }
    if mtls:
        meta["tls_mode"] = "istio"
    if protocol != "http":
        meta["protocol"] = protocol
    meta.update({key: value for key, value in locality.items() if value})
    body: dict[str, Any] = {
        "ID": instance_id,
        "Name": service,
        "Address": address,
        "Port": port,
        "Tags": [f"{k}={v}" for k, v in sorted(labels.items())],
        "Meta": meta,
    }
    if check_http:
        body["Check"] = {
            "HTTP": check_http,
            "Interval": check_interval,
            "Timeout": "1s",
            "DeregisterCriticalServiceAfter": "10m",
        }
    return body
