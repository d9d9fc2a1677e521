"""PeerAuthentication (security.istio.io): the mTLS mode a workload accepts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from api.issues import Issues
from api.model import Spec
from api.resources import SECURITY, KindInfo
from api.security.common import WorkloadSelector, check_selector

__all__ = ["KIND", "MutualTls", "PeerAuthenticationSpec"]

Mode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class MutualTls(Spec):
    mode: Mode = "UNSET"


class PeerAuthenticationSpec(Spec):
    selector: WorkloadSelector | None = None
    mtls: MutualTls | None = None
    port_level_mtls: dict[str, MutualTls] | None = None


def validate(spec: PeerAuthenticationSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    check_selector(spec.selector, issues)
    if spec.port_level_mtls is None:
        return
    if spec.selector is None or not spec.selector.match_labels:
        issues.error("port-level mTLS needs a workload selector with labels", "portLevelMtls")
    if not spec.port_level_mtls:
        issues.error("must not be empty when set", "portLevelMtls")
    for key in spec.port_level_mtls:
        if not key.isdigit() or not 1 <= int(key) <= 65535:
            issues.error(f"port {key!r} must be a number in 1..65535", "portLevelMtls", key)


KIND = KindInfo(
    kind="PeerAuthentication",
    group=SECURITY,
    versions=("v1beta1", "v1"),
    plural="peerauthentications",
    spec_model=PeerAuthenticationSpec,
    validate=validate,
)
