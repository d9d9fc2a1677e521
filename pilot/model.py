"""Pilot's data model: services, proxies and the frozen snapshot of the mesh.

A `MeshSnapshot` is built once per push from the registry and shared by every
proxy's generators; nothing in it changes after it is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from api.catalog import DEFAULT_NAMESPACE, DEFAULT_SERVICE_ACCOUNT, Instance
from api.mesh_config import ExtensionProvider
from api.networking.service_entry import ServiceEntrySpec, WorkloadEntry
from api.resources import Resource
from pilot.config.index import ConfigIndex
from pilot.conflicts import (
    Conflict,
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
            for svc in service_entry_services([entry], trust_domain):
                if owners.get(svc.hostname) == entry.ref:
                    services.setdefault(svc.key, svc)
        conflicts += virtual_service_conflicts(index.of("VirtualService"))
        conflicts += gateway_server_conflicts(index.of("Gateway"))
        return cls(
            version=version,
            services=MappingProxyType(services),
            config=index,
            mesh=mesh or MeshConfig(),
            jwks=MappingProxyType(dict(jwks or {})),
            conflicts=tuple(conflicts),
        )

    def without(self, services: Iterable[ServiceKey], why: Iterable[str]) -> MeshSnapshot:
        """This snapshot with some services withheld (the consistency check's last resort)."""
        gone = set(services)
        return replace(
            self,
            services=MappingProxyType({k: s for k, s in self.services.items() if k not in gone}),
            withheld=(*self.withheld, *why),
        )


# The endpoint label Istio reads for "this endpoint terminates mesh mTLS".
TLS_MODE_LABEL = "security.istio.io/tlsMode"
_HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"})


def service_entry_services(
    entries: Sequence[Resource], trust_domain: str = "cluster.local"
) -> list[Service]:
    """Services declared by ServiceEntries: one per (host, port), wildcard hosts left out.

    STATIC entries carry their endpoints (EDS); DNS entries let Envoy resolve
    the endpoint addresses, or the host itself when no endpoint is listed.
    As Istio's registry does, an endpoint terminates mesh mTLS when its
    `security.istio.io/tlsMode` label says `istio`, or, without that label,
    when it names a service account.
    """
    out: list[Service] = []
    for r in entries:
        spec = r.spec_as(ServiceEntrySpec)
        resolution = spec.resolution or "NONE"
        accounts = {
            spiffe_uri(trust_domain, r.namespace, ep.service_account)
            for ep in spec.endpoints or []
            if ep.service_account
        }
        names = tuple(sorted({*(spec.subject_alt_names or []), *accounts}))
        for host in spec.hosts or []:
            if "*" in host:
                continue
            for port in spec.ports or []:
                if port.number is None:  # refused by validation: never reaches Pilot
                    continue
                protocol = "http" if (port.protocol or "").upper() in _HTTP_PROTOCOLS else "tcp"
                instances = []
                endpoints: list[WorkloadEntry | None] = list(spec.endpoints or [])
                if not endpoints and resolution in ("DNS", "DNS_ROUND_ROBIN"):
                    endpoints = [None]
                for i, ep in enumerate(endpoints):
                    # A STATIC endpoint may lack an address (validation only warns when it
                    # names a network); the proto reads an unset address as "".
                    address = (ep.address or "") if ep is not None else host
                    ep_port = (
                        ep.ports.get(port.name)
                        if ep is not None and ep.ports and port.name is not None
                        else None
                    )
                    target = ep_port or port.target_port or port.number
                    instances.append(
                        Instance(
                            id=f"{r.namespace}/{r.name}/{host}/{i}",
                            service=host,
                            namespace=r.namespace,
                            address=address,
                            port=int(target),
                            service_port=port.number,
                            protocol=protocol,
                            labels=dict(ep.labels or {}) if ep is not None else {},
                            tls_mode=_tls_mode(ep),
                        )
                    )
                key = ServiceKey(host, r.namespace, host=host, port=port.number)
                out.append(
                    Service(
                        key,
                        port.number,
                        protocol,
                        tuple(instances),
                        resolution="DNS" if resolution in ("DNS", "DNS_ROUND_ROBIN") else "EDS",
                        external=True,
                        mesh_external=spec.location != "MESH_INTERNAL",
                        subject_alt_names=names,
                    )
                )
    return out


def _tls_mode(endpoint: WorkloadEntry | None) -> str:
    """Istio's rule for a ServiceEntry endpoint: its tlsMode label, else `istio` when it
    names a service account (a workload with a mesh identity), else disabled."""
    if endpoint is None:
        return "disabled"
    default = "istio" if endpoint.service_account else "disabled"
    mode = (endpoint.labels or {}).get(TLS_MODE_LABEL, default)
    return "istio" if mode == "istio" else "disabled"


def _str_field(meta: Mapping[str, Any], key: str, default: str) -> str:
    value = meta.get(key)
    return value if isinstance(value, str) and value else default


def _sds_field(meta: Mapping[str, Any]) -> tuple[str, str, str] | None:
    values = (meta.get("SDS_ADDR"), meta.get("SDS_TOKEN_FILE"), meta.get("SDS_ROOT_CERT"))
    if all(isinstance(v, str) and v for v in values):
        return values  # type: ignore[return-value]
    return None


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

    @classmethod
    def from_node(cls, node_id: str, cluster: str, metadata: Mapping[str, Any]) -> Proxy:
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
        )

    @property
    def shape(self) -> tuple[object, ...]:
        """What per-proxy config depends on; proxies of one shape share bytes."""
        return (
            self.kind,
            self.namespace,
            frozenset(self.labels.items()),
            self.outbound_port,
            self.inbound_port,
            self.app_port,
            self.instance_ip,
            self.sds,
        )
