"""Endpoint builders (EDS): a service's healthy instances, or a subset's."""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import struct_pb2

from api.networking.policy_checks import UNIX_PREFIX
from pilot.model import Service
from pilot.networking import names

__all__ = ["load_assignment"]


def _address(address: str, port: int) -> address_pb2.Address:
    """An IP and port, or a unix socket path (a leading '@' names an abstract socket)."""
    if address.startswith(UNIX_PREFIX):
        return address_pb2.Address(pipe=address_pb2.Pipe(path=address.removeprefix(UNIX_PREFIX)))
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def _lb_endpoint(
    address: str, port: int, labels: Mapping[str, str], tls_mode: str = "disabled"
) -> endpoint_components_pb2.LbEndpoint:
    metadata = base_pb2.Metadata()
    if tls_mode == "istio":  # picked up by the cluster's transport_socket_matches (auto mTLS)
        metadata.filter_metadata["envoy.transport_socket_match"].update({"tlsMode": "istio"})
    if labels:
        fields = struct_pb2.Struct()
        fields.update(dict(labels))
        metadata.filter_metadata["istio"].CopyFrom(fields)
    return endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=_address(address, port)),
        health_status=health_check_pb2.HEALTHY,
        metadata=metadata,
    )


def load_assignment(
    service: Service, subset: str = "", subset_labels: Mapping[str, str] | None = None
) -> endpoint_pb2.ClusterLoadAssignment:
    """Instances whose labels include every subset label (all of them without a subset).

    An instance without an address (a ServiceEntry endpoint that only names a
    network, reached through that network's gateway) has nothing Envoy can
    dial here: it is left out rather than sent as an address Envoy rejects.
    """
    wanted = dict(subset_labels or {})
    chosen = [
        inst
        for inst in service.instances
        if inst.address and all(inst.labels.get(k) == v for k, v in wanted.items())
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=names.outbound_cluster(service.key, service.port, subset),
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[_lb_endpoint(i.address, i.port, i.labels, i.tls_mode) for i in chosen]
            )
        ],
    )
