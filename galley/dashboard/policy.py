"""Which security policies select a workload, and the mTLS mode in force for it.

Istio's attachment rule, as Pilot applies it (pilot/networking/attachment.py, which
Galley cannot import): a policy without a selector applies mesh-wide from the root
namespace and namespace-wide from the workload's namespace; one with a selector applies
to the workloads of its namespace whose labels match, and for AuthorizationPolicy and
RequestAuthentication also to matching workloads of every namespace from the root
namespace. A policy with a `targetRef` attaches to a gateway, not to a workload.
PeerAuthentication's mode: the oldest workload policy's, else the namespace's, else
the mesh's (UNSET inherits); PERMISSIVE when none says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from api.resources import Resource
from api.security.peer_authentication import PeerAuthenticationSpec

__all__ = ["KINDS", "Attached", "MtlsMode", "attached", "mtls_mode"]

KINDS = ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication")
_MESH_SELECTORS = frozenset({"AuthorizationPolicy", "RequestAuthentication"})


@dataclass(frozen=True, slots=True)
class Attached:
    resource: Resource
    level: str  # mesh, namespace or workload


def _oldest_first(resources: Sequence[Resource]) -> list[Resource]:
    return sorted(resources, key=lambda r: (r.created, r.namespace, r.name))


def attached(
    resources: Sequence[Resource], namespace: str, labels: Mapping[str, str], root: str
) -> list[Attached]:
    """The security policies that apply to a workload, widest level first, oldest first."""
    levels: dict[str, list[Attached]] = {"mesh": [], "namespace": [], "workload": []}
    for r in _oldest_first(resources):
        if r.kind not in KINDS:
            continue
        spec = r.spec
        if getattr(spec, "target_ref", None) or getattr(spec, "target_refs", None):
            continue
        sel = getattr(spec, "selector", None)
        selector = dict(sel.match_labels or {}) if sel is not None else {}
        if not selector:
            if r.namespace == namespace:
                levels["namespace"].append(Attached(r, "namespace"))
            elif r.namespace == root:
                levels["mesh"].append(Attached(r, "mesh"))
        elif all(labels.get(k) == v for k, v in selector.items()) and (
            r.namespace == namespace or (r.namespace == root and r.kind in _MESH_SELECTORS)
        ):
            levels["workload"].append(Attached(r, "workload"))
    return [*levels["mesh"], *levels["namespace"], *levels["workload"]]


@dataclass(frozen=True, slots=True)
class MtlsMode:
    mode: str  # STRICT, PERMISSIVE or DISABLE
    source: str  # the PeerAuthentication that decided, or "default"
    ports: Mapping[str, str]  # port-level modes of the deciding workload policy


def mtls_mode(policies: Sequence[Attached]) -> MtlsMode:
    """The workload-wide mode in force: workload > namespace > mesh, UNSET inherits."""
    peer = [a for a in policies if a.resource.kind == "PeerAuthentication"]
    ports: dict[str, str] = {}
    for level in ("workload", "namespace", "mesh"):
        first = next((a.resource for a in peer if a.level == level), None)
        if first is None:
            continue
        spec = first.spec_as(PeerAuthenticationSpec)
        if level == "workload" and spec.port_level_mtls:
            ports = {p: m.mode for p, m in spec.port_level_mtls.items() if m.mode != "UNSET"}
        if spec.mtls is not None and spec.mtls.mode != "UNSET":
            return MtlsMode(spec.mtls.mode, first.ref, ports)
    return MtlsMode("PERMISSIVE", "default", ports)
