"""Pieces shared by the security kinds: selectors and target references."""

from __future__ import annotations

from api import checks
from api.issues import Issues
from api.model import Spec

__all__ = ["PolicyTargetReference", "WorkloadSelector", "check_scope", "check_selector"]


class WorkloadSelector(Spec):
    match_labels: dict[str, str] | None = None


class PolicyTargetReference(Spec):
    group: str | None = None
    kind: str = ""
    name: str = ""
    namespace: str | None = None


_TARGET_KINDS = {
    ("", "Service"),
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
}


def check_selector(selector: WorkloadSelector | None, issues: Issues) -> None:
    if selector is None:
        return
    errors, warnings = checks.workload_selector(selector.match_labels)
    for message in errors:
        issues.error(message, "selector", "matchLabels")
    for message in warnings:
        issues.warn(message, "selector")
    for key, message in checks.selector_limits(selector.match_labels, 4096):
        issues.error(message, "selector", "matchLabels", *([key] if key else []))


def check_scope(
    selector: WorkloadSelector | None,
    target_ref: PolicyTargetReference | None,
    target_refs: list[PolicyTargetReference] | None,
    issues: Issues,
) -> None:
    """At most one of selector, targetRef, targetRefs; each reference well formed."""
    used = [
        n
        for n, v in (("selector", selector), ("targetRef", target_ref), ("targetRefs", target_refs))
        if v
    ]
    if len(used) > 1:
        issues.error(
            f"only one of selector, targetRef or targetRefs may be set, not {' and '.join(used)}"
        )
    check_selector(selector, issues)
    refs: list[tuple[str, int | None, PolicyTargetReference]] = (
        [("targetRef", None, target_ref)] if target_ref else []
    )
    refs += [("targetRefs", i, r) for i, r in enumerate(target_refs or [])]
    if (m := checks.max_items(target_refs, 16)) is not None:
        issues.error(m, "targetRefs")
    for field, index, ref in refs:
        at = issues.at(field) if index is None else issues.at(field, index)
        if not ref.name:
            at.error("required field is missing", "name")
        elif (m := checks.max_length(ref.name, 253)) is not None:
            at.error(m, "name")
        if ref.namespace:
            at.error(
                "cross-namespace references are not supported; leave namespace empty", "namespace"
            )
        if (ref.group or "", ref.kind) not in _TARGET_KINDS:
            at.error(
                f"unsupported target {ref.group or 'core'}/{ref.kind}: one of Service, "
                "ServiceEntry, Gateway or GatewayClass",
                "kind",
            )
