"""Galley's side of plan before apply (galley/pilots.py, galley/routers/plan.py) against a
real Consul, with stand-in Pilots answering /debug/plan: merging replicas, apply refused
by Envoy's check, apply going on (with a warning) when no Pilot answers."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from galley.main import create_app
from galley.settings import GalleySettings
from meshctl.procs import free_port

TOKEN = "plan-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/yaml"}
ACCEPTED = {"checked": True, "accepted": True, "error": ""}


def _group(ids: list[str], envoy: dict[str, Any] = ACCEPTED) -> dict[str, Any]:
    return {
        "key": "k1",
        "kind": "sidecar",
        "service": "client",
        "namespace": "default",
        "count": len(ids),
        "proxies": ids,
        "changes": {"rds": {"added": [], "removed": [], "changed": ["outbound|http|default"]}},
        "diff": "--- rds a (now)\n+++ rds a (planned)\n",
        "envoy": envoy,
    }


class _Pilot:
    """A stand-in Pilot: answers /debug/plan with `answer` and keeps what it was sent."""

    def __init__(self, answer: dict[str, Any], status: int = 200) -> None:
        self.answer, self.status, self.bodies = answer, status, []  # type: list[Any]
        pilot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                pilot.bodies.append((self.path, json.loads(self.rfile.read(length))))
                data = json.dumps(pilot.answer).encode()
                self.send_response(pilot.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _answer(groups: list[dict[str, Any]], envoy: dict[str, Any] = ACCEPTED) -> dict[str, Any]:
    n = sum(g["count"] for g in groups)
    return {"snapshot": 1, "proxies": n + 1, "unchanged": 1, "groups": groups, "warnings": [],
            "envoy": envoy}  # fmt: skip


@pytest.fixture
def pilots() -> Iterator[list[_Pilot]]:
    started: list[_Pilot] = []
    yield started
    for p in started:
        p.stop()


def _galley(consul_agent: str, *pilots: _Pilot | str) -> TestClient:
    addrs = ",".join(p if isinstance(p, str) else p.addr for p in pilots)
    return TestClient(
        create_app(GalleySettings(consul_addr=consul_agent, token=TOKEN, pilot_http_addr=addrs))
    )


def _vs(ns: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: {ns}}}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews}}
"""


def _ns() -> str:
    return f"p-{uuid.uuid4().hex[:8]}"


def test_plan_merges_every_pilots_groups(consul_agent: str, pilots: list[_Pilot]) -> None:
    pilots += [_Pilot(_answer([_group(["c-1", "c-2"])])), _Pilot(_answer([_group(["c-3"])]))]
    down = f"127.0.0.1:{free_port()}"
    ns = _ns()
    with _galley(consul_agent, *pilots, down) as c:
        resp = c.post(f"/v1/plan?namespace={ns}", content=_vs(ns), headers=AUTH)
        body = resp.json()
        assert resp.status_code == 200, body
        (group,) = body["groups"]
        assert (group["count"], group["proxies"]) == (3, ["c-1", "c-2", "c-3"])
        assert (body["proxies"], body["unchanged"]) == (5, 2)
        assert body["pilots"]["answered"] == [p.addr for p in pilots]
        assert body["pilots"]["unreachable"][0].startswith(down)
        assert body["envoy"] == ACCEPTED
        assert body["resources"] == [f"VirtualService/{ns}/reviews"]
        assert any(f"Pilot {down}" in w["message"] for w in body["warnings"])
        # What Pilot is sent: the validated, canonical documents.
        path, sent = pilots[0].bodies[0]
        assert path == "/debug/plan"
        assert sent["resources"][0]["metadata"] == {"name": "reviews", "namespace": ns}
        # Nothing stored.
        vs = f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices/reviews"
        assert c.get(vs).status_code == 404


def test_plan_refuses_bad_input_before_asking_pilot(
    consul_agent: str, pilots: list[_Pilot]
) -> None:
    pilots.append(_Pilot(_answer([])))
    with _galley(consul_agent, *pilots) as c:
        bad = c.post("/v1/plan", content="kind: [", headers=AUTH)
        assert bad.status_code == 400 and "body" in bad.json()["error"]["message"]
        invalid = c.post("/v1/plan", content=_vs("default").replace("hosts", "hostz"), headers=AUTH)
        assert invalid.status_code == 422
        assert invalid.json()["error"]["details"][0]["path"] == "spec.hostz"
        assert pilots[0].bodies == []


def test_plan_for_a_proxy_no_pilot_serves_is_404(consul_agent: str, pilots: list[_Pilot]) -> None:
    pilots.append(_Pilot({"error": "no connected proxy 'x'"}, status=404))
    with _galley(consul_agent, *pilots) as c:
        resp = c.post("/v1/plan?proxy=x", content=_vs("default"), headers=AUTH)
        assert resp.status_code == 404
        assert resp.json()["error"]["message"] == "no Pilot serves a proxy 'x'"
        assert pilots[0].bodies[0][0] == "/debug/plan?proxy=x"


def test_apply_refused_by_envoy_stores_nothing(consul_agent: str, pilots: list[_Pilot]) -> None:
    refusal = {"checked": True, "accepted": False, "error": "missing ): (("}
    pilots.append(_Pilot(_answer([_group(["c-1", "c-2"], refusal)], refusal)))
    ns = _ns()
    with _galley(consul_agent, *pilots) as c:
        resp = c.post(f"/v1/apply?namespace={ns}", content=_vs(ns), headers=AUTH)
        error = resp.json()["error"]
        assert resp.status_code == 422, error
        assert error["message"] == (
            "Envoy refuses the config 2 sidecars of client (default) would get: "
            "missing ): ((; nothing was stored"
        )
        assert error["details"][0]["document"] == "2 sidecars of client (default) (e.g. c-1, c-2)"
        vs = f"/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices"
        assert c.get(f"{vs}/reviews").status_code == 404
        # The single-resource create is checked too.
        one = c.post(vs, content=_vs(ns), headers=AUTH)
        assert one.status_code == 422 and "missing ): ((" in one.json()["error"]["message"]
        assert c.get(f"{vs}/reviews").status_code == 404


def test_apply_goes_on_unchecked_when_no_pilot_answers(consul_agent: str) -> None:
    ns = _ns()
    with _galley(consul_agent, f"127.0.0.1:{free_port()}") as c:
        resp = c.post(f"/v1/apply?namespace={ns}", content=_vs(ns), headers=AUTH)
        body = resp.json()
        assert resp.status_code == 200, body
        assert body["results"][0]["action"] == "created"
        notes = [w["message"] for w in body["warnings"] if w["document"] == "envoy-check"]
        assert len(notes) == 1 and notes[0].startswith("not checked by Envoy: no Pilot reachable")
        # Applied again unchanged: nothing to write, nothing to check, no warning.
        again = c.post(f"/v1/apply?namespace={ns}", content=_vs(ns), headers=AUTH).json()
        assert again["results"][0]["action"] == "unchanged"
        assert not [w for w in again["warnings"] if w["document"] == "envoy-check"]
