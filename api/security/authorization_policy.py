"""AuthorizationPolicy (security.istio.io): allow, deny, audit or delegate requests.

The rule parts (`from`, `to`, `when`) live in `authz_rules`; this module checks
the policy as a whole: its scope, its action and provider, and the dry-run
annotation, which is the only metadata rule tied to a kind's spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from api import checks
from api.issues import Issues
from api.model import Spec
from api.resources import SECURITY, KindInfo
from api.security.authz_rules import Rule, check_rule, only_http_attributes
from api.security.common import PolicyTargetReference, WorkloadSelector, check_scope

__all__ = [
    "DRY_RUN_ANNOTATION",
    "KIND",
    "AuthorizationPolicySpec",
    "ExtensionProvider",
    "check_dry_run",
]

Action = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]
DRY_RUN_ANNOTATION = "istio.io/dry-run"
_AT = ("metadata", "annotations")
# What Go's strconv.ParseBool accepts, as Istio parses the annotation with it.
_BOOLEANS = frozenset(
    {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
)


class ExtensionProvider(Spec):
    name: str | None = None


class AuthorizationPolicySpec(Spec):
    selector: WorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] | None = None
    rules: list[Rule | None] | None = None
    action: Action | None = None
    provider: ExtensionProvider | None = None


def check_dry_run(kind: str, action: str | None, meta: Mapping[str, Any], issues: Issues) -> None:
    """`istio.io/dry-run` only on an ALLOW or DENY AuthorizationPolicy, and a boolean."""
    annotations = meta.get("annotations") or {}
    if DRY_RUN_ANNOTATION not in annotations:
        return
    root = Issues(prefix=(), items=issues.items)  # metadata sits beside spec, not in it
    if kind != "AuthorizationPolicy":
        root.error(f"{DRY_RUN_ANNOTATION} is only supported on AuthorizationPolicy", *_AT)
    elif action not in ("ALLOW", "DENY"):
        root.error(
            f"{DRY_RUN_ANNOTATION} is only supported with the ALLOW or DENY action, not {action}",
            *_AT,
        )
    value = annotations[DRY_RUN_ANNOTATION]
    if value not in _BOOLEANS:
        root.error(f"{DRY_RUN_ANNOTATION} must be true or false, not {value!r}", *_AT)


def validate(spec: AuthorizationPolicySpec, meta: Mapping[str, Any], issues: Issues) -> None:
    check_scope(spec.selector, spec.target_ref, spec.target_refs, issues)
    action = spec.action or "ALLOW"
    check_dry_run("AuthorizationPolicy", action, meta, issues)
    if action == "CUSTOM":
        issues.warn(
            "the requests this policy's rules match go to the external authorizer that "
            "Pilot's mesh config (--mesh-config extensionProviders) names as the provider; "
            "with no such provider there, they are denied",
            "action",
        )
        if spec.rules is None:
            issues.error("the CUSTOM action needs rules (use [{}] to match every request)", "rules")
        if spec.provider is None:
            issues.error("the CUSTOM action needs a provider", "provider")
        elif not spec.provider.name:
            issues.error("required field is missing", "provider", "name")
    elif spec.provider is not None:
        issues.error(f"a provider is only allowed with the CUSTOM action, not {action}", "provider")
    if action == "DENY" and spec.rules is None:
        issues.error("the DENY action needs rules (use [{}] to deny every request)", "rules")
    if action in ("DENY", "CUSTOM") and spec.rules == []:
        issues.warn(
            f"an empty rules list never matches, so this {action} policy does nothing", "rules"
        )
    if (m := checks.max_items(spec.rules, 512)) is not None:
        issues.error(m, "rules")
    for i, rule in enumerate(spec.rules or []):
        check_rule(rule, action == "CUSTOM", issues.at("rules", i))
        if action == "DENY" and rule is not None and only_http_attributes(rule):
            issues.warn(
                "this DENY rule uses only HTTP attributes, so it denies all TCP traffic in "
                "its scope; add ports to limit it to HTTP ports",
                "rules",
                i,
            )


KIND = KindInfo(
    kind="AuthorizationPolicy",
    group=SECURITY,
    versions=("v1beta1", "v1"),
    plural="authorizationpolicies",
    spec_model=AuthorizationPolicySpec,
    validate=validate,
)
