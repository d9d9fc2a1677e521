"""Pilot's data model: services, proxies and the frozen snapshot of the mesh.

A `MeshSnapshot` is built once per push from the registry and shared by every
proxy's generators; nothing in it changes after it is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from api.catalog import DEFAULT_NAMESPACE, DEFAULT_SERVICE_ACCOUNT, Instance, locality_label
from api.checks import is_ip
from api.gateway_api.translate import Translation, translate
from api.mesh_config import ExtensionProvider
from api.networking.policy import Port
from api.networking.policy_checks import UNIX_PREFIX
from api.networking.service_entry import ServiceEntrySpec, WorkloadEntry
from api.resources import GATEWAY_API, Resource
from pilot.config.index import ConfigIndex, workload_labels
from pilot.conflicts import (
    Conflict,
    gateway_route_conflicts,
    gateway_server_conflicts,
    host_owners,
    virtual_service_conflicts,
)

__all__ = [
    "DOMAIN_SUFFIX",
    "MeshConfig",
    "MeshSnapshot",
    "Proxy",
    "Service",
    "ServiceKey",
    "spiffe_uri",
]

DOMAIN_SUFFIX = "svc.cluster.local"


def spiffe_uri(trust_domain: str, namespace: str, service_account: str) -> str:
    """A workload identity as its certificate carries it (a URI SAN)."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True, slots=True, order=True)
class ServiceKey:
    name: str
    namespace: str
    host: str = ""  # set for ServiceEntry hosts; catalog services use the Kubernetes-style FQDN
    port: int = 0  # set for ServiceEntry ports (one Service per host and port)

    @property
    def hostname(self) -> str:
        """The Istio-style FQDN, as VirtualService and DestinationRule name it."""
        return self.host or f"{self.name}.{self.namespace}.{DOMAIN_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Service:
    key: ServiceKey
    port: int
    protocol: str
    instances: tuple[Instance, ...]
    # "EDS": endpoints pushed by Pilot; "DNS": Envoy resolves the instance addresses itself.
    resolution: str = "EDS"
    external: bool = False  # declared by a ServiceEntry rather than found in the catalog
    # A ServiceEntry's `location: MESH_EXTERNAL` (its default): never automatic mTLS, only
    # what a DestinationRule asks for (Istio's MeshExternal).
    mesh_external: bool = False
    # For a ServiceEntry: the names its servers' certificates may carry (Istio's service
    # accounts): its subjectAltNames, and its endpoints' service accounts as SPIFFE URIs.
    # Catalog services take theirs from their instances.
    subject_alt_names: tuple[str, ...] = ()

    @property
    def hostname(self) -> str:
        return self.key.hostname


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Mesh-wide settings generators need."""

    trust_domain: str = "cluster.local"
    root_namespace: str = "istio-system"  # where mesh-wide policies live
    access_log_file: str = ""  # the "envoy" provider's file; "" = access logs off by default
    access_log_format: str = "json"
    zipkin_addr: str = ""  # the "zipkin" provider's collector; "" = no tracing
    trace_sampling: float = 1.0  # default percentage of requests traced
    # Istio's MeshConfig.extensionProviders: the external authorizers CUSTOM policies name.
    extension_providers: tuple[ExtensionProvider, ...] = ()


@dataclass(frozen=True, slots=True)
class MeshSnapshot:
    """Everything generators may read, indexed for them, immutable."""

    version: int
    services: Mapping[ServiceKey, Service] = field(default_factory=lambda: MappingProxyType({}))
    config: ConfigIndex = field(default_factory=ConfigIndex)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    jwks: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    conflicts: tuple[Conflict, ...] = ()  # config left out because older config claims the same
    withheld: tuple[str, ...] = ()  # what the consistency check kept from proxies, and why
    # The status of each Gateway API object (by ref), as its translation left it.
    gateway_api_status: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def build(
        cls,
        version: int,
        instances_by_service: Mapping[str, tuple[Instance, ...]],
        config: Sequence[Resource] = (),
        mesh: MeshConfig | None = None,
        jwks: Mapping[str, str] | None = None,
    ) -> MeshSnapshot:
        """Group catalog instances into services keyed by (name, namespace).

        One Consul service name may hold instances of several namespaces;
        each (name, namespace) pair is its own mesh service. The service port
        is the one most instances agree on (ties: the lowest).
        """
        grouped: dict[ServiceKey, list[Instance]] = {}
        for instances in instances_by_service.values():
            for inst in instances:
                grouped.setdefault(ServiceKey(inst.service, inst.namespace), []).append(inst)
        services: dict[ServiceKey, Service] = {}
        for key in sorted(grouped):
            insts = sorted(grouped[key], key=Instance.sort_key)
            ports: dict[int, int] = {}
            for inst in insts:
                ports[inst.service_port] = ports.get(inst.service_port, 0) + 1
            port = min(ports, key=lambda p: (-ports[p], p))
            protocol = "tcp" if all(i.protocol == "tcp" for i in insts) else "http"
            services[key] = Service(key, port, protocol, tuple(insts))
        index = ConfigIndex.build(config)
        entries = index.of("ServiceEntry")  # oldest first
        catalog = {
            svc.hostname: f"catalog service {k.namespace}/{k.name}" for k, svc in services.items()
        }
        owners, conflicts = host_owners(catalog, entries)
        trust_domain = (mesh or MeshConfig()).trust_domain
        for entry in entries:
            for svc in service_entry_services([entry], trust_domain, index):
                if owners.get(svc.hostname) == entry.ref:
                    services.setdefault(svc.key, svc)
        gateway_api = translate_gateway_api(config, services)
        if gateway_api.resources:
            index = ConfigIndex.build([*config, *gateway_api.resources])
        conflicts += virtual_service_conflicts(index.of("VirtualService"))
        conflicts += gateway_server_conflicts(index.of("Gateway"))
        conflicts += gateway_route_conflicts(index.of("Gateway"), index.of("VirtualService"))
        return cls(
            version=version,
            services=MappingProxyType(services),
            config=index,
            mesh=mesh or MeshConfig(),
            jwks=MappingProxyType(dict(jwks or {})),
            conflicts=tuple(conflicts),
            gateway_api_status=MappingProxyType(dict(gateway_api.status)),
        )

    def without(self, services: Iterable[ServiceKey], why: Iterable[str]) -> MeshSnapshot:
        """This snapshot with some services withheld (the consistency check's last resort)."""
        gone = set(services)
        return replace(
            self,
            services=MappingProxyType({k: s for k, s in self.services.items() if k not in gone}),
            withheld=(*self.withheld, *why),
        )


def translate_gateway_api(
    config: Sequence[Resource], services: Mapping[ServiceKey, Service]
) -> Translation:
    """Istio resources for the Gateway API config, backends resolved against `services`
    (the catalog's and the ServiceEntries')."""
    gateway_api = [r for r in config if r.group == GATEWAY_API]
    if not gateway_api:
        return Translation()
    ports: dict[str, set[int]] = {}
    for svc in services.values():
        ports.setdefault(svc.hostname, set()).add(svc.port)
    hosts = {h: frozenset(p) for h, p in ports.items()}
    # Pushes for endpoint changes rebuild the snapshot with the same config and services:
    # the translation (which validates what it generates) is done once for them.
    key = (
        tuple((r.key, r.resource_version, r.created, id(r.spec)) for r in gateway_api),
        frozenset(hosts.items()),
    )
    cached = _TRANSLATED.get("last")
    if cached is not None and cached[0] == key:
        return cached[1]
    translation = translate(gateway_api, hosts)
    _TRANSLATED["last"] = (key, translation)
    return translation


_TRANSLATED: dict[str, tuple[object, Translation]] = {}


# The endpoint label Istio reads for "this endpoint terminates mesh mTLS".
TLS_MODE_LABEL = "security.istio.io/tlsMode"
_HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"})


def service_entry_services(
    entries: Sequence[Resource],
    trust_domain: str = "cluster.local",
    config: ConfigIndex | None = None,
) -> list[Service]:
    """Services declared by ServiceEntries: one per (host, port), wildcard hosts left out.

    STATIC entries carry their endpoints (EDS); DNS entries let Envoy resolve
    the endpoint addresses, or the host itself when no endpoint is listed and
    no workloadSelector is set. With a workloadSelector the endpoints are the
    WorkloadEntries `config` holds that it selects (see `_endpoints`). As
    Istio's registry does, an endpoint terminates mesh mTLS when its
    `security.istio.io/tlsMode` label says `istio`, or, without that label,
    when it names a service account.
    """
    out: list[Service] = []
    for r in entries:
        spec = r.spec_as(ServiceEntrySpec)
        resolution = spec.resolution or "NONE"
        dns = resolution in ("DNS", "DNS_ROUND_ROBIN")
        endpoints = _endpoints(r, spec, dns, config or ConfigIndex())
        accounts = {
            spiffe_uri(trust_domain, r.namespace, ep.entry.service_account)
            for ep in endpoints
            if ep.entry.service_account
        }
        names = tuple(sorted({*(spec.subject_alt_names or []), *accounts}))
        for host in spec.hosts or []:
            if "*" in host:
                continue
            for port in spec.ports or []:
                if port.number is None:  # refused by validation: never reaches Pilot
                    continue
                protocol = "http" if (port.protocol or "").upper() in _HTTP_PROTOCOLS else "tcp"
                instances = [_instance(ep, r.namespace, host, port, protocol) for ep in endpoints]
                if not endpoints and dns and spec.workload_selector is None:
                    instances = [
                        Instance(
                            id=f"{r.namespace}/{r.name}/{host}",
                            service=host,
                            namespace=r.namespace,
                            address=host,
                            port=int(port.target_port or port.number),
                            service_port=port.number,
                            protocol=protocol,
                        )
                    ]
                key = ServiceKey(host, r.namespace, host=host, port=port.number)
                out.append(
                    Service(
                        key,
                        port.number,
                        protocol,
                        tuple(instances),
                        # A selector that picks nothing Envoy can dial: Istio sends no cluster
                        # (503); here an EDS cluster without endpoints does the same, since an
                        # empty DNS one with mesh TLS matches crashes Envoy's validate mode
                        # (1.36 and 1.40).
                        resolution="DNS" if dns and any(i.address for i in instances) else "EDS",
                        external=True,
                        mesh_external=spec.location != "MESH_INTERNAL",
                        subject_alt_names=names,
                    )
                )
    return out


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """A ServiceEntry endpoint: listed in the entry, or a WorkloadEntry it selects."""

    id: str
    entry: WorkloadEntry
    labels: Mapping[str, str]


def _endpoints(
    r: Resource, spec: ServiceEntrySpec, dns: bool, config: ConfigIndex
) -> list[_Endpoint]:
    """The entry's own endpoints; with a workloadSelector, as Istio's registry picks them:
    the WorkloadEntries of the entry's namespace whose labels (spec, overlaid by metadata)
    match, by name. An entry whose address is a host name serves DNS entries only; one on
    a unix socket serves none here (Istio gives those to DNS entries, but a DNS cluster
    resolves names: it has no socket path to dial). Resolution NONE selects nothing
    (validation warns that the selector has no effect)."""
    if spec.workload_selector is None:
        return [
            _Endpoint(f"{r.namespace}/{r.name}/{i}", ep, ep.labels or {})
            for i, ep in enumerate(spec.endpoints or [])
        ]
    if (spec.resolution or "NONE") == "NONE":
        return []
    out = []
    for we in config.workload_entries(r.namespace, spec.workload_selector.labels or {}):
        entry = we.spec_as(WorkloadEntry)
        address = entry.address or ""
        if address.startswith(UNIX_PREFIX) or (address and not dns and not is_ip(address)):
            continue
        out.append(_Endpoint(f"{we.namespace}/{we.name}", entry, workload_labels(we)))
    return out


def _instance(ep: _Endpoint, namespace: str, host: str, port: Port, protocol: str) -> Instance:
    """An endpoint for one ServiceEntry port: Istio's port rule is the endpoint's port of
    that name, else the port's targetPort, else its number."""
    number = port.number or 0
    target = (ep.entry.ports or {}).get(port.name or "") or port.target_port or number
    return Instance(
        id=f"{ep.id}/{host}",
        service=host,
        namespace=namespace,
        # An entry may lack an address (validation only warns when it names a network:
        # Istio's multi-network case); the endpoint builder leaves such an instance out.
        address=ep.entry.address or "",
        port=int(target),
        service_port=number,
        service_account=ep.entry.service_account or DEFAULT_SERVICE_ACCOUNT,
        protocol=protocol,
        labels=dict(ep.labels),
        tls_mode=_tls_mode(ep.labels, ep.entry.service_account),
        locality=_locality(ep.entry.locality, ep.labels),
    )


# Istio's locality labels, for an endpoint that does not say its locality: the current one
# first; Kubernetes label values cannot hold '/', so '.' stands for it there.
_LOCALITY_LABELS = ("topology.istio.io/locality", "istio-locality")


def _locality(locality: str | None, labels: Mapping[str, str]) -> str:
    """An endpoint's `region/zone/subzone`: its locality field, else its locality label."""
    if not locality:
        label = next((labels[k] for k in _LOCALITY_LABELS if k in labels), "")
        locality = label if "/" in label else label.replace(".", "/")
    return locality.rstrip("/")


def _tls_mode(labels: Mapping[str, str], service_account: str | None) -> str:
    """Istio's rule for a ServiceEntry endpoint: its tlsMode label, else `istio` when it
    names a service account (a workload with a mesh identity), else disabled."""
    mode = labels.get(TLS_MODE_LABEL, "istio" if service_account else "disabled")
    return "istio" if mode == "istio" else "disabled"


def _str_field(meta: Mapping[str, Any], key: str, default: str) -> str:
    value = meta.get(key)
    return value if isinstance(value, str) and value else default


def _sds_field(meta: Mapping[str, Any]) -> tuple[str, str, str] | None:
    values = (meta.get("SDS_ADDR"), meta.get("SDS_TOKEN_FILE"), meta.get("SDS_ROOT_CERT"))
    if all(isinstance(v, str) and v for v in values):
        return values  # type: ignore[return-value]
    return None


def _node_locality(parts: Sequence[str]) -> str:
    """A node's locality as a label; a part that could not be one ('/' separates them;
    a claim is bounded) is left empty."""
    region, zone, subzone = (
        p if "/" not in p and len(p) <= 128 else "" for p in (*parts, "", "", "")[:3]
    )
    return locality_label(region, zone, subzone)


def _port_field(meta: Mapping[str, Any], key: str) -> int | None:
    value = meta.get(key)
    try:
        port = int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return port if port is not None and 0 < port < 65536 else None


@dataclass(frozen=True, slots=True)
class Proxy:
    """A connected Envoy, described by its node (a claim, not an identity).

    Metadata keys follow Istio's where they exist (NAMESPACE, SERVICE_ACCOUNT,
    LABELS); the ports say where this sidecar listens and where its app is.
    """

    id: str
    service: str
    namespace: str = DEFAULT_NAMESPACE
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    labels: Mapping[str, str] = field(default_factory=dict)
    outbound_port: int | None = None
    inbound_port: int | None = None
    app_port: int | None = None
    instance_ip: str = "127.0.0.1"
    kind: str = "sidecar"
    # Where this proxy gets its mesh identity (None: no mTLS possible for it).
    sds: tuple[str, str, str] | None = None  # (Citadel address, token file, root cert file)
    # The node's locality as Istio's label, "region/zone/subzone" ("" when not set): the
    # priorities of its endpoints depend on it when locality load balancing is in force.
    locality: str = ""
    # `shape`, worked out once: it keys every response memo, on every push to this proxy.
    _shape: tuple[object, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = (
            self.kind,
            self.service,  # an inbound listener relays TCP or routes HTTP as its service does
            self.namespace,
            frozenset(self.labels.items()),
            self.outbound_port,
            self.inbound_port,
            self.app_port,
            self.instance_ip,
            self.sds,
            self.locality,
        )
        object.__setattr__(self, "_shape", shape)

    @classmethod
    def from_node(
        cls,
        node_id: str,
        cluster: str,
        metadata: Mapping[str, Any],
        locality: Sequence[str] = (),
    ) -> Proxy:
        """`locality`: the node's (region, zone, sub_zone)."""
        labels_raw = metadata.get("LABELS")
        labels = (
            {str(k): str(v) for k, v in labels_raw.items()}
            if isinstance(labels_raw, Mapping)
            else {}
        )
        return cls(
            id=node_id,
            service=cluster,
            namespace=_str_field(metadata, "NAMESPACE", DEFAULT_NAMESPACE),
            service_account=_str_field(metadata, "SERVICE_ACCOUNT", DEFAULT_SERVICE_ACCOUNT),
            labels=labels,
            outbound_port=_port_field(metadata, "OUTBOUND_PORT"),
            inbound_port=_port_field(metadata, "INBOUND_PORT"),
            app_port=_port_field(metadata, "APP_PORT"),
            instance_ip=_str_field(metadata, "INSTANCE_IP", "127.0.0.1"),
            kind=_str_field(metadata, "PROXY_KIND", "sidecar"),
            sds=_sds_field(metadata),
            locality=_node_locality(locality),
        )

    @property
    def shape(self) -> tuple[object, ...]:
        """What per-proxy config depends on; proxies of one shape share bytes."""
        return self._shape
