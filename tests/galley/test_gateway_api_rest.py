"""The Gateway API through Galley's REST API (real Consul): its paths, a cluster-scoped
kind, Istio's Gateway beside the Gateway API's of the same name, and status."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from galley.main import create_app
from galley.settings import GalleySettings

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GW_API = "/apis/gateway.networking.k8s.io/v1"


@pytest.fixture
def client(consul_agent: str) -> Iterator[TestClient]:
    with TestClient(create_app(GalleySettings(consul_addr=consul_agent, token=TOKEN))) as c:
        yield c


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def k8s_gateway(name: str, class_name: str = "istio") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {
            "gatewayClassName": class_name,
            "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}],
        },
    }


def istio_gateway(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
            ],
        },
    }


def test_a_cluster_scoped_gateway_class(client: TestClient) -> None:
    name = f"c-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": "istio.io/gateway-controller"},
    }
    r = client.post(f"{GW_API}/gatewayclasses", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    assert "namespace" not in r.json()["metadata"]
    got = client.get(f"{GW_API}/gatewayclasses/{name}").json()
    conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    # Beside its own, the distribution condition every resource has (galley/proxy_status.py).
    assert conditions.pop("Reconciled") in ("True", "False", "Unknown")
    assert conditions == {"Accepted": "True"}
    listed = client.get(f"{GW_API}/gatewayclasses").json()
    assert name in [i["metadata"]["name"] for i in listed["items"]]
    # Not under a namespace, and namespaced kinds not without one.
    assert client.get(f"{GW_API}/namespaces/default/gatewayclasses/{name}").status_code == 404
    assert client.get(f"{GW_API}/httproutes/x").status_code == 404
    assert client.delete(f"{GW_API}/gatewayclasses/{name}", headers=AUTH).status_code == 200
    assert client.get(f"{GW_API}/gatewayclasses/{name}").status_code == 404


def test_istio_and_gateway_api_gateways_of_one_name_live_side_by_side(
    client: TestClient, ns: str
) -> None:
    k8s = f"{GW_API}/namespaces/{ns}/gateways"
    istio = f"/apis/networking.istio.io/v1/namespaces/{ns}/gateways"
    assert client.post(k8s, json=k8s_gateway("edge"), headers=AUTH).status_code == 201
    assert client.post(istio, json=istio_gateway("edge"), headers=AUTH).status_code == 201
    assert client.get(f"{k8s}/edge").json()["spec"]["gatewayClassName"] == "istio"
    assert "selector" in client.get(f"{istio}/edge").json()["spec"]
    # A body of the other group's kind is refused on this path.
    r = client.put(f"{k8s}/edge?force=true", json=istio_gateway("edge"), headers=AUTH)
    assert r.status_code == 400, r.text
    assert client.delete(f"{k8s}/edge", headers=AUTH).status_code == 200
    assert client.get(f"{istio}/edge").status_code == 200


def test_routes_carry_their_status(client: TestClient, ns: str) -> None:
    gateways = f"{GW_API}/namespaces/{ns}/gateways"
    assert client.post(gateways, json=k8s_gateway("edge"), headers=AUTH).status_code == 201
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {
            "parentRefs": [{"name": "edge"}, {"name": "missing"}],
            "rules": [{"backendRefs": [{"name": "nowhere", "port": 80}]}],
        },
    }
    routes = f"{GW_API}/namespaces/{ns}/httproutes"
    assert client.post(routes, json=route, headers=AUTH).status_code == 201
    status = client.get(f"{routes}/r").json()["status"]
    found = [
        {c["type"]: (c["status"], c["reason"]) for c in p["conditions"]} for p in status["parents"]
    ]
    assert found[0]["Accepted"] == ("True", "Accepted")
    assert found[0]["ResolvedRefs"] == ("False", "BackendNotFound")
    assert found[1]["Accepted"] == ("False", "NoMatchingParent")
    listed = client.get(routes).json()["items"]
    assert listed[0]["status"] == status
    gateway = client.get(f"{gateways}/edge").json()["status"]
    assert gateway["listeners"][0]["attachedRoutes"] == 1
    # Status is computed, never stored: a stored copy would go stale.
    r = client.post(
        routes, json={**route, "metadata": {"name": "s"}, "status": {"parents": []}}, headers=AUTH
    )
    assert r.status_code == 201
    assert client.get(f"{routes}/s").json()["status"]["parents"][0]["parentRef"] == {"name": "edge"}
