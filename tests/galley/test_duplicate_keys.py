"""A body with a key written twice is refused, naming the line (and in JSON the column):
Istio's strict decoding refuses it, where a plain parser would keep the last value."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from galley.main import create_app
from galley.settings import GalleySettings

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}
YAML = {"Content-Type": "application/yaml"}

PA_JSON = """{
  "apiVersion": "security.istio.io/v1",
  "kind": "PeerAuthentication",
  "metadata": {"name": "twice", "namespace": "default"},
  "spec": {"mtls": {"mode": "STRICT"}, "mtls": {"mode": "DISABLE"}}
}"""
PA_YAML = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: twice, namespace: default}
spec:
  mtls: {mode: STRICT}
  mtls: {mode: DISABLE}
"""


@pytest.fixture
def client(consul_agent: str) -> Iterator[TestClient]:
    with TestClient(create_app(GalleySettings(consul_addr=consul_agent, token=TOKEN))) as c:
        yield c


@pytest.mark.parametrize(
    ("body", "headers", "where"),
    [
        (PA_JSON, JSON, "line 5, column 40: key 'mtls' appears twice"),
        (PA_YAML, YAML, "line 6: key 'mtls' appears twice"),
    ],
    ids=["json", "yaml"],
)
@pytest.mark.parametrize("path", ["/v1/validate", "/v1/apply"])
def test_a_key_written_twice_is_refused_with_its_line(
    client: TestClient, body: str, headers: dict[str, str], where: str, path: str
) -> None:
    r = client.post(path, content=body.encode(), headers={**headers, **AUTH})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["reason"] == "BadRequest"
    assert error["message"] == f"body: {where}", error
    # Nothing was stored.
    got = client.get("/apis/security.istio.io/v1/namespaces/default/peerauthentications/twice")
    assert got.status_code == 404, got.text


def test_the_same_body_without_the_duplicate_is_accepted(client: TestClient) -> None:
    body = PA_JSON.replace(', "mtls": {"mode": "DISABLE"}', "")
    r = client.post("/v1/validate", content=body.encode(), headers=JSON)
    assert r.status_code == 200, r.text
