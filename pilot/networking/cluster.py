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

from pilot.model import Service
from pilot.networking import mtls, names
from pilot.networking.endpoint import load_assignment
from pilot.networking.protos import pack
from pilot.networking.traffic_policy import Policy, apply_policy

__all__ = ["MeshTls", "inbound_cluster", "outbound_cluster"]

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
    identities: tuple[str, ...]  # the destination's SPIFFE identities (SAN match)
    forced: bool  # ISTIO_MUTUAL: always; else only to instances that terminate it


def _apply_mesh_tls(cluster: cluster_pb2.Cluster, mesh: MeshTls, sni: str) -> None:
    tls = mtls.upstream_tls(mesh.sds, mesh.identities, sni)
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
    if policy is not None and not apply_policy(cluster, policy, sni=service.hostname):
        log.warning(
            "cluster %s: its TLS settings name files or secrets this proxy cannot use; "
            "sending it with no endpoints rather than in plaintext",
            name,
        )
        return _unusable(name)
    if mesh is None and policy is not None and policy.tls is not None:
        if policy.tls.mode == "ISTIO_MUTUAL":
            # Mesh mTLS asked for, by a proxy with no mesh identity: never plaintext.
            return _unusable(name)
    if mesh is not None:
        _apply_mesh_tls(cluster, mesh, names.outbound_sni(service.port, subset, service.hostname))
    return cluster


def _unusable(name: str) -> cluster_pb2.Cluster:
    """A cluster with no endpoints: requests to it fail (503) rather than go out unprotected."""
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
