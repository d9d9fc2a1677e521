"""DestinationRule (networking.istio.io): policies for traffic to a host after routing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api import checks
from api.issues import Issues
from api.model import Spec
from api.networking.policy import (
    ClientTLSSettings,
    LoadBalancerSettings,
    PortTrafficPolicy,
    TrafficPolicy,
    WorkloadSelector,
)
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

    refuse_removed = checks.refuse_removed_fields()  # portLevelSettings[].port.name


def validate(spec: DestinationRuleSpec, meta: Mapping[str, Any], issues: Issues) -> None:
    namespace = str(meta.get("namespace", ""))
    if not spec.host:
        issues.error("required field is missing", "host")
    elif (m := checks.wildcard_domain(spec.host)) is not None:
        issues.error(m, "host")
    check_traffic_policy(spec.traffic_policy, namespace, issues.at("trafficPolicy"))
    _check_translated(spec.traffic_policy, issues.at("trafficPolicy"))
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
        _check_translated(subset.traffic_policy, at.at("trafficPolicy"))
    check_selector(spec.workload_selector, issues)
    if spec.workload_selector is not None:
        _refuse_scoped_tls(spec, issues)
    check_export_to(
        spec.export_to, namespace, issues, with_selector=spec.workload_selector is not None
    )


def _refuse_scoped_tls(spec: DestinationRuleSpec, issues: Issues) -> None:
    """A rule with a workloadSelector is not applied here (api/unsupported.py): for its
    TLS settings that would mean sending in plaintext, or unverified, what the rule asks
    to protect. Refused at every level, so that no accepted rule weakens a connection."""
    levels: list[tuple[TrafficPolicy | PortTrafficPolicy | None, Issues]] = [
        (spec.traffic_policy, issues.at("trafficPolicy"))
    ]
    levels += [
        (s.traffic_policy, issues.at("subsets", i, "trafficPolicy"))
        for i, s in enumerate(spec.subsets or [])
    ]
    for policy, at in list(levels):
        if isinstance(policy, TrafficPolicy):
            levels += [
                (pls, at.at("portLevelSettings", i))
                for i, pls in enumerate(policy.port_level_settings or [])
            ]
    for level, at in levels:
        tls = level.tls if level is not None else None
        if tls is not None and (tls.mode or "DISABLE") != "DISABLE":
            at.error(
                "TLS settings in a DestinationRule with a workloadSelector are not supported "
                "by this mesh (such a rule is not applied, and its TLS would be lost): drop "
                "the workloadSelector to apply the rule to every workload",
                "tls",
            )


# Envoy's limit on a cookie attribute's name and value, in bytes.
_COOKIE_ATTRIBUTE_BYTES = 16384


def _check_translated(policy: TrafficPolicy | None, issues: Issues) -> None:
    """What Pilot's translation needs beyond Istio's rules, at a policy and its port levels:
    nothing accepted here may be sent to Envoy in a form it refuses, or weaker than asked."""
    if policy is None:
        return
    levels: list[tuple[TrafficPolicy | PortTrafficPolicy, Issues]] = [(policy, issues)]
    levels += [
        (pls, issues.at("portLevelSettings", i))
        for i, pls in enumerate(policy.port_level_settings or [])
    ]
    for level, at in levels:
        _check_tls_crl(level.tls, at.at("tls"))
        _check_cookie_attributes(level.load_balancer, at.at("loadBalancer"))


def _check_tls_crl(tls: ClientTLSSettings | None, issues: Issues) -> None:
    # Istio drops caCrl with insecureSkipVerify (nothing is verified, so nothing is checked
    # for revocation); refused here, as caCertificates and subjectAltNames are.
    if tls is None or not (tls.ca_crl and tls.insecure_skip_verify):
        return
    if tls.mode in ("SIMPLE", "MUTUAL"):
        issues.error(
            "cannot be set when insecureSkipVerify is true: an unverified server "
            "certificate cannot be checked for revocation",
            "caCrl",
        )


def _check_cookie_attributes(lb: LoadBalancerSettings | None, issues: Issues) -> None:
    cookie = lb.consistent_hash.http_cookie if lb and lb.consistent_hash else None
    for i, attribute in enumerate(cookie.attributes or [] if cookie is not None else []):
        at = issues.at("consistentHash", "httpCookie", "attributes", i)
        for field, value in (("name", attribute.name), ("value", attribute.value)):
            if value and any(c in value for c in "\x00\r\n"):
                at.error("must not contain NUL, CR or LF (Envoy refuses it)", field)
            elif value and len(value.encode()) > _COOKIE_ATTRIBUTE_BYTES:
                at.error(f"must be at most {_COOKIE_ATTRIBUTE_BYTES} bytes long", field)


KIND = KindInfo(
    kind="DestinationRule",
    group=NETWORKING,
    versions=("v1alpha3", "v1beta1", "v1"),
    plural="destinationrules",
    spec_model=DestinationRuleSpec,
    validate=validate,
)
