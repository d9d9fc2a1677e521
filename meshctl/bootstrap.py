"""Envoy bootstrap for a sidecar: who it is, where Pilot is, and nothing else.

Everything else (listeners, clusters, routes, endpoints) comes from Pilot
over ADS. Built as a typed Bootstrap message and printed as YAML.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import (
    address_pb2,
    backoff_pb2,
    base_pb2,
    config_source_pb2,
    grpc_service_pb2,
    protocol_pb2,
)
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.metrics.v3 import stats_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, duration_pb2, json_format, struct_pb2

__all__ = ["DRAIN_ARGS", "SidecarBootstrap", "envoy_argv", "render_yaml", "stats_tags"]

XDS_CLUSTER = "xds-grpc"

# How a mesh proxy drains the connections of a listener that Pilot replaced
# (an mTLS mode change, a telemetry change, a gateway's servers). Authorization
# and request authentication never need this: they reach existing connections
# at their next request over ECDS. `immediate` asks every connection to close at
# once (HTTP/1.1 `Connection: close` on its next response, HTTP/2 GOAWAY); after
# 5 s the old listener closes what is left, so no old chain outlives that.
# Envoy's own default is 600 s of gradual draining. Command-line flags only:
# Envoy's bootstrap has no field for them.
DRAIN_ARGS = ("--drain-time-s", "5", "--drain-strategy", "immediate")


def envoy_argv(
    envoy: str,
    config: str,
    *,
    base_id: int | None = None,
    log_level: str = "warn",
    drain: Sequence[str] = DRAIN_ARGS,
) -> list[str]:
    """How the mesh runs Envoy on a bootstrap (meshctl up, the tests, the compose sidecars)."""
    argv = [envoy, "-c", config, "--concurrency", "1", "--log-level", log_level, *drain]
    if base_id is not None:
        argv += ["--base-id", str(base_id)]
    return argv


def _address(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _static_cluster(name: str, host: str, port: int) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration_pb2.Duration(seconds=1),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(address=_address(host, port))
                        )
                    ]
                )
            ],
        ),
    )


def _stats_listener(address: str, port: int) -> listener_pb2.Listener:
    """Only /stats/prometheus of the admin API, never the rest of it."""
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(path="/stats/prometheus"),
        route=route_components_pb2.RouteAction(cluster="prometheus_stats"),
    )
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix="stats",
        route_config=route_pb2.RouteConfiguration(
            virtual_hosts=[
                route_components_pb2.VirtualHost(name="stats", domains=["*"], routes=[route])
            ]
        ),
        http_filters=[
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.router", typed_config=_pack(router_pb2.Router())
            )
        ],
    )
    return listener_pb2.Listener(
        name="prometheus_stats",
        address=_address(address, port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=_pack(hcm),
                    )
                ]
            )
        ],
    )


# Istio's standard request labels on Envoy's own stats. A cluster's stats are named
# `cluster.outbound|PORT|SUBSET|HOST.<stat>` (pilot/networking/names.py); a mesh HOST ends
# in `.svc.cluster.local`. Envoy's default cluster_name tag stops at HOST's first dot, which
# alone would leave `envoy_cluster_default_svc_cluster_local_upstream_rq_total`; the
# destination_service tag removes the whole `HOST.`, so the stats are the usual
# `envoy_cluster_upstream_rq_total` and the like. A regex's first group is what is removed,
# its second (else the first) the value. Envoy's default tags add envoy_response_code.
_HOST = r"[^|.]+(?:\.[^|.]+\.svc\.cluster\.local)?"
_CLUSTER_TAGS = (
    ("destination_service", rf"^cluster\.outbound\|[0-9]+\|[^|]*\|(({_HOST})\.)"),
    ("destination_version", r"^cluster\.outbound\|[0-9]+\|([^|]+)\|"),
    ("destination_port", r"^cluster\.outbound\|([0-9]+)\|"),
)


def stats_tags(
    service: str, namespace: str, labels: Mapping[str, str]
) -> list[stats_pb2.TagSpecifier]:
    """The source labels (fixed for this proxy) and the destination ones (per cluster)."""
    version = labels.get("version", "")
    app = labels.get("app", service)
    fixed = {
        "source_workload": f"{app}-{version}" if version else app,
        "source_app": app,
        "source_version": version or "unknown",
        "source_namespace": namespace,
    }
    return [
        *(stats_pb2.TagSpecifier(tag_name=k, fixed_value=v) for k, v in fixed.items()),
        *(stats_pb2.TagSpecifier(tag_name=k, regex=r) for k, r in _CLUSTER_TAGS),
    ]


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


@dataclass(frozen=True, slots=True)
class SidecarBootstrap:
    # Every Pilot replica (HOST, PORT): Envoy keeps one ADS stream and, when it breaks,
    # reconnects to the next replica in turn.
    pilots: tuple[tuple[str, int], ...]
    service: str
    namespace: str
    node_id: str
    admin_port: int
    outbound_port: int | None = None
    inbound_port: int | None = None
    app_port: int | None = None
    service_account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    instance_ip: str = "127.0.0.1"
    kind: str = "sidecar"  # or "gateway": listeners come from the Gateways selecting it
    # Mesh identity over SDS: Citadel's TLS address, the workload token file and the
    # root bundle to trust Citadel with. Paths only: no secret goes through Pilot.
    citadel_addr: str | None = None
    token_file: str | None = None
    root_cert_file: str | None = None
    # xDS over TLS: verify Pilot's certificate against the mesh root and its SPIFFE identity.
    pilot_identity: str | None = None
    # Envoy's stats in Prometheus format on this port (as Istio's 15090), at /stats/prometheus.
    stats_port: int | None = None
    # Where the stats listener binds (None: instance_ip); 0.0.0.0 in a container, so that
    # Galley's dashboard reaches it at the container's address.
    stats_address: str | None = None
    # Incremental (Delta) xDS, as Istio has defaulted to since 1.22; False: State of the World.
    delta: bool = True
    # The node's (region, zone, sub_zone): Pilot orders and weighs endpoints relative to it
    # when locality load balancing is in force.
    locality: tuple[str, str, str] = ("", "", "")

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "NAMESPACE": self.namespace,
            "SERVICE_ACCOUNT": self.service_account,
            "LABELS": dict(self.labels),
            "INSTANCE_IP": self.instance_ip,
            "PROXY_KIND": self.kind,
        }
        if self.outbound_port is not None:
            meta["OUTBOUND_PORT"] = str(self.outbound_port)
        if self.citadel_addr and self.token_file and self.root_cert_file:  # all three, or none
            meta["SDS_ADDR"] = self.citadel_addr
            meta["SDS_TOKEN_FILE"] = self.token_file
            meta["SDS_ROOT_CERT"] = self.root_cert_file
        if self.inbound_port is not None:
            meta["INBOUND_PORT"] = str(self.inbound_port)
        if self.app_port is not None:
            meta["APP_PORT"] = str(self.app_port)
        return meta

    def build(self) -> bootstrap_pb2.Bootstrap:
        metadata = struct_pb2.Struct()
        metadata.update(self.metadata())
        http2 = http_protocol_options_pb2.HttpProtocolOptions(
            explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
        http2_any = any_pb2.Any()
        http2_any.Pack(http2)
        xds_cluster = cluster_pb2.Cluster(
            name=XDS_CLUSTER,
            type=cluster_pb2.Cluster.STATIC
            if all(_is_ip(host) for host, _ in self.pilots)
            else cluster_pb2.Cluster.STRICT_DNS,
            connect_timeout=duration_pb2.Duration(seconds=1),
            typed_extension_protocol_options={
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": http2_any
            },
            load_assignment=endpoint_pb2.ClusterLoadAssignment(
                cluster_name=XDS_CLUSTER,
                endpoints=[
                    endpoint_components_pb2.LocalityLbEndpoints(
                        lb_endpoints=[
                            endpoint_components_pb2.LbEndpoint(
                                endpoint=endpoint_components_pb2.Endpoint(
                                    address=_address(host, port)
                                )
                            )
                            for host, port in self.pilots
                        ]
                    )
                ],
            ),
        )
        if self.pilot_identity and self.root_cert_file:
            tls = tls_pb2.UpstreamTlsContext(sni="pilot")
            validation = tls.common_tls_context.validation_context
            validation.trusted_ca.filename = self.root_cert_file
            validation.match_typed_subject_alt_names.add(
                san_type=common_pb2.SubjectAltNameMatcher.URI
            ).matcher.exact = self.pilot_identity
            tls_any = any_pb2.Any()
            tls_any.Pack(tls)
            xds_cluster.transport_socket.name = "envoy.transport_sockets.tls"
            xds_cluster.transport_socket.typed_config.CopyFrom(tls_any)
        static = bootstrap_pb2.Bootstrap.StaticResources(clusters=[xds_cluster])
        if self.stats_port is not None:
            static.clusters.append(
                _static_cluster("prometheus_stats", "127.0.0.1", self.admin_port)
            )
            static.listeners.append(
                _stats_listener(self.stats_address or self.instance_ip, self.stats_port)
            )
        ads = config_source_pb2.ConfigSource(
            ads=config_source_pb2.AggregatedConfigSource(),
            resource_api_version=config_source_pb2.V3,
        )
        # Reconnect to a restarted Pilot within a second or two, not Envoy's 30 s ceiling.
        retry = base_pb2.RetryPolicy(
            retry_back_off=backoff_pb2.BackoffStrategy(
                base_interval=duration_pb2.Duration(nanos=250_000_000),
                max_interval=duration_pb2.Duration(seconds=2),
            )
        )
        region, zone, sub_zone = self.locality
        node = base_pb2.Node(id=self.node_id, cluster=self.service, metadata=metadata)
        if region or zone or sub_zone:
            node.locality.CopyFrom(base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone))
        return bootstrap_pb2.Bootstrap(
            node=node,
            stats_config=stats_pb2.StatsConfig(
                stats_tags=stats_tags(self.service, self.namespace, self.labels)
            ),
            admin=bootstrap_pb2.Admin(address=_address("127.0.0.1", self.admin_port)),
            static_resources=static,
            dynamic_resources=bootstrap_pb2.Bootstrap.DynamicResources(
                ads_config=config_source_pb2.ApiConfigSource(
                    api_type=(
                        config_source_pb2.ApiConfigSource.DELTA_GRPC
                        if self.delta
                        else config_source_pb2.ApiConfigSource.GRPC
                    ),
                    transport_api_version=config_source_pb2.V3,
                    set_node_on_first_message_only=True,
                    grpc_services=[
                        grpc_service_pb2.GrpcService(
                            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                                cluster_name=XDS_CLUSTER, retry_policy=retry
                            )
                        )
                    ],
                ),
                cds_config=ads,
                lds_config=ads,
            ),
        )


def render_yaml(bootstrap: bootstrap_pb2.Bootstrap) -> str:
    """The bootstrap as YAML, headed by the command line to run it with."""
    import json

    import yaml

    # Through JSON: MessageToDict gives OrderedDicts for Any, which YAML can't represent.
    as_dict = json.loads(json_format.MessageToJson(bootstrap, preserving_proto_field_name=True))
    header = (
        "# Run: envoy -c THIS_FILE " + " ".join(DRAIN_ARGS) + "\n"
        "# (a replaced listener drains in 5 s, not in Envoy's default 600 s)\n"
    )
    return header + yaml.safe_dump(as_dict, sort_keys=False)
