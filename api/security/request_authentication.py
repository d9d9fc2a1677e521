"""RequestAuthentication (security.istio.io): which JWTs a workload accepts.

A token that is present must be valid; whether one is required at all is up to
an AuthorizationPolicy (or `presence: REQUIRED` on the rule). The JWT rule
model and its checks live in `jwt`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api import checks
from api.issues import Issues
from api.model import Spec
from api.resources import SECURITY, KindInfo
from api.security.authorization_policy import check_dry_run
from api.security.common import PolicyTargetReference, WorkloadSelector, check_scope
from api.security.jwt import JwtRule, check_jwt_rule

__all__ = ["KIND", "RequestAuthenticationSpec"]


class RequestAuthenticationSpec(Spec):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    jwt_rules: list[JwtRule | None] | None = None


def validate(spec: RequestAuthenticationSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    check_scope(spec.selector, spec.target_ref, spec.target_refs, issues)
    check_dry_run("RequestAuthentication", None, meta, issues)
    if (m := checks.max_items(spec.jwt_rules, 4096)) is not None:
        issues.error(m, "jwtRules")
    for i, rule in enumerate(spec.jwt_rules or []):
        check_jwt_rule(rule, issues.at("jwtRules", i))


KIND = KindInfo(
    kind="RequestAuthentication",
    group=SECURITY,
    versions=("v1beta1", "v1"),
    plural="requestauthentications",
    spec_model=RequestAuthenticationSpec,
    validate=validate,
)
