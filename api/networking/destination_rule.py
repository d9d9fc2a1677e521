"""DestinationRule (networking.istio.io): policies for traffic to a host after routing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api import checks
from api.issues import Issues
from api.model import Spec
from api.networking.policy import TrafficPolicy, WorkloadSelector
from api.networking.policy_checks import check_export_to, check_selector, check_traffic_policy
from api.resources import NETWORKING, KindInfo

__all__ = ["KIND", "DestinationRuleSpec", "Subset"]


class Subset(Spec):
    name: str | None = None
    labels: dict[str, str] | None = None
    traffic_policy: TrafficPolicy | None = None


class DestinationRuleSpec(Spec):
    host: str | None = None
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] | None = None
    export_to: list[str] | None = None
    workload_selector: WorkloadSelector | None = None


def validate(spec: DestinationRuleSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    namespace = str(meta.get("namespace", ""))
    if not spec.host:
        issues.error("required field is missing", "host")
    elif (m := checks.wildcard_domain(spec.host)) is not None:
        issues.error(m, "host")
    check_traffic_policy(spec.traffic_policy, namespace, issues.at("trafficPolicy"))
    names: set[str] = set()
    for i, subset in enumerate(spec.subsets or []):
        at = issues.at("subsets", i)
        if not subset.name:
            at.error("required field is missing", "name")
        elif subset.name in names:
            at.error(f"duplicate subset name {subset.name!r}", "name")
        elif (m := checks.dns_label(subset.name)) is not None:
            at.error(m, "name")
        names.add(subset.name or "")
        for message in checks.labels(subset.labels or {}):
            at.error(message, "labels")
        check_traffic_policy(subset.traffic_policy, namespace, at.at("trafficPolicy"))
    check_selector(spec.workload_selector, issues)
    check_export_to(
        spec.export_to, namespace, issues, with_selector=spec.workload_selector is not None
    )


KIND = KindInfo(
    kind="DestinationRule",
    group=NETWORKING,
    versions=("v1alpha3", "v1beta1", "v1"),
    plural="destinationrules",
    spec_model=DestinationRuleSpec,
    validate=validate,
)
