"""Mesh mutual TLS: SDS references, PeerAuthentication modes, TLS contexts.

Certificates never pass through Pilot: a proxy's node metadata names where
its identity comes from (Citadel's TLS address, a token file, Citadel's root
bundle), and the contexts built here tell Envoy to fetch ``default`` and
``ROOTCA`` from Citadel over SDS with the token file as call credentials.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.grpc_credential.v3 import file_based_metadata_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2

from api.attachment import attached, peer_mode
from pilot.config.index import ConfigIndex
from pilot.networking import names
from pilot.networking.protos import pack

__all__ = [
    "ISTIO_TLS_MATCH",
    "downstream_tls",
    "peer_auth_mode",
    "sds_secret",
    "upstream_tls",
]

# Endpoint metadata that says "this instance terminates mesh mTLS" (as Istio's tlsMode label).
ISTIO_TLS_MATCH = {"tlsMode": "istio"}
_TOKEN_PLUGIN = "envoy.grpc_credentials.file_based_metadata"


def sds_secret(
    name: str, sds: tuple[str, str, str], wait: duration_pb2.Duration | None = None
) -> secret_pb2.SdsSecretConfig:
    """A secret from Citadel. `wait` bounds how long a listener waits for it before going
    live without it (Envoy's default is 15 s)."""
    address, token_file, root_file = sds
    google = grpc_service_pb2.GrpcService.GoogleGrpc(
        target_uri=address, stat_prefix="sds_citadel", credentials_factory_name=_TOKEN_PLUGIN
    )
    google.channel_credentials.ssl_credentials.root_certs.filename = root_file
    plugin = google.call_credentials.add().from_plugin
    plugin.name = _TOKEN_PLUGIN
    plugin.typed_config.CopyFrom(
        pack(
            file_based_metadata_pb2.FileBasedMetadataConfig(
                secret_data=base_pb2.DataSource(filename=token_file),
                header_key="authorization",
                header_prefix="Bearer ",
            )
        )
    )
    source = config_source_pb2.ConfigSource(
        resource_api_version=config_source_pb2.V3,
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            transport_api_version=config_source_pb2.V3,
            grpc_services=[grpc_service_pb2.GrpcService(google_grpc=google)],
        ),
    )
    if wait is not None:
        source.initial_fetch_timeout.CopyFrom(wait)
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def _common(
    sds: tuple[str, str, str], san_matchers: Iterable[common_pb2.SubjectAltNameMatcher]
) -> tls_pb2.CommonTlsContext:
    ctx = tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[sds_secret(names.WORKLOAD_SECRET, sds)]
    )
    combined = ctx.combined_validation_context
    combined.default_validation_context.match_typed_subject_alt_names.extend(san_matchers)
    combined.validation_context_sds_secret_config.CopyFrom(sds_secret(names.ROOT_SECRET, sds))
    return ctx


def downstream_tls(sds: tuple[str, str, str], trust_domain: str) -> tls_pb2.DownstreamTlsContext:
    """Inbound: our cert; the client must present one from the mesh's trust domain."""
    any_mesh_identity = common_pb2.SubjectAltNameMatcher(
        san_type=common_pb2.SubjectAltNameMatcher.URI,
        matcher=string_pb2.StringMatcher(prefix=f"spiffe://{trust_domain}/"),
    )
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=_common(sds, [any_mesh_identity]),
        require_client_certificate={"value": True},
    )


def upstream_tls(
    sds: tuple[str, str, str], identities: Iterable[str], sni: str
) -> tls_pb2.UpstreamTlsContext:
    """Outbound: our cert; the server must be one of the destination's SPIFFE identities."""
    matchers = [
        common_pb2.SubjectAltNameMatcher(
            san_type=common_pb2.SubjectAltNameMatcher.URI,
            matcher=string_pb2.StringMatcher(exact=uri),
        )
        for uri in sorted(set(identities))
    ]
    return tls_pb2.UpstreamTlsContext(common_tls_context=_common(sds, matchers), sni=sni)


def peer_auth_mode(
    config: ConfigIndex,
    namespace: str,
    labels: Mapping[str, str],
    port: int | None,
    root_namespace: str,
) -> str:
    """STRICT, PERMISSIVE or DISABLE for a workload port: workload, then namespace,
    then mesh-wide policy; UNSET inherits from the level above; the default is PERMISSIVE."""
    found = attached(
        config.of("PeerAuthentication"), "PeerAuthentication", namespace, labels, root_namespace
    )
    return peer_mode(found, port)[0]
