"""Config history and rollback through Galley's REST API, against a real Consul."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import consul
import pytest
from fastapi.testclient import TestClient

from api.history import history_key, history_prefix
from api.resources import check_document
from api.store import Write, key_for
from galley.main import create_app
from galley.settings import GalleySettings

ALICE, BOB, BARE = "alice-token-1", "bob-token-2", "bare-token-3"
AS_ALICE = {"Authorization": f"Bearer {ALICE}"}
AS_BOB = {"Authorization": f"Bearer {BOB}"}
AS_ADMIN = {"Authorization": f"Bearer {BARE}"}
VS = "/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices"
GC = "/apis/gateway.networking.k8s.io/v1/gatewayclasses"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# writers\nalice:{ALICE}\n\nbob:{BOB}\n{BARE}\n")
    return path


def _client(consul_addr: str, token_file: Path, **overrides: Any) -> TestClient:
    settings = GalleySettings(consul_addr=consul_addr, token_file=str(token_file), **overrides)
    return TestClient(create_app(settings))


@pytest.fixture
def client(consul_agent: str, token_file: Path) -> Iterator[TestClient]:
    with _client(consul_agent, token_file) as c:
        yield c


@pytest.fixture
def ns() -> str:
    return f"h-{uuid.uuid4().hex[:8]}"


def vs(subset: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews", **meta},
        "spec": {
            "hosts": ["reviews"],
            "http": [{"route": [{"destination": {"host": "reviews", "subset": subset}}]}],
        },
    }


def _subset(doc: dict[str, Any]) -> str:
    return str(doc["spec"]["http"][0]["route"][0]["destination"]["subset"])


def history(client: TestClient, ns: str, name: str = "reviews") -> list[dict[str, Any]]:
    r = client.get(f"/v1/history/VirtualService/{ns}/{name}")
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def rollback(client: TestClient, ns: str, body: Any = None, **kw: Any) -> Any:
    return client.post(
        f"/v1/rollback/VirtualService/{ns}/reviews", json=body, headers=kw.get("h", AS_BOB)
    )


def _put(client: TestClient, ns: str, subset: str, headers: dict[str, str]) -> str:
    current = client.get(f"{VS.format(ns=ns)}/reviews").json()["metadata"]["resourceVersion"]
    body = vs(subset, resourceVersion=current)
    r = client.put(f"{VS.format(ns=ns)}/reviews", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return str(r.json()["metadata"]["resourceVersion"])


def test_every_write_is_recorded_with_who_and_when(client: TestClient, ns: str) -> None:
    r = client.post(VS.format(ns=ns), json=vs("v1"), headers=AS_ALICE)
    assert r.status_code == 201, r.text
    created = r.json()["metadata"]["resourceVersion"]
    updated = _put(client, ns, "v2", AS_BOB)
    applied = client.post(
        f"/v1/apply?namespace={ns}",
        content=json.dumps(vs("v3")),
        headers={**AS_ADMIN, "Content-Type": "application/json"},
    )
    assert applied.status_code == 200, applied.text
    assert client.delete(f"{VS.format(ns=ns)}/reviews", headers=AS_ALICE).status_code == 200

    items = history(client, ns)
    assert [(i["revision"], i["operation"], i["by"]) for i in items] == [
        (4, "delete", "alice"),
        (3, "update", "admin"),
        (2, "update", "bob"),
        (1, "create", "alice"),
    ]
    # Each entry is the resource as stored, and carries the version its write produced.
    assert items[3]["resourceVersion"] == created and items[3]["replaced"] == "0"
    assert items[2]["resourceVersion"] == updated and items[2]["replaced"] == created
    assert [_subset(i["resource"]) for i in items[1:]] == ["v3", "v2", "v1"]
    assert items[0]["resource"] is None and items[0]["replaced"] == items[1]["resourceVersion"]
    assert items[0]["current"] and not any(i["current"] for i in items[1:])
    assert all(i["at"].endswith("Z") and i["at"][:2] == "20" for i in items)
    # No token is ever stored, only names.
    kv = consul.Consul(*_host_port(client)).kv.get(
        history_prefix("VirtualService", ns, "reviews"), recurse=True
    )[1]
    assert not any(t.encode() in item["Value"] for item in kv for t in (ALICE, BOB, BARE))


def _host_port(client: TestClient) -> tuple[str, int]:
    host, _, port = client.app.state.settings.consul_addr.rpartition(":")  # type: ignore[attr-defined]
    return host, int(port)


def test_history_is_bounded(consul_agent: str, token_file: Path, ns: str) -> None:
    with _client(consul_agent, token_file, history_size=3) as c:
        assert c.post(VS.format(ns=ns), json=vs("v0"), headers=AS_BOB).status_code == 201
        for i in range(1, 6):
            _put(c, ns, f"v{i}", AS_BOB)
        items = history(c, ns)
        assert [i["revision"] for i in items] == [6, 5, 4]
        assert [_subset(i["resource"]) for i in items] == ["v5", "v4", "v3"]
        keys = consul.Consul(*_host_port(c)).kv.get(
            history_prefix("VirtualService", ns, "reviews"), keys=True
        )[1]
        assert len(keys) == 3
        # A pruned revision is gone: 404 naming the kept ones.
        r = rollback(c, ns, {"to": 2})
        assert r.status_code == 404 and "the kept ones: 4, 5, 6" in r.json()["error"]["message"]


def test_rollback_default_and_to(client: TestClient, ns: str) -> None:
    assert client.post(VS.format(ns=ns), json=vs("v1"), headers=AS_ALICE).status_code == 201
    _put(client, ns, "v2", AS_ALICE)
    _put(client, ns, "v3", AS_ALICE)

    r = rollback(client, ns)  # the one before the current: revision 2
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["action"] == "rolled back" and body["to"] == 2 and body["revision"] == 4
    stored = client.get(f"{VS.format(ns=ns)}/reviews").json()
    assert (
        _subset(stored) == "v2" and stored["metadata"]["resourceVersion"] == body["resourceVersion"]
    )
    newest = history(client, ns)[0]
    assert (newest["revision"], newest["operation"], newest["by"]) == (4, "rollback", "bob")
    assert newest["current"] and newest["resourceVersion"] == body["resourceVersion"]

    # Again: the version before the current one is now revision 3 (as `rollout undo`).
    assert rollback(client, ns).json()["to"] == 3
    assert _subset(client.get(f"{VS.format(ns=ns)}/reviews").json()) == "v3"

    r = rollback(client, ns, {"to": 1})
    assert r.status_code == 200 and r.json()["to"] == 1
    assert _subset(client.get(f"{VS.format(ns=ns)}/reviews").json()) == "v1"
    # To what is stored already: nothing written.
    r = rollback(client, ns, {"to": 1})
    assert r.status_code == 200 and r.json()["action"] == "unchanged"
    assert history(client, ns)[0]["revision"] == 6


def test_rollback_to_a_delete_deletes_and_back_recreates(client: TestClient, ns: str) -> None:
    assert client.post(VS.format(ns=ns), json=vs("v1"), headers=AS_ALICE).status_code == 201
    assert client.delete(f"{VS.format(ns=ns)}/reviews", headers=AS_ALICE).status_code == 200
    r = rollback(client, ns)  # back to revision 1: re-created
    assert r.status_code == 200 and r.json()["to"] == 1, r.text
    assert _subset(client.get(f"{VS.format(ns=ns)}/reviews").json()) == "v1"
    r = rollback(client, ns, {"to": 2})  # revision 2 was the delete
    assert r.status_code == 200 and r.json()["action"] == "deleted", r.text
    assert client.get(f"{VS.format(ns=ns)}/reviews").status_code == 404
    assert [i["operation"] for i in history(client, ns)] == [
        "rollback",
        "rollback",
        "delete",
        "create",
    ]


def test_rollback_is_compare_and_set(client: TestClient, ns: str) -> None:
    assert client.post(VS.format(ns=ns), json=vs("v1"), headers=AS_ALICE).status_code == 201
    rv = _put(client, ns, "v2", AS_ALICE)

    # A version read earlier is stale now: 409, nothing stored.
    _put(client, ns, "v3", AS_ALICE)
    r = rollback(client, ns, {"resourceVersion": rv})
    assert r.status_code == 409 and r.json()["error"]["reason"] == "Conflict"
    assert _subset(client.get(f"{VS.format(ns=ns)}/reviews").json()) == "v3"

    # Someone writes between the rollback's read and its write: the CAS loses.
    store = client.app.state.store  # type: ignore[attr-defined]
    read_history = store.history

    async def racing(*args: Any) -> Any:
        found = await read_history(*args)
        current = await store.get("VirtualService", ns, "reviews")
        other = check_document(vs("v9"), "racer", ns).resource
        await store.write([Write(other, current.version)], by="racer")
        return found

    store.history = racing
    try:
        r = rollback(client, ns)
    finally:
        del store.history
    assert r.status_code == 409, r.text
    assert "changed meanwhile" in r.json()["error"]["message"]
    assert _subset(client.get(f"{VS.format(ns=ns)}/reviews").json()) == "v9"
    assert [(i["operation"], i["by"]) for i in history(client, ns)[:2]] == [
        ("update", "racer"),
        ("update", "alice"),
    ]


def test_a_revision_that_no_longer_validates_is_refused(client: TestClient, ns: str) -> None:
    assert client.post(VS.format(ns=ns), json=vs("v1"), headers=AS_ALICE).status_code == 201
    _put(client, ns, "v2", AS_ALICE)
    # Revision 1 as older, looser rules would have taken it.
    kv = consul.Consul(*_host_port(client)).kv
    key = history_key("VirtualService", ns, "reviews", 1)
    entry = json.loads(kv.get(key)[1]["Value"])
    entry["resource"]["spec"]["http"][0]["timeout"] = "soon"
    kv.put(key, json.dumps(entry))

    r = rollback(client, ns, {"to": 1})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (
        "revision 1 of VirtualService/" in error["message"]
        and "nothing was stored" in (error["message"])
    )
    assert [(d["path"], d["message"]) for d in error["details"]] == [
        ("spec.http[0].timeout", "invalid duration 'soon'")
    ]
    assert _subset(client.get(f"{VS.format(ns=ns)}/reviews").json()) == "v2"
    assert history(client, ns)[0]["revision"] == 2


def test_unknown_things_are_404_and_bad_requests_400(client: TestClient, ns: str) -> None:
    r = client.get(f"/v1/history/Frobnicator/{ns}/reviews")
    assert r.status_code == 404 and "unknown kind 'Frobnicator'" in r.json()["error"]["message"]
    r = client.get(f"/v1/history/VirtualService/{ns}/nothing-here")
    assert r.status_code == 404 and "no such resource" in r.json()["error"]["message"]
    r = rollback(client, ns)
    assert r.status_code == 404 and "no history" in r.json()["error"]["message"]
    r = client.get(f"/v1/history/GatewayClass.gateway.networking.k8s.io/{ns}/gc")
    assert r.status_code == 404 and "cluster-scoped" in r.json()["error"]["message"]

    assert client.post(VS.format(ns=ns), json=vs("v1"), headers=AS_ALICE).status_code == 201
    r = rollback(client, ns)
    assert r.status_code == 404 and "no earlier revision" in r.json()["error"]["message"]
    r = rollback(client, ns, {"to": 7})
    assert (
        r.status_code == 404 and "no revision 7 (the kept ones: 1)" in r.json()["error"]["message"]
    )
    for bad in ({"to": 0}, {"to": "1"}, {"to": 1, "extra": True}, [1], {"resourceVersion": "x"}):
        r = rollback(client, ns, bad)
        assert r.status_code == 400, (bad, r.text)
    assert rollback(client, ns, h={}).status_code == 401
    r = client.get("/v1/history/VirtualService/Not_A_Namespace/reviews")
    assert r.status_code == 400


def test_gateway_api_kinds_cluster_scoped_and_yaml_body(client: TestClient, ns: str) -> None:
    name = f"gc-{ns}"
    gc = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": "istio.io/gateway-controller", "description": "one"},
    }
    assert client.post(GC, json=gc, headers=AS_ALICE).status_code == 201
    current = client.get(f"{GC}/{name}").json()["metadata"]["resourceVersion"]
    gc["spec"]["description"] = "two"
    gc["metadata"]["resourceVersion"] = current
    assert client.put(f"{GC}/{name}", json=gc, headers=AS_ALICE).status_code == 200
    kind = "GatewayClass.gateway.networking.k8s.io"
    r = client.get(f"/v1/history/{kind.lower()}/{name}")
    assert r.status_code == 200 and [i["revision"] for i in r.json()["items"]] == [2, 1]
    r = client.post(
        f"/v1/rollback/{kind}/{name}",
        content="to: 1\n",
        headers={**AS_BOB, "Content-Type": "application/yaml"},
    )
    assert r.status_code == 200 and r.json()["resource"] == f"{kind}/{name}", r.text
    assert client.get(f"{GC}/{name}").json()["spec"]["description"] == "one"


def test_a_version_stored_before_history_is_kept_as_baseline(client: TestClient, ns: str) -> None:
    """Config written before Galley kept history: its first change records it first."""
    old = check_document(vs("v0"), "old", ns).resource
    assert old is not None
    kv = consul.Consul(*_host_port(client)).kv
    kv.put(key_for("VirtualService", ns, "reviews"), old.canonical_json())
    _put(client, ns, "v1", AS_ALICE)
    items = history(client, ns)
    assert [(i["revision"], i["operation"]) for i in items] == [(2, "update"), (1, "baseline")]
    assert items[1]["resourceVersion"] == items[0]["replaced"]
    assert rollback(client, ns).status_code == 200
    assert _subset(client.get(f"{VS.format(ns=ns)}/reviews").json()) == "v0"
