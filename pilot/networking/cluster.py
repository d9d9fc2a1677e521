"""Cluster builders (CDS)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import duration_pb2

from pilot.model import Service
from pilot.networking import names

__all__ = ["inbound_cluster", "outbound_cluster"]

_CONNECT_TIMEOUT = duration_pb2.Duration(seconds=10)


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def outbound_cluster(service: Service) -> cluster_pb2.Cluster:
    """An EDS cluster for a mesh service; endpoints come over ADS."""
    name = names.outbound_cluster(service.key, service.port)
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=_ads(), service_name=name
        ),
        connect_timeout=_CONNECT_TIMEOUT,
        lb_policy=cluster_pb2.Cluster.LEAST_REQUEST,
    )


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
