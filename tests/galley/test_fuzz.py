"""Property: no request to Galley's REST API gets a 5xx or a traceback (marker: hostile).

Hypothesis drives every route Galley serves with odd paths (control and
non-ASCII characters, huge and empty segments), odd query strings, and bodies
of every shape (random JSON, random text and bytes, near-valid Istio
documents with fields replaced by random values), against a real Consul.
Every answer must be a 2xx, or a 4xx in Galley's one error shape.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galley.main import create_app
from galley.settings import GalleySettings

pytestmark = pytest.mark.hostile

TOKEN = "fuzz-token"
SEGMENT = st.one_of(
    st.sampled_from(["default", "x", "a.b", "", "..", "%00", "%0A", "caf%C3%A9", "A" * 300]),
    st.text(st.characters(codec="utf-8", exclude_characters="/?#"), max_size=20),
)
GROUPS = st.sampled_from(
    ["networking.istio.io/v1", "security.istio.io/v1beta1", "telemetry.istio.io/v1", "x/y"]
)
PLURALS = st.sampled_from(
    ["virtualservices", "destinationrules", "authorizationpolicies", "telemetries", "nope"]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A real document with one part replaced by something random."""
    doc: dict[str, Any] = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "fuzz", "namespace": "default"},
        "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}}]}]},
    }
    where = draw(st.sampled_from(["kind", "metadata", "spec", "hosts", "http", "route"]))
    value = draw(JSON_VALUES)
    if where in ("kind", "metadata", "spec"):
        doc[where] = value
    elif where == "hosts":
        doc["spec"]["hosts"] = value
    elif where == "http":
        doc["spec"]["http"] = value
    else:
        doc["spec"]["http"][0]["route"] = value
    return doc


BODIES = st.one_of(
    JSON_VALUES.map(lambda v: (json.dumps(v).encode(), "application/json")),
    near_valid().map(lambda d: (json.dumps(d).encode(), "application/json")),
    st.text(max_size=200).map(lambda t: (t.encode(), "application/yaml")),
    st.binary(max_size=200).map(lambda b: (b, "application/json")),
    st.binary(max_size=200).map(lambda b: (b, "application/yaml")),
)


@pytest.fixture(scope="module")
def client(consul_agent: str) -> Iterator[TestClient]:
    with TestClient(
        create_app(GalleySettings(consul_addr=consul_agent, token=TOKEN)),
        raise_server_exceptions=False,
    ) as c:
        yield c


def _check(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert {"status", "reason", "message"} <= set(error), error


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    group=GROUPS,
    namespace=SEGMENT,
    plural=PLURALS,
    name=SEGMENT,
    query=st.sampled_from(
        ["", "?resource_version=0", "?force=true", "?namespace=%0A", "?x=" + "y" * 5000]
    ),
    body=BODIES,
)
def test_resource_routes_never_answer_5xx(
    client: TestClient,
    method: str,
    group: str,
    namespace: str,
    plural: str,
    name: str,
    query: str,
    body: tuple[bytes, str],
) -> None:
    # Percent-encoded, as a client sends odd bytes (an already-encoded one stays so).
    ns, nm = (quote(s, safe="%") for s in (namespace, name))
    path = f"/apis/{group}/namespaces/{ns}/{plural}"
    if method in ("GET", "PUT", "DELETE") and name:
        path += f"/{nm}"
    content, content_type = body
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
    data = content if method in ("POST", "PUT") else None
    _check(client.request(method, path + query, content=data, headers=headers))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(route=st.sampled_from(["/v1/validate", "/v1/apply"]), body=BODIES)
def test_config_routes_never_answer_5xx(
    client: TestClient, route: str, body: tuple[bytes, str]
) -> None:
    content, content_type = body
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type}
    _check(client.post(route, content=content, headers=headers))
