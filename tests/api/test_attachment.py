"""Istio's attachment rule, shared by the four workload-policy kinds."""

from __future__ import annotations

import pytest

from api.attachment import attached
from api.resources import check_text
from pilot.config.index import ConfigIndex

GROUPS = {
    "PeerAuthentication": "security.istio.io/v1",
    "AuthorizationPolicy": "security.istio.io/v1",
    "RequestAuthentication": "security.istio.io/v1",
    "Telemetry": "telemetry.istio.io/v1",
}


def doc(kind: str, name: str, namespace: str, spec: str) -> str:
    meta = f"{{name: {name}, namespace: {namespace}}}"
    return f"apiVersion: {GROUPS[kind]}\nkind: {kind}\nmetadata: {meta}\nspec: {spec}\n---\n"


def index(kind: str) -> ConfigIndex:
    text = (
        doc(kind, "mesh", "istio-system", "{}")
        + doc(kind, "mesh-selected", "istio-system", "{selector: {matchLabels: {app: api}}}")
        + doc(kind, "ns", "shop", "{}")
        + doc(kind, "wl", "shop", "{selector: {matchLabels: {app: api}}}")
        + doc(kind, "other-wl", "shop", "{selector: {matchLabels: {app: web}}}")
        + doc(kind, "elsewhere", "other", "{}")
    )
    checked = check_text(text, "t.yaml")
    assert all(c.ok for c in checked), [str(i) for c in checked for i in c.errors]
    return ConfigIndex.build([c.resource for c in checked if c.resource is not None])


@pytest.mark.parametrize("kind", list(GROUPS))
def test_levels(kind: str) -> None:
    found = attached(index(kind).of(kind), kind, "shop", {"app": "api"}, "istio-system")
    assert [r.name for r in found.mesh] == ["mesh"]
    assert [r.name for r in found.namespace] == ["ns"]
    # A root-namespace selector reaches every namespace only for the authz and authn kinds.
    crosses = kind in ("AuthorizationPolicy", "RequestAuthentication")
    assert sorted(r.name for r in found.workload) == (
        ["mesh-selected", "wl"] if crosses else ["wl"]
    )


def test_a_workload_in_the_root_namespace_sees_root_policies_once() -> None:
    found = attached(
        index("Telemetry").of("Telemetry"), "Telemetry", "istio-system", {}, "istio-system"
    )
    assert [r.name for r in found.all()] == ["mesh"]
    assert found.mesh == [] and [r.name for r in found.namespace] == ["mesh"]
