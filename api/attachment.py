"""Istio's attachment rule for workload policies, written once (Pilot translates with it,
Galley's dashboard shows it).

PeerAuthentication, AuthorizationPolicy, RequestAuthentication and Telemetry
attach to a workload at three levels:

- mesh: in the root namespace, without a selector;
- namespace: in the workload's namespace, without a selector;
- workload: in the workload's namespace, with a selector its labels match;
  and, for the kinds that allow it, in the root namespace with a matching
  selector (AuthorizationPolicy and RequestAuthentication apply those to
  matching workloads in every namespace).

A resource that names a `targetRef` attaches to a Gateway, never to a
sidecar. Each level keeps the order it is given (callers give oldest first:
the oldest policy of a level is the one in force where only one can be).
PeerAuthentication's mode for a port: the workload level's, then the
namespace's, then the mesh's, UNSET inheriting from the level above;
PERMISSIVE when none says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from api.resources import Resource
from api.security.authorization_policy import AuthorizationPolicySpec
from api.security.peer_authentication import PeerAuthenticationSpec
from api.security.request_authentication import RequestAuthenticationSpec
from api.telemetry.telemetry import TelemetrySpec

__all__ = ["Attached", "attached", "peer_mode"]

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
    resources: Iterable[Resource],
    kind: str,
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str,
) -> Attached:
    """Which of `resources` (all of `kind`, oldest first) apply to a workload, by level."""
    out = Attached()
    for r in resources:
        spec = _spec(r)
        if not isinstance(spec, PeerAuthenticationSpec) and (spec.target_ref or spec.target_refs):
            continue
        selector = dict(spec.selector.match_labels or {}) if spec.selector is not None else {}
        if not selector:
            if r.namespace == namespace:
                out.namespace.append(r)
            elif r.namespace == root_namespace:
                out.mesh.append(r)
        elif all(labels.get(k) == v for k, v in selector.items()) and (
            r.namespace == namespace or (r.namespace == root_namespace and kind in _MESH_SELECTORS)
        ):
            out.workload.append(r)
    return out


def _mode(spec: PeerAuthenticationSpec, port: int | None) -> str:
    if port is not None and spec.port_level_mtls:
        level = spec.port_level_mtls.get(str(port))
        if level is not None and level.mode != "UNSET":
            return level.mode
    if spec.mtls is not None and spec.mtls.mode != "UNSET":
        return spec.mtls.mode
    return "UNSET"


def peer_mode(found: Attached, port: int | None = None) -> tuple[str, Resource | None]:
    """(STRICT, PERMISSIVE or DISABLE, the PeerAuthentication that decided it) for a
    workload port (None: the workload-wide mode), from its attached PeerAuthentications."""
    for level in (found.workload, found.namespace, found.mesh):
        if level and (mode := _mode(level[0].spec_as(PeerAuthenticationSpec), port)) != "UNSET":
            return mode, level[0]
    return "PERMISSIVE", None
