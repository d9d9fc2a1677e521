"""The mesh config's extension providers (Istio's MeshConfig.extensionProviders).

An AuthorizationPolicy with action CUSTOM names a provider; the provider says
which external authorizer Envoy's ext_authz filter asks, over HTTP or gRPC.
Pilot reads them from `--mesh-config FILE` (YAML or JSON, Istio's field
names), validated here with field paths like every other config.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from api import checks
from api.documents import DocumentError, parse_yaml
from api.issues import Issue, Issues
from api.model import Spec, report_pydantic

__all__ = [
    "ExtAuthzGrpc",
    "ExtAuthzHttp",
    "ExtensionProvider",
    "MeshConfig",
    "MeshConfigError",
    "load_mesh_config",
]


class MeshConfigError(ValueError):
    def __init__(self, source: str, issues: list[Issue]) -> None:
        super().__init__(
            f"{source}: " + "; ".join(f"{i.path or '(top)'}: {i.message}" for i in issues)
        )
        self.issues = issues


class RequestBody(Spec):
    max_request_bytes: int | None = None
    allow_partial_message: bool | None = None
    pack_as_bytes: bool | None = None


class ExtAuthzHttp(Spec):
    service: str = ""
    port: int = 0
    timeout: str | None = None
    path_prefix: str | None = None
    fail_open: bool = False
    clear_route_cache: bool = False
    status_on_error: str | None = None
    include_request_headers_in_check: list[str] | None = None
    include_additional_headers_in_check: dict[str, str] | None = None
    include_request_body_in_check: RequestBody | None = None
    headers_to_upstream_on_allow: list[str] | None = None
    headers_to_downstream_on_deny: list[str] | None = None
    headers_to_downstream_on_allow: list[str] | None = None


class ExtAuthzGrpc(Spec):
    service: str = ""
    port: int = 0
    timeout: str | None = None
    fail_open: bool = False
    clear_route_cache: bool = False
    status_on_error: str | None = None
    include_request_body_in_check: RequestBody | None = None


class ExtensionProvider(Spec):
    name: str = ""
    envoy_ext_authz_http: ExtAuthzHttp | None = None
    envoy_ext_authz_grpc: ExtAuthzGrpc | None = None


class MeshConfig(Spec):
    extension_providers: list[ExtensionProvider] | None = None

    def provider(self, name: str) -> ExtensionProvider | None:
        return next((p for p in self.extension_providers or [] if p.name == name), None)


def _check_service(p: ExtAuthzHttp | ExtAuthzGrpc, at: Issues) -> None:
    _, _, host = p.service.rpartition("/")
    if not host:
        at.error("required field is missing", "service")
    elif (m := checks.fqdn(host)) is not None:
        at.error(m, "service")
    if not 0 < p.port < 65536:
        at.error("must be a port (1..65535)", "port")
    if p.timeout is not None and (m := checks.duration(p.timeout)) is not None:
        at.error(m, "timeout")
    if p.status_on_error is not None and not (
        p.status_on_error.isdigit() and 100 <= int(p.status_on_error) <= 599
    ):
        at.error('must be an HTTP status code, e.g. "403"', "statusOnError")


def validate(config: MeshConfig, issues: Issues) -> None:
    seen: set[str] = set()
    for i, p in enumerate(config.extension_providers or []):
        at = issues.at("extensionProviders", i)
        if not p.name:
            at.error("required field is missing", "name")
        elif p.name in seen:
            at.error(f"provider {p.name!r} is defined twice", "name")
        seen.add(p.name)
        kinds = [k for k in (p.envoy_ext_authz_http, p.envoy_ext_authz_grpc) if k is not None]
        if len(kinds) != 1:
            at.error("needs exactly one of envoyExtAuthzHttp or envoyExtAuthzGrpc")
            continue
        field = "envoyExtAuthzHttp" if p.envoy_ext_authz_http is not None else "envoyExtAuthzGrpc"
        _check_service(kinds[0], at.at(field))
        if isinstance(kinds[0], ExtAuthzHttp) and kinds[0].path_prefix:
            if not kinds[0].path_prefix.startswith("/"):
                at.at(field).error("must start with '/'", "pathPrefix")


def load_mesh_config(text: str, source: str) -> MeshConfig:
    """Parse and validate; MeshConfigError lists every problem with its field path."""
    issues = Issues()
    try:
        docs = parse_yaml(text)
    except DocumentError as err:
        raise MeshConfigError(source, [Issue("", str(err))]) from err
    raw: Any = docs[0] if len(docs) == 1 else ({} if not docs else None)
    if not isinstance(raw, dict):
        raise MeshConfigError(source, [Issue("", "must be one YAML/JSON mapping")])
    try:
        config = MeshConfig.model_validate(raw)
    except ValidationError as err:
        report_pydantic(err, issues)
        raise MeshConfigError(source, list(issues.errors)) from err
    validate(config, issues)
    if issues.errors:
        raise MeshConfigError(source, list(issues.errors))
    return config
