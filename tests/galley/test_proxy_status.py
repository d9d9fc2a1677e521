"""Galley's Reconciled condition: every Pilot asked, answers merged, one down (fake Pilots)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient

from galley.main import create_app
from galley.proxy_status import PilotAnswer, merge, statuses
from galley.settings import GalleySettings
from meshctl.procs import free_port

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REF = "VirtualService/default/reviews"


class FakePilot:
    """Serves /debug/config_status from a dict (ref -> entry), as a Pilot replica does."""

    def __init__(self, resources: dict[str, dict[str, Any]]) -> None:
        self.resources = resources
        self.asked: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                fake.asked.append(self.path)
                one = parse_qs(url.query).get("resource")
                found = fake.resources
                if one:
                    found = {one[0]: fake.resources[one[0]]} if one[0] in fake.resources else {}
                code = 404 if one and not found else 200
                body = json.dumps({"snapshot": 9, "resources": found}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def pilots() -> Iterator[list[FakePilot]]:
    made = [FakePilot({}), FakePilot({})]
    try:
        yield made
    finally:
        for p in made:
            p.close()


def entry(revision: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "revision": revision,
        "snapshot": 3,
        "affected": 0,
        "acked": [],
        "nacked": [],
        "pending": [],
        "unknown": [],
    }
    return base | kw


def answer(addr: str, revision: int, **kw: Any) -> PilotAnswer:
    return PilotAnswer(addr, {REF: entry(revision, **kw)})


def test_every_affected_proxy_acked_across_replicas_is_reconciled() -> None:
    got = merge(
        REF,
        7,
        [
            answer("p1:1", 7, affected=2, acked=["a", "b"]),
            answer("p2:1", 7, affected=1, acked=["c"]),
        ],
    )
    (cond,) = got["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Reconciled", "True", "Reconciled")
    assert got["distribution"]["acked"] == ["a", "b", "c"]
    assert got["distribution"]["affected"] == 3


def test_a_nack_is_false_and_names_the_proxy_the_type_and_envoys_error() -> None:
    refusal = {"proxy": "gw", "type": "lds", "error": "cannot bind '127.0.0.1:80'"}
    got = merge(
        REF,
        7,
        [answer("p1:1", 7, affected=2, acked=["a"], nacked=[refusal]), answer("p2:1", 7)],
    )
    (cond,) = got["conditions"]
    assert (cond["status"], cond["reason"]) == ("False", "Nacked")
    assert "gw (lds): cannot bind '127.0.0.1:80'" in cond["message"]
    assert got["distribution"]["nacked"] == [refusal]


def test_a_pilot_behind_the_stored_revision_is_pending() -> None:
    got = merge(REF, 8, [answer("p1:1", 8, affected=1, acked=["a"]), answer("p2:1", 7)])
    (cond,) = got["conditions"]
    assert (cond["status"], cond["reason"]) == ("False", "Pending")
    assert "p2:1" in cond["message"] and got["distribution"]["pilots"]["behind"] == ["p2:1"]
    missing = merge(REF, 8, [PilotAnswer("p1:1", {})])  # it does not hold the resource yet
    assert missing["conditions"][0]["reason"] == "Pending"


def test_proxies_yet_to_answer_are_pending() -> None:
    got = merge(REF, 7, [answer("p1:1", 7, affected=2, acked=["a"], pending=["b"])])
    (cond,) = got["conditions"]
    assert (cond["status"], cond["reason"]) == ("False", "Pending") and "b" in cond["message"]


def test_no_pilot_answering_is_unknown_never_an_error() -> None:
    got = merge(REF, 7, [PilotAnswer("p1:1", None, "connection refused")])
    (cond,) = got["conditions"]
    assert (cond["status"], cond["reason"]) == ("Unknown", "PilotUnavailable")
    assert "p1:1 (connection refused)" in cond["message"]


def test_changes_beyond_pilots_window_count_who_answered() -> None:
    got = merge(REF, 7, [answer("p1:1", 7, affected=None, acked=["a"], unknown=["b"])])
    (cond,) = got["conditions"]
    assert cond["status"] == "True" and "1 more" in cond["message"]
    assert got["distribution"]["affected"] == 2


async def test_every_replica_is_asked_and_one_down_does_not_hide_the_others(
    pilots: list[FakePilot],
) -> None:
    pilots[0].resources[REF] = entry(7, affected=1, acked=["a"])
    pilots[1].resources[REF] = entry(7, affected=1, pending=["b"])
    down = f"127.0.0.1:{free_port()}"
    addrs = ",".join([pilots[0].addr, down, pilots[1].addr])
    got = (await statuses(addrs, {REF: 7}))[REF]
    cond = got["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "Pending")
    assert down in cond["message"]
    assert got["distribution"]["pilots"] == {"asked": 3, "answered": 2, "behind": []}
    (asked,) = pilots[0].asked
    assert parse_qs(urlparse(asked).query) == {"resource": [REF]}, "one resource: ask for it"


@pytest.fixture
def client(consul_agent: str, pilots: list[FakePilot]) -> Iterator[TestClient]:
    addrs = f"{pilots[0].addr},{pilots[1].addr}"
    settings = GalleySettings(consul_addr=consul_agent, token=TOKEN, pilot_http_addr=addrs)
    with TestClient(create_app(settings)) as c:
        yield c


def test_get_and_list_serve_the_condition_beside_gateway_api_status(
    client: TestClient, pilots: list[FakePilot]
) -> None:
    name = f"gc-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": "istio.io/gateway-controller"},
    }
    base = "/apis/gateway.networking.k8s.io/v1/gatewayclasses"
    r = client.post(base, json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    ref = f"GatewayClass.gateway.networking.k8s.io/{name}"
    revision = int(r.json()["metadata"]["resourceVersion"])
    pilots[0].resources[ref] = entry(revision, affected=1, acked=["gw-1"])
    try:
        got = client.get(f"{base}/{name}").json()
        conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
        assert conditions == {"Accepted": "True", "Reconciled": "False"}
        pilots[1].resources[ref] = entry(revision, affected=1, acked=["gw-2"])
        listed = client.get(base).json()
        item = next(i for i in listed["items"] if i["metadata"]["name"] == name)
        conditions = {c["type"]: c["status"] for c in item["status"]["conditions"]}
        assert conditions == {"Accepted": "True", "Reconciled": "True"}
        assert item["status"]["distribution"]["acked"] == ["gw-1", "gw-2"]
        pilots[0].close()
        pilots[1].close()
        down = client.get(f"{base}/{name}")
        assert down.status_code == 200
        cond = down.json()["status"]["conditions"][-1]
        assert (cond["type"], cond["status"]) == ("Reconciled", "Unknown")
    finally:
        client.delete(f"{base}/{name}", headers=AUTH)
