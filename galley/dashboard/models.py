"""What the dashboard's JSON answers hold (declared for Galley's OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["ConfigView", "GraphView", "ProxiesView", "SecurityView"]


class VersionOut(BaseModel):
    version: str
    instances: int = Field(description="Catalog instances of this version (0: only called)")
    healthy: int
    y: float


class NodeOut(BaseModel):
    id: str = Field(description="SERVICE.NAMESPACE, or the host of a service outside the mesh")
    service: str
    namespace: str
    kind: str = Field(description="service, gateway or external")
    versions: list[VersionOut]
    x: float
    y: float
    width: float
    height: float
    column: int


class EdgeOut(BaseModel):
    source: str
    source_version: str
    destination: str
    destination_version: str = Field(description="The subset called; empty when none")
    rps: float = Field(description="Requests per second over the window")
    error_rate: float = Field(description="Share of 5xx answers, 0..1")
    p99_ms: float | None = Field(description="99th percentile latency (ms), from Envoy's buckets")
    share: float | None = Field(description="Of the source's calls to this service's versions")
    health: str = Field(description="green, amber or red")


class TargetOut(BaseModel):
    instance: str
    service: str
    namespace: str
    address: str
    ok: bool
    error: str


class GraphView(BaseModel):
    window_seconds: float
    nodes: list[NodeOut]
    edges: list[EdgeOut]
    width: float
    height: float
    targets: list[TargetOut] = Field(description="Every proxy whose stats were read")
    error: str = Field(description="Why part of the graph is missing (e.g. Consul down)")


class SyncOut(BaseModel):
    state: str = Field(description="SYNCED, STALE, NACKED or NOT SENT")
    error: str = Field(description="Envoy's error for the last NACK of this type")


class ProxyOut(BaseModel):
    proxy: str
    service: str
    namespace: str
    pilot: str
    connected_seconds: float
    nacks: int
    last_nack: str
    types: dict[str, SyncOut]


class PilotOut(BaseModel):
    addr: str
    ok: bool
    error: str


class ProxiesView(BaseModel):
    pilots: list[PilotOut]
    proxies: list[ProxyOut]


class ConditionOut(BaseModel):
    type: str
    status: str
    reason: str
    message: str


class WarningOut(BaseModel):
    path: str
    message: str


class ResourceOut(BaseModel):
    kind: str
    namespace: str
    name: str
    ref: str
    resourceVersion: str
    conditions: list[ConditionOut]
    warnings: list[WarningOut]
    history: str | None = Field(description="Where its history is served, when Galley has one")


class ConfigView(BaseModel):
    resources: list[ResourceOut]
    error: str


class CertOut(BaseModel):
    serial: str
    notAfter: str
    expiresInSeconds: int


class MtlsOut(BaseModel):
    mode: str = Field(description="STRICT, PERMISSIVE or DISABLE")
    source: str = Field(description="The PeerAuthentication that decided it, or default")
    ports: dict[str, str]


class PolicyOut(BaseModel):
    kind: str
    namespace: str
    name: str
    level: str = Field(description="mesh, namespace or workload")


class WorkloadOut(BaseModel):
    service: str
    namespace: str
    instance: str
    address: str
    identity: str
    meshTls: bool = Field(description="Registered with a mesh identity (tls_mode istio)")
    certificate: CertOut | None
    mtls: MtlsOut
    policies: list[PolicyOut]


class SecurityView(BaseModel):
    trust_domain: str
    workloads: list[WorkloadOut]
    error: str
