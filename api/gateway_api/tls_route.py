"""TLSRoute (gateway.networking.k8s.io v1alpha2, v1alpha3, v1): TLS connections routed
by SNI hostname to weighted backends, passed through or terminated by the listener;
validated as the Gateway API's CRDs do.

v1 and v1alpha3 require 1..1024 hostnames, none an IP address, and allow one rule;
v1alpha2 leaves hostnames optional and allows sixteen rules (with unique names). The
alpha versions (experimental channel only) tell parentRefs to the same parent apart by
sectionName or port. When the caller does not say which version a document is
(`common.route_version`), the rules every version shares apply, and the larger limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from api.gateway_api import common
from api.gateway_api.common import BackendRef, ParentReference
from api.issues import Issues
from api.model import Spec
from api.resources import GATEWAY_API, KindInfo

__all__ = ["KIND", "TLSRouteRule", "TLSRouteSpec", "validate"]

_STRICT_VERSIONS = frozenset({"v1", "v1alpha3"})  # hostnames required, one rule


class TLSRouteRule(Spec):
    name: str | None = None
    backend_refs: list[BackendRef]


class TLSRouteSpec(Spec):
    parent_refs: list[ParentReference] | None = None
    use_default_gateways: Literal["All", "None"] | None = None
    hostnames: list[str] | None = None
    rules: list[TLSRouteRule]


def validate(spec: TLSRouteSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    version = common.route_version(meta)
    strict = version in _STRICT_VERSIONS
    common.check_parent_refs(
        spec.parent_refs, issues, experimental=version in common.EXPERIMENTAL_VERSIONS
    )
    if strict and spec.hostnames is None:
        issues.error(f"required field is missing (in {version})", "hostnames")
    common.check_hostnames(spec.hostnames, issues, most=1024, least=1 if strict else 0)
    for i, host in enumerate(spec.hostnames or []):
        if strict and common.is_hostname_ip(host):
            issues.error(f"hostnames cannot be an IP address ({host!r})", "hostnames", i)
    common.check_backend_rules(spec.rules, issues, most=1 if strict else 16, version=version)


KIND = KindInfo(
    kind="TLSRoute",
    group=GATEWAY_API,
    versions=("v1alpha2", "v1alpha3", "v1"),
    plural="tlsroutes",
    spec_model=TLSRouteSpec,
    validate=validate,
    spec_required=True,
)
