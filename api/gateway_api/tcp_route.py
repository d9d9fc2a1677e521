"""TCPRoute (gateway.networking.k8s.io v1alpha2, v1): TCP connections that reach a
listener (or a Service) forwarded to weighted backends; validated as the Gateway API's
CRDs do.

v1 (standard channel) allows one rule; v1alpha2 (experimental channel only, as Istio's
tcp-echo sample uses it) up to sixteen, with unique rule names, and tells parentRefs to
the same parent apart by sectionName or port. When the caller does not say which
version a document is (`common.route_version`), the rules every version shares apply,
and the larger limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from api.gateway_api import common
from api.gateway_api.common import BackendRef, ParentReference
from api.issues import Issues
from api.model import Spec
from api.resources import GATEWAY_API, KindInfo

__all__ = ["KIND", "TCPRouteRule", "TCPRouteSpec", "validate"]


class TCPRouteRule(Spec):
    name: str | None = None
    backend_refs: list[BackendRef]


class TCPRouteSpec(Spec):
    parent_refs: list[ParentReference] | None = None
    use_default_gateways: Literal["All", "None"] | None = None
    rules: list[TCPRouteRule]


def validate(spec: TCPRouteSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    version = common.route_version(meta)
    experimental = version in common.EXPERIMENTAL_VERSIONS
    common.check_parent_refs(spec.parent_refs, issues, experimental=experimental)
    most = 1 if version == "v1" else 16
    common.check_backend_rules(spec.rules, issues, most=most, version=version)


KIND = KindInfo(
    kind="TCPRoute",
    group=GATEWAY_API,
    versions=("v1alpha2", "v1"),
    plural="tcproutes",
    spec_model=TCPRouteSpec,
    validate=validate,
    spec_required=True,
)
