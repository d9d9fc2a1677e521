"""The cluster a route picked, as the source sidecar holds it: its endpoints and the
TLS it uses to each (mesh mTLS with the SANs it checks, TLS origination, plaintext);
and the mesh identity the source itself has.

Pure functions over the source proxy's config dump.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshctl.explain_match import Json

__all__ = ["Endpoint", "Upstream", "has_mesh_identity", "own_identities", "upstream"]

_MESH_SECRETS = ("default", "ROOTCA")


def _typed(socket: Json) -> Json:
    config = socket.get("typedConfig")
    return config if isinstance(config, dict) else {}


@dataclass
class Endpoint:
    address: str
    port: int
    healthy: bool
    mtls: bool  # this sidecar originates mesh mTLS to it
    sni: str = ""
    sans: list[str] = field(default_factory=list)
    tls: str = "plaintext"  # "mesh mTLS", "TLS", "mutual TLS", "plaintext"

    def to_dict(self) -> Json:
        return {
            "address": f"{self.address}:{self.port}",
            "healthy": self.healthy,
            "tls": self.tls,
            "sni": self.sni,
            "sans": self.sans,
        }


@dataclass
class Upstream:
    cluster: str
    found: bool
    kind: str = ""  # EDS, STRICT_DNS, STATIC, ...
    mode: str = ""  # "ISTIO_MUTUAL", "auto mTLS", "TLS origination", "plaintext"
    endpoints: list[Endpoint] = field(default_factory=list)
    status: int | None = None  # 503 when Envoy has nowhere to send it
    detail: str = ""

    def to_dict(self) -> Json:
        return {
            "cluster": self.cluster,
            "found": self.found,
            "type": self.kind,
            "tls_mode": self.mode,
            "endpoints": [e.to_dict() for e in self.endpoints],
            "status": self.status,
            "detail": self.detail,
        }


def _socket_tls(socket: Json) -> tuple[str, str, list[str]]:
    """(kind, sni, SANs) of a transport socket."""
    config = _typed(socket)
    if not config.get("@type", "").endswith("UpstreamTlsContext"):
        return "plaintext", "", []
    common = config.get("commonTlsContext", {})
    combined = common.get("combinedValidationContext", {})
    validation = combined.get("defaultValidationContext") or common.get("validationContext", {})
    sans = [
        m.get("matcher", {}).get("exact") or m.get("matcher", {}).get("prefix", "") + "*"
        for m in validation.get("matchTypedSubjectAltNames", [])
    ]
    own = [s.get("name") for s in common.get("tlsCertificateSdsSecretConfigs", [])]
    root = combined.get("validationContextSdsSecretConfig", {}).get("name")
    if own == [_MESH_SECRETS[0]] and root == _MESH_SECRETS[1]:
        kind = "mesh mTLS"
    elif own or common.get("tlsCertificates"):
        kind = "mutual TLS"
    else:
        kind = "TLS"
    return kind, config.get("sni", ""), sans


def _socket_for(cluster: Json, metadata: Json) -> Json | None:
    """The transport socket Envoy uses for an endpoint: the first match whose `match`
    is a subset of the endpoint's `envoy.transport_socket_match` metadata."""
    matches = cluster.get("transportSocketMatches")
    if matches:
        labels = metadata.get("filterMetadata", {}).get("envoy.transport_socket_match", {})
        for entry in matches:
            wanted = entry.get("match", {})
            if all(labels.get(k) == v for k, v in wanted.items()):
                socket: Json = entry.get("transportSocket", {})
                return socket
    socket_or_none: Json | None = cluster.get("transportSocket")
    return socket_or_none


def _assignment(dump: Json, cluster: Json) -> Json:
    if cluster.get("type", "EDS") == "EDS" and "loadAssignment" not in cluster:
        service = cluster.get("edsClusterConfig", {}).get("serviceName") or cluster.get("name")
        return next((a for a in dump.get("eds", []) if a.get("clusterName") == service), {})
    assignment: Json = cluster.get("loadAssignment", {})
    return assignment


def upstream(dump: Json, name: str) -> Upstream:
    """The cluster in the source proxy's config, its endpoints and TLS to each."""
    cluster = next((c for c in dump.get("cds", []) if c.get("name") == name), None)
    if cluster is None:
        return Upstream(
            name,
            False,
            status=503,
            detail=f"no cluster {name!r} on the source proxy (Envoy answers 503): "
            "a destination host or subset no service or DestinationRule provides",
        )
    out = Upstream(name, True, kind=cluster.get("type", "EDS"))
    if cluster.get("transportSocketMatches"):
        out.mode = "auto mTLS"
    elif "transportSocket" in cluster:
        kind = _socket_tls(cluster["transportSocket"])[0]
        out.mode = "ISTIO_MUTUAL" if kind == "mesh mTLS" else f"TLS origination ({kind})"
    else:
        out.mode = "plaintext"
    for group in _assignment(dump, cluster).get("endpoints", []):
        for lb in group.get("lbEndpoints", []):
            address = lb.get("endpoint", {}).get("address", {}).get("socketAddress", {})
            socket = _socket_for(cluster, lb.get("metadata", {}))
            kind, sni, sans = _socket_tls(socket) if socket else ("plaintext", "", [])
            out.endpoints.append(
                Endpoint(
                    address=address.get("address", ""),
                    port=int(address.get("portValue", 0)),
                    healthy=lb.get("healthStatus", "HEALTHY") in ("HEALTHY", "UNKNOWN"),
                    mtls=kind == "mesh mTLS",
                    sni=sni,
                    sans=sans,
                    tls=kind,
                )
            )
    if not any(e.healthy for e in out.endpoints):
        out.status = 503
        out.detail = (
            f"cluster {name!r} has no healthy endpoint (Envoy answers 503 'no healthy upstream')"
        )
    return out


def own_identities(dump: Json, service: str, namespace: str) -> list[str]:
    """The SPIFFE identities the mesh gives a service's instances, as this proxy's own
    clusters for that service list them (the server names its clients check)."""
    host = f"|{service}.{namespace}.svc.cluster.local"
    found: set[str] = set()
    for cluster in dump.get("cds", []):
        if not cluster.get("name", "").endswith(host):
            continue
        sockets = [m.get("transportSocket", {}) for m in cluster.get("transportSocketMatches", [])]
        sockets.append(cluster.get("transportSocket", {}))
        for socket in sockets:
            kind, _, sans = _socket_tls(socket)
            if kind == "mesh mTLS":
                found.update(s for s in sans if s.startswith("spiffe://") and not s.endswith("*"))
    return sorted(found)


def has_mesh_identity(dump: Json) -> bool:
    """Does this proxy get a workload certificate (any cluster or listener using it)?"""
    for cluster in dump.get("cds", []):
        sockets = [m.get("transportSocket", {}) for m in cluster.get("transportSocketMatches", [])]
        sockets.append(cluster.get("transportSocket", {}))
        if any(_socket_tls(s)[0] == "mesh mTLS" for s in sockets):
            return True
    return False
