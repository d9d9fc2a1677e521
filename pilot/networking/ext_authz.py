"""AuthorizationPolicy CUSTOM: ask an external authorizer (Envoy's ext_authz), as Istio does.

Two filters, ahead of request authentication and the RBAC filters (Istio's
order: CUSTOM, then DENY, then ALLOW):

- an RBAC filter holding the CUSTOM policies' rules as *shadow* rules: it
  enforces nothing, it only marks a request its rules match, in Envoy's
  dynamic metadata (`istio_ext_authz_shadow_effective_policy_id`);
- ext_authz, enabled only for requests so marked, asking the provider the mesh
  config names (`envoyExtAuthzHttp` or `envoyExtAuthzGrpc`), through the
  sidecar's outbound cluster of the provider's service.

Fail closed: a CUSTOM policy whose provider is not in the mesh config, whose
service is not in the mesh, or that shares a workload with a CUSTOM policy of
another provider, is not delegated: its rules become DENY rules. An authorizer
that cannot be reached refuses (403, or `statusOnError`) unless the provider
says `failOpen`. Without CUSTOM policies both filters are configured to do
nothing (a slot named on the listener must always get a config: Envoy answers
500 to every request on a listener whose filter config never arrived).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2, http_uri_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.type.matcher.v3 import metadata_pb2, string_pb2, value_pb2
from google.protobuf import duration_pb2

from api import checks
from api.mesh_config import ExtAuthzGrpc, ExtAuthzHttp, ExtensionProvider
from api.resources import Resource
from api.security.authorization_policy import AuthorizationPolicySpec
from pilot.model import Service, ServiceKey
from pilot.networking import authz, names

__all__ = ["Delegation", "delegate", "filter_configs"]

log = logging.getLogger(__name__)

_RBAC_NAMESPACE = "envoy.filters.http.rbac"  # where every RBAC filter writes its metadata
_STAT_PREFIX = "istio_ext_authz_"
_POLICY_KEY = f"{_STAT_PREFIX}shadow_effective_policy_id"
_POLICY_PREFIX = "istio-ext-authz-"
_DEFAULT_TIMEOUT = duration_pb2.Duration(seconds=10)  # Istio's 600 s holds a request too long


@dataclass(frozen=True)
class Delegation:
    """What one workload's CUSTOM policies delegate: to which provider, through which
    cluster, and which policies (the ones not delegated fall back to DENY)."""

    provider: ExtensionProvider | None
    cluster: str
    hostname: str
    policies: tuple[Resource, ...]

    @property
    def refs(self) -> frozenset[str]:
        return frozenset(ap.ref for ap in self.policies)


def _custom(policies: Iterable[Resource]) -> list[Resource]:
    out = []
    for ap in policies:
        spec = ap.spec
        assert isinstance(spec, AuthorizationPolicySpec)
        if spec.action == "CUSTOM" and not authz.dry_run(ap):
            out.append(ap)
    return out


def _provider_name(ap: Resource) -> str:
    spec = ap.spec
    assert isinstance(spec, AuthorizationPolicySpec)
    return spec.provider.name if spec.provider is not None and spec.provider.name else ""


def _service(host_spec: str, port: int, services: Mapping[ServiceKey, Service]) -> Service | None:
    namespace, _, host = host_spec.rpartition("/")
    for svc in services.values():
        if (
            svc.hostname == host
            and svc.port == port
            and (not namespace or svc.key.namespace == namespace)
        ):
            return svc
    return None


def delegate(
    policies: Iterable[Resource],
    providers: Iterable[ExtensionProvider],
    services: Mapping[ServiceKey, Service],
) -> Delegation:
    """Which of a workload's CUSTOM policies go to an external authorizer (one provider
    per workload, as Istio by default); the others are refused: they become DENY."""
    custom = _custom(policies)
    if not custom:
        return Delegation(None, "", "", ())
    wanted = sorted({_provider_name(ap) for ap in custom})
    provider = {p.name: p for p in providers}.get(wanted[0]) if len(wanted) == 1 else None
    target: ExtAuthzHttp | ExtAuthzGrpc | None = None
    if provider is not None:
        target = provider.envoy_ext_authz_http or provider.envoy_ext_authz_grpc
    svc = _service(target.service, target.port, services) if target else None
    if provider is not None and svc is not None:
        cluster = names.outbound_cluster(svc.key, svc.port)
        return Delegation(provider, cluster, svc.hostname, tuple(custom))
    if len(wanted) > 1:
        why = f"one workload may use one CUSTOM provider, these use {', '.join(wanted)}"
    elif provider is None:
        why = f"no extension provider {wanted[0]!r} in the mesh config"
    else:
        assert target is not None
        why = f"provider {wanted[0]!r}: no service {target.service}:{target.port} in the mesh"
    for ap in custom:
        log.warning("%s: %s; the requests its rules match are denied", ap.ref, why)
    return Delegation(None, "", "", ())


def _pattern(value: str) -> string_pb2.StringMatcher:
    """Istio's header-list forms: 'exact', 'prefix*', '*suffix' (case-insensitive)."""
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=value[:-1], ignore_case=True)
    if value.startswith("*"):
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=True)
    return string_pb2.StringMatcher(exact=value, ignore_case=True)


def _patterns(values: list[str] | None) -> string_pb2.ListStringMatcher:
    return string_pb2.ListStringMatcher(patterns=[_pattern(v) for v in values or []])


def _timeout(value: str | None) -> duration_pb2.Duration:
    seconds = checks.duration_seconds(value) if value else None
    if seconds is None:
        return _DEFAULT_TIMEOUT
    return duration_pb2.Duration(seconds=int(seconds), nanos=round(seconds % 1 * 1e9))


def _common(p: ExtAuthzHttp | ExtAuthzGrpc, config: ext_authz_pb2.ExtAuthz) -> None:
    config.transport_api_version = config_source_pb2.V3
    config.failure_mode_allow = p.fail_open
    if p.status_on_error:
        config.status_on_error.code = int(p.status_on_error)
    if p.include_request_body_in_check is not None:
        body = p.include_request_body_in_check
        config.with_request_body.max_request_bytes = body.max_request_bytes or 0
        config.with_request_body.allow_partial_message = bool(body.allow_partial_message)
        config.with_request_body.pack_as_bytes = bool(body.pack_as_bytes)


def _http(p: ExtAuthzHttp, cluster: str, hostname: str) -> ext_authz_pb2.ExtAuthz:
    config = ext_authz_pb2.ExtAuthz()
    _common(p, config)
    service = config.http_service
    service.server_uri.CopyFrom(
        http_uri_pb2.HttpUri(uri=f"http://{hostname}", cluster=cluster, timeout=_timeout(p.timeout))
    )
    if p.path_prefix:
        service.path_prefix = p.path_prefix
    if p.include_request_headers_in_check:
        config.allowed_headers.CopyFrom(_patterns(p.include_request_headers_in_check))
    for key, value in sorted((p.include_additional_headers_in_check or {}).items()):
        service.authorization_request.headers_to_add.add(key=key, value=value)
    response = service.authorization_response
    if p.headers_to_upstream_on_allow:
        response.allowed_upstream_headers.CopyFrom(_patterns(p.headers_to_upstream_on_allow))
    if p.headers_to_downstream_on_deny:
        response.allowed_client_headers.CopyFrom(_patterns(p.headers_to_downstream_on_deny))
    if p.headers_to_downstream_on_allow:
        response.allowed_client_headers_on_success.CopyFrom(
            _patterns(p.headers_to_downstream_on_allow)
        )
    return config


def _grpc(p: ExtAuthzGrpc, cluster: str, hostname: str) -> ext_authz_pb2.ExtAuthz:
    config = ext_authz_pb2.ExtAuthz()
    _common(p, config)
    config.grpc_service.CopyFrom(
        grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                cluster_name=cluster, authority=hostname
            ),
            timeout=_timeout(p.timeout),
        )
    )
    return config


def _gate(prefix: str) -> metadata_pb2.MetadataMatcher:
    """ext_authz runs only for requests the shadow rules marked with a policy of ours."""
    return metadata_pb2.MetadataMatcher(
        filter=_RBAC_NAMESPACE,
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=_POLICY_KEY)],
        value=value_pb2.ValueMatcher(string_match=string_pb2.StringMatcher(prefix=prefix)),
    )


def _noop() -> ext_authz_pb2.ExtAuthz:
    """Valid, and never asks anyone: its gate needs metadata nothing ever sets."""
    return ext_authz_pb2.ExtAuthz(
        transport_api_version=config_source_pb2.V3,
        grpc_service=grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                cluster_name=names.EXT_AUTHZ_NONE_CLUSTER
            )
        ),
        filter_enabled_metadata=metadata_pb2.MetadataMatcher(
            filter="meshpy.ext_authz.none",
            path=[metadata_pb2.MetadataMatcher.PathSegment(key="never")],
            value=value_pb2.ValueMatcher(present_match=True),
        ),
    )


def filter_configs(
    delegation: Delegation, app_port: int | None
) -> dict[str, rbac_filter_pb2.RBAC | ext_authz_pb2.ExtAuthz]:
    """The shadow RBAC filter's and the ext_authz filter's configs, by filter name."""
    shadow = rbac_filter_pb2.RBAC()
    provider = delegation.provider
    if provider is None or not delegation.policies:
        return {names.EXT_AUTHZ_RBAC_FILTER: shadow, names.EXT_AUTHZ_FILTER: _noop()}
    prefix = f"{_POLICY_PREFIX}{provider.name}-"
    shadow.shadow_rules.action = rbac_pb2.RBAC.DENY
    shadow.shadow_rules_stat_prefix = _STAT_PREFIX
    for ap in delegation.policies:
        for key, policy in authz.rule_policies(ap, app_port, prefix).items():
            shadow.shadow_rules.policies[key].CopyFrom(policy)
    if provider.envoy_ext_authz_http is not None:
        config = _http(provider.envoy_ext_authz_http, delegation.cluster, delegation.hostname)
    else:
        assert provider.envoy_ext_authz_grpc is not None
        config = _grpc(provider.envoy_ext_authz_grpc, delegation.cluster, delegation.hostname)
    config.filter_enabled_metadata.CopyFrom(_gate(prefix))
    return {names.EXT_AUTHZ_RBAC_FILTER: shadow, names.EXT_AUTHZ_FILTER: config}
