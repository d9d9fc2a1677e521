"""Hostile bodies get a clear 4xx, fast, and never a 500 (marker: hostile).

Each case once answered 500 with a traceback, or stalled Galley for tens of
seconds: nesting past Python's recursion limit, and a YAML "billion laughs"
of a few hundred bytes expanding through aliases.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.documents import MAX_DEPTH
from galley.main import create_app
from galley.settings import GalleySettings

pytestmark = pytest.mark.hostile

TOKEN = "s3cret-token"
YAML = {"Content-Type": "application/yaml"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(consul_agent: str) -> Iterator[TestClient]:
    with TestClient(create_app(GalleySettings(consul_addr=consul_agent, token=TOKEN))) as c:
        yield c


def laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def pa_with(spec: object) -> dict[str, object]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "deep", "namespace": "default"},
        "spec": spec,
    }


def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ("[" * 1000 + "]" * 1000, JSON),
        ("[" * 1000 + "]" * 1000, YAML),
        ("{" * 5000, JSON),
        (json.dumps(pa_with({"mtls": nested(MAX_DEPTH + 5)})), JSON),
        (laughs(9), YAML),  # 9^9 values after expansion, from ~600 bytes
        ("a: &x [*x]\n", YAML),  # an alias inside the node it names
    ],
)
def test_hostile_bodies_are_refused_fast(
    client: TestClient, body: str, headers: dict[str, str]
) -> None:
    for path in ("/v1/validate", "/v1/apply"):
        began = time.monotonic()
        r = client.post(
            path, content=body.encode(), headers={**headers, "Authorization": f"Bearer {TOKEN}"}
        )
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
        assert time.monotonic() - began < 2.0, "took too long"
        error = r.json()["error"]
        assert (
            "nested deeper" in error["message"]
            or "values" in error["message"]
            or "not valid" in error["message"]
            or "refers to" in error["message"]
        ), error


def test_real_config_within_the_bounds_still_passes(client: TestClient) -> None:
    anchors = (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: ok, namespace: default}\nspec: {mtls: &m {mode: STRICT}}\n"
    )
    r = client.post("/v1/validate", content=anchors.encode(), headers=YAML)
    assert r.status_code == 200, r.text


def test_parse_and_validation_are_bounded_in_time_and_in_parallel(consul_agent: str) -> None:
    """A body whose checking outlasts check_timeout_s gets 503 (not a stall), and while
    the one slot is held the next request waits at most that long for its turn."""
    settings = GalleySettings(
        consul_addr=consul_agent, token=TOKEN, max_parallel_checks=1, check_timeout_s=0.05
    )
    big = ("- " + "x" * 40 + "\n") * 20_000  # about a second of parsing
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        began = time.monotonic()
        slow = c.post("/v1/validate", content=big, headers=YAML)
        assert slow.status_code == 503, slow.text
        assert "took over 0.05s" in slow.json()["error"]["message"]
        # The slot is still held by the parse above: the next request is told to retry.
        busy = c.post("/v1/validate", content="a: 1\n", headers=YAML)
        assert busy.status_code == 503, busy.text
        assert "busy" in busy.json()["error"]["message"]
        assert time.monotonic() - began < 1.0


def test_an_object_of_many_keys_parses_in_linear_time(client: TestClient) -> None:
    """Duplicate keys were looked for with list.count: quadratic, seconds for 60,000 keys."""
    body = json.dumps(pa_with({f"k{i}": 0 for i in range(60_000)}))
    began = time.monotonic()
    r = client.post("/v1/validate", content=body.encode(), headers=JSON)
    assert r.status_code == 422, r.text[:300]
    assert time.monotonic() - began < 5.0


PA = '"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "n"}'


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ("{" + PA + ', "spec": {"portLevelMtls": {"80": NaN}}}', JSON, 400),
        ("{" + PA + ', "spec": {"a": 1.5, "portLevelMtls": {"80": [2.5, NaN]}}}', JSON, 400),
        ("{" + PA + ', "spec": {"portLevelMtls": {"80": {"mode": -Infinity}}}}', JSON, 400),
        (
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: n}\n"
            "spec:\n  portLevelMtls:\n    '80': {mode: .nan}\n",
            YAML,
            422,
        ),
    ],
)
def test_nan_and_infinities_are_refused_with_their_path(
    client: TestClient, body: str, headers: dict[str, str], status: int
) -> None:
    """Python's json reads NaN and Infinity, YAML has .nan and .inf: none is a config value."""
    r = client.post("/v1/validate", content=body.encode(), headers=headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    where = " ".join([error["message"], *(d["path"] for d in error["details"])])
    assert "NaN and infinities" in r.text and "spec.portLevelMtls" in where, error
