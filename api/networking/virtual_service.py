"""VirtualService (networking.istio.io): how requests to a host are matched and routed.

The model follows Istio's `VirtualService` message (v1alpha3/v1beta1/v1 are the same
schema). Protobuf `oneof`s are declared as optional fields; the semantic rules in
`virtual_service_rules` (and `virtual_service_http` for HTTP routes) check that at
most one member is set, as the API server's protobuf decoding would.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field

from api import checks
from api.model import Spec
from api.networking.virtual_service_rules import validate
from api.resources import NETWORKING, KindInfo

__all__ = [
    "KIND",
    "CorsPolicy",
    "Delegate",
    "Destination",
    "HTTPBody",
    "HTTPDirectResponse",
    "HTTPFaultInjection",
    "HTTPMatchRequest",
    "HTTPMirrorPolicy",
    "HTTPRedirect",
    "HTTPRetry",
    "HTTPRewrite",
    "HTTPRoute",
    "HTTPRouteDestination",
    "HeaderOperations",
    "Headers",
    "L4MatchAttributes",
    "Percent",
    "PortSelector",
    "RegexRewrite",
    "RouteDestination",
    "StringMatch",
    "TCPRoute",
    "TLSMatchAttributes",
    "TLSRoute",
    "VirtualServiceSpec",
]

# protobuf uint32: the API server refuses negative numbers before any Go check runs.
UInt32 = Annotated[int, Field(ge=0, le=4294967295)]
Int32 = Annotated[int, Field(ge=-2147483648, le=2147483647)]
# google.protobuf.Duration in its JSON form ("1s", "100ms"); checked semantically.
Duration = str


class StringMatch(Spec):
    """oneof exact | prefix | regex; an empty match means "present" where allowed."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


class PortSelector(Spec):
    number: UInt32 | None = None


class Destination(Spec):
    host: str
    subset: str | None = None
    port: PortSelector | None = None


class Percent(Spec):
    value: float | None = None


class HeaderOperations(Spec):
    set: dict[str, str] | None = None
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class Headers(Spec):
    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class HTTPMatchRequest(Spec):
    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch | None] | None = None
    port: UInt32 | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    query_params: dict[str, StringMatch | None] | None = None
    ignore_uri_case: bool | None = None
    without_headers: dict[str, StringMatch | None] | None = None
    source_namespace: str | None = None
    stat_prefix: str | None = None


class HTTPRouteDestination(Spec):
    destination: Destination
    weight: Int32 | None = None
    headers: Headers | None = None


class RouteDestination(Spec):
    destination: Destination
    weight: Int32 | None = None


class Delegate(Spec):
    name: str | None = None
    namespace: str | None = None


class HTTPRedirect(Spec):
    uri: str | None = None
    prefix_rewrite: str | None = None
    authority: str | None = None
    # oneof redirect_port: port | derivePort
    port: UInt32 | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirect_code: UInt32 | None = None


class HTTPBody(Spec):
    """oneof string | bytes (base64 in YAML/JSON)."""

    string: str | None = None
    bytes: str | None = None


class HTTPDirectResponse(Spec):
    status: UInt32
    body: HTTPBody | None = None


class RegexRewrite(Spec):
    match: str | None = None
    rewrite: str | None = None


class HTTPRewrite(Spec):
    uri: str | None = None
    authority: str | None = None
    uri_regex_rewrite: RegexRewrite | None = None


class HTTPRetry(Spec):
    attempts: Int32 | None = None
    per_try_timeout: Duration | None = None
    retry_on: str | None = None
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None


class FaultDelay(Spec):
    # oneof http_delay_type: fixedDelay | exponentialDelay
    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percent | None = None
    percent: Int32 | None = None  # deprecated


class FaultAbort(Spec):
    # oneof error_type: httpStatus | grpcStatus | http2Error
    http_status: Int32 | None = None
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percent | None = None


class HTTPFaultInjection(Spec):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPMirrorPolicy(Spec):
    destination: Destination
    percentage: Percent | None = None


class CorsPolicy(Spec):
    allow_origin: list[str] | None = None  # deprecated
    allow_origins: list[StringMatch] | None = None
    allow_methods: list[str] | None = None
    allow_headers: list[str] | None = None
    expose_headers: list[str] | None = None
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None


class HTTPRoute(Spec):
    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] | None = None
    # Deprecated; Istio's CRD also takes its proto name, mirror_percent.
    mirror_percent: UInt32 | None = Field(
        default=None,
        validation_alias=AliasChoices("mirrorPercent", "mirror_percent"),
        serialization_alias="mirrorPercent",
    )
    mirror_percentage: Percent | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None


class TLSMatchAttributes(Spec):
    sni_hosts: list[str] | None = None
    destination_subnets: list[str] | None = None
    port: UInt32 | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None


class TLSRoute(Spec):
    match: list[TLSMatchAttributes] | None = None
    route: list[RouteDestination] | None = None


class L4MatchAttributes(Spec):
    destination_subnets: list[str] | None = None
    port: UInt32 | None = None
    source_subnet: str | None = None
    source_labels: dict[str, str] | None = None
    gateways: list[str] | None = None
    source_namespace: str | None = None


class TCPRoute(Spec):
    match: list[L4MatchAttributes] | None = None
    route: list[RouteDestination] | None = None


class VirtualServiceSpec(Spec):
    hosts: list[str] | None = None
    gateways: list[str] | None = None
    http: list[HTTPRoute] | None = None
    tls: list[TLSRoute] | None = None
    tcp: list[TCPRoute] | None = None
    export_to: list[str] | None = None

    refuse_removed = checks.refuse_removed_fields()  # websocketUpgrade, appendHeaders, ...

    def views(self, namespace: str) -> tuple[tuple[str, bool], ...]:
        """Who sees this VirtualService of `namespace`, by `exportTo`, and how: ("*",
        False) every namespace (the default); else (ns, own) per namespace it is exported
        to, own when that is its own ('.'). A proxy sees first those private to its own
        namespace, then those exported to it by name, then the public ones (Istio's order);
        two VirtualServices compete for a host only where they are seen alike."""
        export = {namespace if e == "." else e for e in self.export_to or ["*"]}
        if "*" in export:
            return (("*", False),)
        return tuple((n, n == namespace) for n in sorted(export))


KIND = KindInfo(
    kind="VirtualService",
    group=NETWORKING,
    versions=("v1alpha3", "v1beta1", "v1"),
    plural="virtualservices",
    spec_model=VirtualServiceSpec,
    validate=validate,
)
