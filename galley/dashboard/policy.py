"""The security policies the dashboard shows for a workload, and its mTLS mode, by the
attachment rule Pilot translates with (api/attachment.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from api import attachment
from api.resources import Resource
from api.security.peer_authentication import PeerAuthenticationSpec

__all__ = ["KINDS", "Attached", "MtlsMode", "attached", "mtls_mode"]

KINDS = ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication")


@dataclass(frozen=True, slots=True)
class Attached:
    resource: Resource
    level: str  # mesh, namespace or workload


def attached(
    resources: Sequence[Resource], namespace: str, labels: Mapping[str, str], root: str
) -> list[Attached]:
    """The security policies that apply to a workload, widest level first, oldest first."""
    oldest_first = sorted(resources, key=lambda r: (r.created, r.namespace, r.name))
    found = {
        kind: attachment.attached(
            [r for r in oldest_first if r.kind == kind], kind, namespace, labels, root
        )
        for kind in KINDS
    }
    return [
        Attached(r, level)
        for level in ("mesh", "namespace", "workload")
        for kind in KINDS
        for r in getattr(found[kind], level)
    ]


@dataclass(frozen=True, slots=True)
class MtlsMode:
    mode: str  # STRICT, PERMISSIVE or DISABLE
    source: str  # the PeerAuthentication that decided, or "default"
    ports: Mapping[str, str]  # port-level modes of the deciding workload policy


def mtls_mode(policies: Sequence[Attached]) -> MtlsMode:
    """The workload-wide mode in force: workload > namespace > mesh, UNSET inherits."""
    found = attachment.Attached()
    for a in policies:
        if a.resource.kind == "PeerAuthentication":
            getattr(found, a.level).append(a.resource)
    mode, source = attachment.peer_mode(found)
    ports: dict[str, str] = {}
    if found.workload:
        spec = found.workload[0].spec_as(PeerAuthenticationSpec)
        ports = {p: m.mode for p, m in (spec.port_level_mtls or {}).items() if m.mode != "UNSET"}
    return MtlsMode(mode, source.ref if source is not None else "default", ports)
