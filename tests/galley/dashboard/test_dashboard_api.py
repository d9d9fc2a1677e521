"""The dashboard's routes against a real Consul, with a fake sidecar, Pilot and Citadel:
every page and its JSON answer, and a proxy whose stats cannot be read is shown as
such, never an error."""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import consul
import pytest
from fastapi.testclient import TestClient

from galley.main import create_app
from galley.settings import GalleySettings
from meshctl.procs import free_port
from meshctl.registration import with_stats

TOKEN = "galley-token"
CITADEL = "citadel-admin"
TAGS = 'destination_service="reviews.default.svc.cluster.local",destination_version="v1"'


class Fake:
    """One HTTP server playing a sidecar's stats, Pilot's syncz and Citadel's listing."""

    def __init__(self) -> None:
        self.requests = 10
        self.identity = ""
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, ctype = fake.answer(self.path, self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, auth: str | None) -> tuple[int, bytes, str]:
        if path == "/stats/prometheus":
            text = (
                f"envoy_cluster_upstream_rq_total{{{TAGS}}} {self.requests}\n"
                f'envoy_cluster_upstream_rq_xx{{envoy_response_code_class="5",{TAGS}}} 0\n'
                + "x" * 200_000  # more than one read's worth: all of it must be read
                + "\n"
            )
            return 200, text.encode(), "text/plain"
        if path == "/debug/syncz":
            watch = {"version_sent": "2", "version_acked": "2"}
            proxy = {
                "proxy": "web-1",
                "service": "web",
                "namespace": "shop",
                "connected_seconds": 12.5,
                "nacks": 1,
                "last_nack": "lds: bad listener",
                "types": {"cds": watch, "lds": {**watch, "nack": "bad listener"}},
            }
            return 200, json.dumps({"proxies": [proxy]}).encode(), "application/json"
        if path == "/v1/certificates":
            if auth != f"Bearer {CITADEL}":
                return 401, b'{"error": "no"}', "application/json"
            cert = {
                "identity": self.identity,
                "serial": "ab",
                "notBefore": "2020-01-01T00:00:00+00:00",
                "notAfter": "2999-01-01T00:00:00+00:00",
            }
            return 200, json.dumps({"certificates": [cert]}).encode(), "application/json"
        return 404, b"", "text/plain"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[Fake]:
    f = Fake()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def ns() -> str:
    return f"d-{uuid.uuid4().hex[:8]}"


def _register(consul_addr: str, ns: str, service: str, stats_port: int) -> None:
    host, port = consul_addr.split(":")
    body = with_stats(
        {"Name": service, "ID": f"{service}-{ns}", "Meta": {"namespace": ns, "version": "v1"}},
        stats_port,
    )
    consul.Consul(host=host, port=int(port)).agent.service.register(
        body["Name"], service_id=body["ID"], address="127.0.0.1", port=9, meta=body["Meta"]
    )


@pytest.fixture
def client(consul_agent: str, fake: Fake, ns: str) -> Iterator[TestClient]:
    _register(consul_agent, ns, "web", fake.port)
    fake.identity = f"spiffe://cluster.local/ns/{ns}/sa/default"
    _register(consul_agent, ns, "db", free_port())  # nothing listens there
    settings = GalleySettings(
        consul_addr=consul_agent,
        token=TOKEN,  # type: ignore[arg-type]
        pilot_http_addr=f"127.0.0.1:{fake.port}",
        citadel_http_addr=f"127.0.0.1:{fake.port}",
        citadel_token=CITADEL,  # type: ignore[arg-type]
    )
    host, port = consul_agent.split(":")
    try:
        with TestClient(create_app(settings)) as c:
            c.app.state.dashboard.interval_s = 0  # type: ignore[attr-defined]
            yield c
    finally:
        agent = consul.Consul(host=host, port=int(port)).agent
        for service in ("web", "db"):
            agent.service.deregister(f"{service}-{ns}")


def test_graph_edges_from_the_stats_and_an_unreadable_proxy_shown(
    client: TestClient, fake: Fake, ns: str
) -> None:
    first = client.get("/v1/dashboard/graph")
    assert first.status_code == 200, first.text
    assert f"web.{ns}" in {n["id"] for n in first.json()["nodes"]}
    fake.requests = 70
    body = client.get("/v1/dashboard/graph").json()
    edges = [e for e in body["edges"] if e["source"] == f"web.{ns}"]
    assert len(edges) == 1 and edges[0]["destination"] == "reviews.default"
    assert edges[0]["destination_version"] == "v1" and edges[0]["share"] == 1.0
    assert edges[0]["rps"] > 0 and edges[0]["health"] == "green"
    targets = {t["instance"]: t for t in body["targets"]}
    assert targets[f"web-{ns}"]["ok"]
    assert not targets[f"db-{ns}"]["ok"] and targets[f"db-{ns}"]["error"]

    page = client.get("/ui/graph")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'data-id="web.{ns}"' in page.text and "stats not readable" in page.text
    assert page.text.startswith("<!doctype html>") and "/ui/static/dashboard.js" in page.text
    partial = client.get("/ui/graph?partial=1").text
    assert "<svg" in partial and "<html" not in partial


def test_proxies_show_the_nack_with_envoys_error(client: TestClient) -> None:
    body = client.get("/v1/dashboard/proxies").json()
    (proxy,) = body["proxies"]
    assert proxy["types"]["cds"]["state"] == "SYNCED"
    assert proxy["types"]["lds"] == {"state": "NACKED", "error": "bad listener"}
    assert proxy["types"]["eds"]["state"] == "NOT SENT"
    assert "lds: bad listener" in client.get("/ui/proxies").text


def test_config_and_security(client: TestClient, ns: str) -> None:
    strict = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": ns},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    r = client.post("/v1/apply", json=strict, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    config = client.get("/v1/dashboard/config").json()
    row = next(x for x in config["resources"] if x["ref"] == f"PeerAuthentication/{ns}/default")
    assert row["conditions"] and row["conditions"][0]["type"] == "Reconciled"
    assert f'data-ref="PeerAuthentication/{ns}/default"' in client.get("/ui/config").text

    security = client.get("/v1/dashboard/security").json()
    web = next(w for w in security["workloads"] if w["instance"] == f"web-{ns}")
    assert web["identity"] == f"spiffe://cluster.local/ns/{ns}/sa/default"
    assert web["mtls"] == {
        "mode": "STRICT",
        "source": f"PeerAuthentication/{ns}/default",
        "ports": {},
    }
    assert web["policies"] == [
        {"kind": "PeerAuthentication", "namespace": ns, "name": "default", "level": "namespace"}
    ]
    assert web["certificate"]["serial"] == "ab" and web["certificate"]["expiresInSeconds"] > 0
    db = next(w for w in security["workloads"] if w["instance"] == f"db-{ns}")
    assert db["certificate"]["serial"] == "ab"  # the same identity (service account)
    assert security["error"] == ""
    assert "STRICT" in client.get("/ui/security").text


def test_assets_and_unknown_pages(client: TestClient) -> None:
    js = client.get("/ui/static/dashboard.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/static/../main.py").status_code == 404
    assert client.get("/ui/static/other.js").status_code == 404
    assert client.get("/ui/nope").json()["error"]["reason"] == "NotFound"
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/graph"


def test_a_namespace_narrows_every_view(client: TestClient, fake: Fake, ns: str) -> None:
    client.get("/v1/dashboard/graph")
    fake.requests = 99
    graph = client.get(f"/v1/dashboard/graph?namespace={ns}").json()
    assert {n["id"] for n in graph["nodes"]} == {f"web.{ns}", f"db.{ns}", "reviews.default"}
    assert client.get("/v1/dashboard/proxies?namespace=other").json()["proxies"] == []
    security = client.get(f"/v1/dashboard/security?namespace={ns}").json()
    assert {w["namespace"] for w in security["workloads"]} == {ns}
    for bad in ("Bad_NS", "a" * 70, "x\n"):
        r = client.get("/v1/dashboard/config", params={"namespace": bad})
        assert r.status_code == 400 and r.json()["error"]["reason"] == "BadRequest", bad
    page = client.get(f"/ui/graph?namespace={ns}").text
    assert f'href="/ui/proxies?namespace={ns}"' in page and f"partial=1&amp;namespace={ns}" in page


def test_off_loopback_a_browser_logs_in_once_for_a_cookie(consul_agent: str) -> None:
    settings = GalleySettings(consul_addr=consul_agent, token=TOKEN)  # type: ignore[arg-type]
    with TestClient(create_app(settings), client=("10.1.2.3", 5000)) as remote:
        assert remote.get("/v1/dashboard/proxies").status_code == 401
        page = remote.get("/ui/graph", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/ui/login"
        assert remote.get("/ui/graph?partial=1").status_code == 401
        assert remote.get("/ui/static/dashboard.css").status_code == 200  # no secret there
        wrong = remote.post("/ui/login", data={"token": "nope"}, follow_redirects=False)
        assert wrong.headers["location"] == "/ui/login?failed=true" and not remote.cookies
        ok = remote.post("/ui/login", data={"token": TOKEN}, follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == "/ui/graph"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
        assert remote.get("/ui/proxies").status_code == 200
        assert remote.get("/v1/dashboard/proxies").status_code == 200
        # The cookie reads; it never writes.
        strict = {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "x", "namespace": "default"},
            "spec": {},
        }
        assert remote.post("/v1/apply", json=strict).status_code == 401
        big = remote.post("/ui/login", content=b"token=" + b"x" * 5000, follow_redirects=False)
        assert big.headers["location"] == "/ui/login?failed=true"
        assert remote.get("/ui/login?failed=true").status_code == 401
