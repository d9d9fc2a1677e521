"""Plan before apply (pilot/plan.py): the candidate config, per-proxy diffs, grouping, and
the /debug/plan handler, with a fake Envoy check (the real one: test_envoy_check.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.catalog import Instance
from api.resources import Resource, check_text
from pilot.envoy_check import EnvoyChecker, Verdict
from pilot.model import MeshSnapshot, Proxy
from pilot.plan import (
    PlanError,
    Planner,
    Proposal,
    candidate_config,
    diff_configs,
    parse_proposal,
    plan,
)
from pilot.xds.cds import ClusterGenerator
from pilot.xds.ecds import ExtensionConfigGenerator
from pilot.xds.eds import EndpointGenerator
from pilot.xds.generator import Generator
from pilot.xds.lds import ListenerGenerator
from pilot.xds.rds import RouteGenerator
from tests.pilot.fixtures import instance

GENERATORS: dict[str, Generator] = {
    g.type_url: g
    for g in (
        ClusterGenerator(),
        EndpointGenerator(),
        ExtensionConfigGenerator(),
        ListenerGenerator(),
        RouteGenerator(),
    )
}
CATALOG = {
    "reviews": (instance("reviews", 1), instance("reviews", 2, version="v2")),
    "ratings": (instance("ratings", 3, namespace="backend"),),
}
SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""
SPLIT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
"""


def _resources(text: str) -> list[Resource]:
    checked = check_text(text, "test.yaml")
    assert all(c.ok for c in checked), [str(i) for c in checked for i in c.issues]
    return [c.resource for c in checked if c.resource is not None]


def _sidecar(n: int, service: str = "productpage", namespace: str = "default", **kw: Any) -> Proxy:
    return Proxy(
        id=f"{service}-{n}",
        service=service,
        namespace=namespace,
        labels={"version": "v1"},
        outbound_port=kw.get("outbound_port", 15001),
        inbound_port=15006,
        app_port=9080,
    )


def _plan(current: Sequence[Resource], proposal: Proposal, proxies: Sequence[Proxy]) -> Any:
    base = MeshSnapshot.build(1, CATALOG, current)
    candidate = MeshSnapshot.build(1, CATALOG, candidate_config(current, proposal))
    return plan(base, candidate, None, proxies, GENERATORS)


# --- the candidate config ---


def test_a_replaced_resource_keeps_its_age_and_a_new_one_is_the_newest() -> None:
    old = [replace(r, created=7, resource_version="9") for r in _resources(SUBSETS)]
    other = replace(_resources(SPLIT)[0], created=12)
    changed = replace(old[0], labels={"changed": "yes"})
    fresh = replace(_resources(SPLIT)[0], name="fresh")
    out = {r.name: r for r in candidate_config([*old, other], Proposal((changed, fresh)))}
    assert out["reviews"].created == 12 and out["reviews"].kind == "VirtualService"
    dr = next(r for r in candidate_config([*old, other], Proposal((changed,))) if r.created == 7)
    assert dr.labels == {"changed": "yes"} and dr.resource_version == "9"
    assert out["fresh"].created == 13  # newer than everything stored: conflicts go to the old


def test_a_deletion_removes_the_resource() -> None:
    current = _resources(SUBSETS + "---" + SPLIT)
    gone = candidate_config(current, Proposal(deletes=(current[1].key,)))
    assert [r.kind for r in gone] == ["DestinationRule"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ([], 400, "JSON object"),
        ({"resources": {}}, 400, "must be lists"),
        ({"resources": [], "extra": 1}, 400, "unknown field(s) in the body: extra"),
        ({"resources": [{"kind": "VirtualService"}]}, 422, "resources[0]"),
        ({"deletes": [{"kind": "VirtualService"}]}, 422, "deletes[0]: needs string fields"),
        ({"resources": [{}] * 1001}, 413, "more than 1000"),
    ],
)
def test_a_bad_proposal_is_refused_naming_what_is_wrong(body: Any, status: int, says: str) -> None:
    with pytest.raises(PlanError) as err:
        parse_proposal(body)
    assert err.value.status == status and says in err.value.message


def test_an_invalid_document_names_its_field() -> None:
    doc = _resources(SPLIT)[0].to_dict()
    doc["spec"]["http"][0]["route"][0]["weight"] = -1
    with pytest.raises(PlanError) as err:
        parse_proposal({"resources": [doc]})
    assert err.value.status == 422 and "spec.http[0].route[0].weight" in err.value.message


# --- diffs and groups ---


def test_diff_names_what_is_added_removed_and_changed() -> None:
    before = {"cds": {"a": {"x": 1}, "b": {"x": 1}}, "rds": {"r": {"x": 1}}}
    after = {"cds": {"a": {"x": 2}, "c": {"x": 1}}, "rds": {"r": {"x": 1}}}
    changes, text = diff_configs(before, after)
    assert changes == {"cds": {"added": ["c"], "removed": ["b"], "changed": ["a"]}}
    assert '-  "x": 1\n+  "x": 2' in text
    assert "+++ cds c (planned)" in text and "--- cds b (now)" in text


def test_proxies_with_the_same_change_are_one_group() -> None:
    proxies = [
        _sidecar(1),
        _sidecar(2),
        _sidecar(3, outbound_port=15002),  # another shape, the same change
        _sidecar(1, service="ratings", namespace="backend"),
    ]
    result = _plan(_resources(SUBSETS), Proposal(tuple(_resources(SPLIT))), proxies)
    assert (result.proxies, result.unchanged) == (4, 0)
    first, second = (g.to_dict() for g in result.groups)
    assert (first["count"], first["service"], first["kind"]) == (4 - 1, "productpage", "sidecar")
    assert first["proxies"] == ["productpage-1", "productpage-2", "productpage-3"]
    assert first["changes"] == {
        "rds": {"added": [], "removed": [], "changed": ["outbound|http|default"]}
    }
    assert '"weight": 90' in first["diff"] and "weightedClusters" in first["diff"]
    assert (second["count"], second["namespace"]) == (1, "backend")
    # Two shapes in the first group: two planned configs for Envoy to check.
    assert len(result.groups[0].planned) == 2


def test_a_change_no_proxy_sees_leaves_every_proxy_unchanged() -> None:
    current = _resources(SUBSETS + "---" + SPLIT)
    result = _plan(current, Proposal(tuple(current)), [_sidecar(1), _sidecar(2)])
    assert (result.groups, result.unchanged) == ([], 2)


def test_subsets_add_clusters_and_endpoints() -> None:
    result = _plan([], Proposal(tuple(_resources(SUBSETS))), [_sidecar(1)])
    (group,) = result.groups
    v2 = "outbound|9080|v2|reviews.default.svc.cluster.local"
    assert v2 in group.changes["cds"]["added"] and v2 in group.changes["eds"]["added"]


# --- the handler ---


@dataclass
class _Conn:
    proxy: Proxy


@dataclass
class _Ads:
    connections: dict[str, _Conn]
    context: Any = None
    generators: Mapping[str, Generator] = field(default_factory=lambda: GENERATORS)


@dataclass
class _Registry:
    def instances(self) -> Mapping[str, tuple[Instance, ...]]:
        return CATALOG


@dataclass
class _Config:
    items: list[Resource]

    def resources(self) -> Sequence[Resource]:
        return self.items


@dataclass
class _Pilot:
    snapshot: MeshSnapshot | None
    ads: _Ads
    registry: _Registry = field(default_factory=_Registry)
    config: _Config = field(default_factory=lambda: _Config(_resources(SUBSETS)))


class _FakeChecker(EnvoyChecker):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(envoy="unused")
        self.verdict = verdict
        self.calls = 0

    async def check(
        self, resources: Mapping[str, Sequence[Mapping[str, Any]]], sds_files: Sequence[str] = ()
    ) -> Verdict:
        self.calls += 1
        assert {"cds", "lds", "rds"} <= resources.keys()
        return self.verdict


async def _client(pilot: _Pilot, checker: EnvoyChecker) -> TestClient[Any, Any]:
    app = web.Application()
    app.router.add_post("/debug/plan", Planner(pilot, checker).handle)  # type: ignore[arg-type]
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def _pilot(snapshot: bool = True) -> _Pilot:
    conns = {f"c{i}": _Conn(_sidecar(i)) for i in (1, 2)}
    return _Pilot(MeshSnapshot.build(3, CATALOG) if snapshot else None, _Ads(conns))


def _body(text: str) -> str:
    return json.dumps({"resources": [r.to_dict() for r in _resources(text)]})


async def test_the_handler_plans_groups_and_checks_each_once() -> None:
    checker = _FakeChecker(Verdict(True, True))
    client = await _client(_pilot(), checker)
    try:
        resp = await client.post("/debug/plan", data=_body(SPLIT))
        body = await resp.json()
        assert resp.status == 200, body
        assert (body["snapshot"], body["proxies"], body["unchanged"]) == (3, 2, 0)
        (group,) = body["groups"]
        assert group["count"] == 2 and group["envoy"] == {
            "checked": True,
            "accepted": True,
            "error": "",
        }
        assert body["envoy"]["accepted"] and checker.calls == 1  # one shape, one check
        # Only one proxy; and nothing to plan: nothing for Envoy to check.
        resp = await client.post("/debug/plan?proxy=productpage-2", data=_body(SUBSETS))
        body = await resp.json()
        assert (body["proxies"], body["unchanged"], body["groups"]) == (1, 1, [])
        assert body["envoy"]["checked"] is False and checker.calls == 1
    finally:
        await client.close()


async def test_the_handler_reports_envoys_refusal_per_group() -> None:
    checker = _FakeChecker(Verdict(True, False, "missing ): (("))
    client = await _client(_pilot(), checker)
    try:
        body = await (await client.post("/debug/plan", data=_body(SPLIT))).json()
        assert body["envoy"] == {
            "checked": True,
            "accepted": False,
            "error": "2 sidecars of productpage (default): missing ): ((",
        }
        assert body["groups"][0]["envoy"]["error"] == "missing ): (("
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("query", "data", "status", "says"),
    [
        ("?proxy=nobody", _body(SPLIT), 404, "no connected proxy 'nobody'"),
        ("", "{not json", 400, "not JSON"),
        ("", b"\xff", 400, "not JSON"),
        ("", json.dumps({"resources": [{"apiVersion": "x"}]}), 422, "resources[0]"),
    ],
)
async def test_the_handler_answers_bad_requests_clearly(
    query: str, data: str | bytes, status: int, says: str
) -> None:
    client = await _client(_pilot(), _FakeChecker(Verdict(True, True)))
    try:
        resp = await client.post(f"/debug/plan{query}", data=data)
        assert resp.status == status
        assert says in (await resp.json())["error"]
    finally:
        await client.close()


async def test_the_handler_waits_for_the_first_snapshot() -> None:
    client = await _client(_pilot(snapshot=False), _FakeChecker(Verdict(True, True)))
    try:
        resp = await client.post("/debug/plan", data=_body(SPLIT))
        assert resp.status == 503 and "no snapshot yet" in (await resp.json())["error"]
    finally:
        await client.close()
