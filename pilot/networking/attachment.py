"""Istio's attachment rule for workload policies, written once.

PeerAuthentication, AuthorizationPolicy, RequestAuthentication and Telemetry
attach to a workload at three levels:

- mesh: in the root namespace, without a selector;
- namespace: in the workload's namespace, without a selector;
- workload: in the workload's namespace, with a selector its labels match;
  and, for the kinds that allow it, in the root namespace with a matching
  selector (AuthorizationPolicy and RequestAuthentication apply those to
  matching workloads in every namespace).

A resource that names a `targetRef` attaches to a Gateway, never to a
sidecar. Each level lists resources oldest first (the index's order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from api.resources import Resource
from api.security.authorization_policy import AuthorizationPolicySpec
from api.security.peer_authentication import PeerAuthenticationSpec
from api.security.request_authentication import RequestAuthenticationSpec
from api.telemetry.telemetry import TelemetrySpec
from pilot.config.index import ConfigIndex

__all__ = ["Attached", "attached"]

_Spec = PeerAuthenticationSpec | AuthorizationPolicySpec | RequestAuthenticationSpec | TelemetrySpec
# Kinds whose root-namespace resources with a selector reach workloads in every namespace.
_MESH_SELECTORS = frozenset({"AuthorizationPolicy", "RequestAuthentication"})


@dataclass(frozen=True, slots=True)
class Attached:
    mesh: list[Resource] = field(default_factory=list)
    namespace: list[Resource] = field(default_factory=list)
    workload: list[Resource] = field(default_factory=list)

    def all(self) -> list[Resource]:
        """Every level, the widest first."""
        return [*self.mesh, *self.namespace, *self.workload]


def _spec(r: Resource) -> _Spec:
    spec = r.spec
    assert isinstance(
        spec,
        PeerAuthenticationSpec
        | AuthorizationPolicySpec
        | RequestAuthenticationSpec
        | TelemetrySpec,
    ), f"{r.ref} is not a workload policy"
    return spec


def attached(
    config: ConfigIndex,
    kind: str,
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str,
) -> Attached:
    """The resources of `kind` that apply to a workload, by level."""
    out = Attached()
    for r in config.of(kind):
        spec = _spec(r)
        if not isinstance(spec, PeerAuthenticationSpec) and (spec.target_ref or spec.target_refs):
            continue
        selector = dict(spec.selector.match_labels or {}) if spec.selector is not None else {}
        matches = all(labels.get(k) == v for k, v in selector.items())
        if not selector:
            if r.namespace == namespace:
                out.namespace.append(r)
            elif r.namespace == root_namespace:
                out.mesh.append(r)
        elif matches and (
            r.namespace == namespace or (r.namespace == root_namespace and kind in _MESH_SELECTORS)
        ):
            out.workload.append(r)
    return out
