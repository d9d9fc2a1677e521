"""Cluster builders (CDS): per service, its default cluster and one per subset."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import duration_pb2

from pilot.model import Service
from pilot.networking import names
from pilot.networking.endpoint import load_assignment
from pilot.networking.traffic_policy import Policy, apply_policy

__all__ = ["inbound_cluster", "outbound_cluster"]

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT = duration_pb2.Duration(seconds=10)


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def outbound_cluster(
    service: Service,
    policy: Policy | None = None,
    subset: str = "",
    subset_labels: Mapping[str, str] | None = None,
) -> cluster_pb2.Cluster:
    """EDS for catalog and STATIC ServiceEntry services; STRICT_DNS when Envoy must resolve."""
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
        unusable = cluster_pb2.Cluster(
            name=name, type=cluster_pb2.Cluster.STATIC, connect_timeout=_CONNECT_TIMEOUT
        )
        unusable.load_assignment.cluster_name = name
        return unusable
    return cluster


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
