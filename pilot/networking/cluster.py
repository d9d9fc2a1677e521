"""Cluster builders (CDS): per service, its default cluster and one per subset."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from google.protobuf import duration_pb2

from api.networking.policy import ClientTLSSettings
from pilot.model import Service, spiffe_uri
from pilot.networking import mtls, names
from pilot.networking.endpoint import load_assignment
from pilot.networking.protos import pack
from pilot.networking.tls_files import loadable
from pilot.networking.traffic_policy import (
    Policy,
    apply_policy,
    locality_lb,
    san_matchers,
)

__all__ = ["MeshTls", "inbound_cluster", "outbound_cluster", "server_identities"]

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT = duration_pb2.Duration(seconds=10)


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


@dataclass(frozen=True, slots=True)
class MeshTls:
    """Mesh mTLS to a destination, for a proxy that has a mesh identity."""

    sds: tuple[str, str, str]  # where the proxy's identity comes from (see mtls)
    # What the server's certificate must carry one of (see `server_identities`);
    # empty: any certificate from the mesh root.
    identities: tuple[str, ...]
    forced: bool  # ISTIO_MUTUAL: always; else only to instances that terminate it


def server_identities(
    service: Service, tls: ClientTLSSettings | None, trust_domain: str
) -> tuple[str, ...]:
    """The names a server must present for mesh mTLS, chosen as Istio does: the
    DestinationRule's subjectAltNames; else the service's own identities: a catalog
    service's instances' SPIFFE identities, a ServiceEntry's subjectAltNames and its
    endpoints' service accounts (an entry naming none: the mesh root alone is checked)."""
    if tls is not None and tls.subject_alt_names:
        return tuple(tls.subject_alt_names)
    if service.external:
        return service.subject_alt_names
    return tuple(
        sorted(
            {spiffe_uri(trust_domain, i.namespace, i.service_account) for i in service.instances}
        )
    )


def _apply_mesh_tls(cluster: cluster_pb2.Cluster, mesh: MeshTls, sni: str, crl: str) -> None:
    tls = mtls.upstream_tls(mesh.sds, (), sni)
    validation = tls.common_tls_context.combined_validation_context.default_validation_context
    validation.match_typed_subject_alt_names.extend(san_matchers(mesh.identities))
    if crl:  # merged with the mesh root Envoy fetches over SDS
        validation.crl.filename = crl
    if mesh.forced:
        cluster.transport_socket.name = "envoy.transport_sockets.tls"
        cluster.transport_socket.typed_config.CopyFrom(pack(tls))
        return
    match = cluster.transport_socket_matches.add(name="tlsMode-istio")
    match.match.update(mtls.ISTIO_TLS_MATCH)
    match.transport_socket.name = "envoy.transport_sockets.tls"
    match.transport_socket.typed_config.CopyFrom(pack(tls))
    plain = cluster.transport_socket_matches.add(name="tlsMode-disabled")
    plain.transport_socket.name = "envoy.transport_sockets.raw_buffer"
    plain.transport_socket.typed_config.CopyFrom(pack(raw_buffer_pb2.RawBuffer()))


def outbound_cluster(
    service: Service,
    policy: Policy | None = None,
    subset: str = "",
    subset_labels: Mapping[str, str] | None = None,
    mesh: MeshTls | None = None,
) -> cluster_pb2.Cluster:
    """EDS for catalog and STATIC ServiceEntry services; STRICT_DNS when Envoy must resolve.
    With `mesh`, the proxy originates mesh mTLS (SNI and SAN checks included)."""
    tls = policy.tls if policy is not None else None
    name = names.outbound_cluster(service.key, service.port, subset)
    cluster = cluster_pb2.Cluster(
        name=name, connect_timeout=_CONNECT_TIMEOUT, lb_policy=cluster_pb2.Cluster.LEAST_REQUEST
    )
    if service.resolution == "DNS":
        cluster.type = cluster_pb2.Cluster.STRICT_DNS
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
        cluster.load_assignment.CopyFrom(load_assignment(service, subset, subset_labels))
    else:
        cluster.type = cluster_pb2.Cluster.EDS
        cluster.eds_cluster_config.eds_config.CopyFrom(_ads())
        cluster.eds_cluster_config.service_name = name
    # Istio verifies a server certificate a rule asks for against a ServiceEntry's names.
    server_names = service.subject_alt_names if service.external else ()
    if policy is not None and not apply_policy(cluster, policy, service.hostname, server_names):
        return _unusable(name, "its TLS settings name files or secrets this proxy cannot use")
    if policy is not None and service.resolution != "DNS":
        # Locality weights come with each proxy's endpoints (EDS); a DNS cluster's endpoints
        # are in the cluster, shared by every proxy, so they get no locality weighting.
        lb = locality_lb(policy)
        if lb is not None and lb.weighted:
            cluster.common_lb_config.locality_weighted_lb_config.SetInParent()
    istio_mutual = tls is not None and tls.mode == "ISTIO_MUTUAL"
    if mesh is None and istio_mutual:
        # Mesh mTLS asked for, by a proxy with no mesh identity: never plaintext.
        return _unusable(name)
    if mesh is not None:
        crl = (tls.ca_crl or "") if tls is not None and istio_mutual else ""
        if crl and not loadable(crl=crl):
            return _unusable(name, f"its revocation list {crl} is not one this proxy can load")
        # ISTIO_MUTUAL may name the SNI (Istio's egress pattern: the egress gateway's
        # server for the external host is chosen by it); else the mesh's own.
        sni = (tls.sni if tls is not None and istio_mutual else None) or names.outbound_sni(
            service.port, subset, service.hostname
        )
        _apply_mesh_tls(cluster, mesh, sni, crl)
    return cluster


def _unusable(name: str, why: str = "") -> cluster_pb2.Cluster:
    """A cluster with no endpoints: requests to it fail (503) rather than go out unprotected."""
    if why:
        log.warning("cluster %s: %s; sent with no endpoints rather than unprotected", name, why)
    unusable = cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.STATIC, connect_timeout=_CONNECT_TIMEOUT
    )
    unusable.load_assignment.cluster_name = name
    return unusable


def inbound_cluster(inbound_port: int, app_port: int) -> cluster_pb2.Cluster:
    """A static cluster from the sidecar to its app on localhost."""
    name = names.inbound_cluster(inbound_port)
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=_CONNECT_TIMEOUT,
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=address_pb2.Address(
                                    socket_address=address_pb2.SocketAddress(
                                        address="127.0.0.1", port_value=app_port
                                    )
                                )
                            )
                        )
                    ]
                )
            ],
        ),
    )
