"""Telemetry -> Envoy: access logs (JSON lines or text) and Zipkin tracing on every HCM.

The mesh config (Pilot's settings) names the providers and their defaults:
``envoy`` writes access logs to a file, ``zipkin`` sends spans to a collector.
Telemetry resources turn them on or off and set sampling: root namespace,
then the proxy's namespace, then one selecting the workload, each overriding
the one before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, substitution_format_string_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2
from envoy.config.trace.v3 import http_tracer_pb2, zipkin_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.v3 import percent_pb2
from google.protobuf import duration_pb2, struct_pb2

from api.attachment import attached
from api.telemetry.telemetry import AccessLogging, TelemetrySpec, Tracing
from pilot.config.index import ConfigIndex
from pilot.networking import names
from pilot.networking.protos import pack

__all__ = ["Observability", "apply", "effective", "zipkin_cluster"]

# Istio-like JSON access log fields.
JSON_FIELDS = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%",
    "upstream_cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "authority": "%REQ(:AUTHORITY)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "user_agent": "%REQ(USER-AGENT)%",
    "trace_id": "%REQ(X-B3-TRACEID)%",
    "peer": "%DOWNSTREAM_PEER_URI_SAN%",
}


@dataclass(frozen=True, slots=True)
class Observability:
    access_log_file: str | None  # None: no access log
    access_log_format: str  # "json", "text", or an Envoy format string
    sampling: float | None  # None: no tracing


def _enabled(entries: Sequence[AccessLogging | Tracing] | None, provider: str) -> bool | None:
    """What a Telemetry's list says about one provider; None when it says nothing."""
    if not entries:
        return None
    for entry in entries:
        names = [p.name for p in (entry.providers or [])]
        if names and provider not in names:
            continue
        if isinstance(entry, AccessLogging) and entry.disabled:
            return False
        if isinstance(entry, Tracing) and entry.disable_span_reporting:
            return False
        return True
    return None


def effective(
    config: ConfigIndex,
    namespace: str,
    labels: Mapping[str, str],
    root: str,
    access_log_file: str,
    access_log_format: str,
    zipkin: str,
    sampling: float,
) -> Observability:
    logging_on = bool(access_log_file)
    tracing_on = bool(zipkin)
    pct = sampling
    layers = [
        r.spec_as(TelemetrySpec)
        for r in attached(config.of("Telemetry"), "Telemetry", namespace, labels, root).all()
    ]
    for spec in layers:
        if (on := _enabled(spec.access_logging, "envoy")) is not None:
            logging_on = on
        if (on := _enabled(spec.tracing, "zipkin")) is not None:
            tracing_on = on and bool(zipkin)
        for t in spec.tracing or []:
            if t.random_sampling_percentage is not None:
                pct = t.random_sampling_percentage
    return Observability(
        access_log_file=(access_log_file or "/dev/stdout") if logging_on else None,
        access_log_format=access_log_format,
        sampling=pct if tracing_on else None,
    )


def _access_log(obs: Observability) -> accesslog_pb2.AccessLog:
    log = file_pb2.FileAccessLog(path=obs.access_log_file or "/dev/stdout")
    fmt = substitution_format_string_pb2.SubstitutionFormatString()
    if obs.access_log_format == "json":
        fields = struct_pb2.Struct()
        fields.update(JSON_FIELDS)
        fmt.json_format.CopyFrom(fields)
    elif obs.access_log_format == "text":
        fmt.text_format_source.inline_string = (
            '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
            "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
            '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER%\n'
        )
    else:
        fmt.text_format_source.inline_string = obs.access_log_format.rstrip("\n") + "\n"
    log.log_format.CopyFrom(fmt)
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.file", typed_config=pack(log))


def apply(hcm: hcm_pb2.HttpConnectionManager, obs: Observability | None, outbound: bool) -> None:
    if obs is None:
        return
    if obs.access_log_file is not None:
        hcm.access_log.append(_access_log(obs))
    if obs.sampling is not None:
        tracing = hcm.tracing
        tracing.random_sampling.CopyFrom(percent_pb2.Percent(value=obs.sampling))
        tracing.spawn_upstream_span.value = outbound
        tracing.provider.CopyFrom(
            http_tracer_pb2.Tracing.Http(
                name="envoy.tracers.zipkin",
                typed_config=pack(
                    zipkin_pb2.ZipkinConfig(
                        collector_cluster=names.ZIPKIN_CLUSTER,
                        collector_endpoint="/api/v2/spans",
                        collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
                        trace_id_128bit=True,
                        shared_span_context={"value": False},
                    )
                ),
            )
        )


def zipkin_cluster(address: str) -> cluster_pb2.Cluster:
    host, _, port = address.rpartition(":")
    cluster = cluster_pb2.Cluster(
        name=names.ZIPKIN_CLUSTER,
        connect_timeout=duration_pb2.Duration(seconds=1),
        type=cluster_pb2.Cluster.STRICT_DNS,
        dns_lookup_family=cluster_pb2.Cluster.V4_ONLY,
    )
    cluster.load_assignment.cluster_name = names.ZIPKIN_CLUSTER
    cluster.load_assignment.endpoints.add().lb_endpoints.append(
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=host, port_value=int(port))
                )
            )
        )
    )
    return cluster
