"""Property: config Galley accepts is never NACKed by the real Envoy.

Hypothesis builds Istio documents from the shapes the api/ models accept
(VirtualService, DestinationRule, Gateway, ServiceEntry, PeerAuthentication,
AuthorizationPolicy, RequestAuthentication, Telemetry), keeps those Galley's
validation accepts, applies them through Galley, and waits until Pilot has
pushed them to a sidecar with a mesh identity, a client sidecar and an ingress
gateway. Every proxy must ACK every type. A NACK found here becomes a
validation rule or a translation fix, and a golden case.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.resources import check_document, kinds
from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = pytest.mark.e2e

HOSTS = ["reviews", "ratings.backend.svc.cluster.local", "productpage", "api.example.com"]
NAMESPACES = ["default", "backend", "istio-system"]
WORDS = st.sampled_from(["a", "v1", "shop", "x-y", "jason", "0", "/p"])
PATHS = st.sampled_from(["/", "/api", "/api/v1", "/static/x.css", "/a%20b"])
DURATIONS = st.sampled_from(["1ms", "250ms", "1s", "2.5s", "30s", "1h"])
PERCENT = st.sampled_from([0, 0.1, 25, 50.5, 100])
ATTRIBUTE_VALUES: dict[str, list[str]] = {
    "principals": ["cluster.local/ns/default/sa/fe", "*", "*/sa/x", "cluster.local/*"],
    "requestPrincipals": ["https://iss/sub", "*", "iss/*", "*/sub"],
    "namespaces": ["default", "*", "team-*", "*-prod"],
    "serviceAccounts": ["fe", "backend/worker"],
    "trustDomains": ["cluster.local", "*", "*.corp", "corp.*"],
    "ipBlocks": ["10.0.0.0/8", "127.0.0.1", "::1", "2001:db8::/32"],
    "remoteIpBlocks": ["192.0.2.0/24"],
}
OPERATION_VALUES: dict[str, list[str]] = {
    "hosts": ["reviews", "*.example", "shop*", "*"],
    "ports": ["9080", "80"],
    "methods": ["GET", "POST", "*"],
    "paths": ["/a", "/a*", "*/b", "/items/{*}/x", "/files/{**}", "*"],
}
WHEN_VALUES: dict[str, list[str]] = {
    "source.ip": ["10.0.0.1"],
    "remote.ip": ["10.0.0.0/16"],
    "source.namespace": ["default"],
    "source.principal": ["cluster.local/ns/default/sa/fe"],
    "source.serviceAccount": ["fe", "default/fe"],
    "source.trustDomain": ["cluster.local"],
    "request.auth.principal": ["iss/sub"],
    "request.auth.audiences": ["aud"],
    "request.auth.presenter": ["azp"],
    "request.auth.claims[groups]": ["admins"],
    "request.auth.claims[a][b]": ["c"],
    "request.headers[x-team]": ["blue", "*"],
    "destination.ip": ["10.0.0.0/8"],
    "destination.port": ["9080"],
    "connection.sni": ["outbound_.*", "*.example"],
    "experimental.envoy.filters.network.mysql_proxy[db.table]": ["[update]", "x"],
}


def _meta(name: str, namespace: str) -> dict[str, str]:
    return {"name": name, "namespace": namespace}


def _doc(kind: str, group: str, name: str, namespace: str, spec: Any) -> dict[str, Any]:
    return {"apiVersion": group, "kind": kind, "metadata": _meta(name, namespace), "spec": spec}


@st.composite
def string_match(draw: st.DrawFn) -> dict[str, str]:
    form = draw(st.sampled_from(["exact", "prefix", "regex"]))
    value = draw(PATHS) if form != "regex" else draw(st.sampled_from(["/a.*", "[a-z]+", ".*"]))
    return {form: value}


@st.composite
def http_route(draw: st.DrawFn, host: str) -> dict[str, Any]:
    route: dict[str, Any] = {}
    if draw(st.booleans()):
        match: dict[str, Any] = {"uri": draw(string_match())}
        if draw(st.booleans()):
            match["headers"] = {"x-user": draw(string_match())}
        if draw(st.booleans()):
            match["method"] = {"exact": draw(st.sampled_from(["GET", "POST"]))}
        if draw(st.booleans()):
            match["queryParams"] = {"q": {"exact": draw(WORDS)}}
        if draw(st.booleans()):
            match["sourceLabels"] = {"version": "v1"}
        route["match"] = [match]
    ending = draw(st.sampled_from(["route", "route", "redirect", "direct"]))
    if ending == "redirect":
        route["redirect"] = {"uri": draw(PATHS), "redirectCode": draw(st.sampled_from([301, 308]))}
        return route
    if ending == "direct":
        route["directResponse"] = {"status": draw(st.sampled_from([200, 404, 503]))}
        return route
    subsets = draw(st.sampled_from([[None], ["v1"], ["v1", "v2"]]))
    weights = [100] if len(subsets) == 1 else [70, 30]
    route["route"] = [
        {"destination": {"host": host, **({"subset": s} if s else {})}, "weight": w}
        for s, w in zip(subsets, weights, strict=True)
    ]
    if draw(st.booleans()):
        route["retries"] = {
            "attempts": draw(st.integers(0, 5)),
            "perTryTimeout": draw(DURATIONS),
            "retryOn": draw(st.sampled_from(["5xx", "gateway-error,503", "reset,connect-failure"])),
        }
    if draw(st.booleans()):
        route["timeout"] = draw(DURATIONS)
    if draw(st.booleans()):
        route["fault"] = draw(
            st.sampled_from(
                [
                    {"delay": {"fixedDelay": "1s", "percentage": {"value": 10}}},
                    {"abort": {"httpStatus": 503, "percentage": {"value": 50.5}}},
                    {"abort": {"grpcStatus": "UNAVAILABLE"}},
                ]
            )
        )
    if draw(st.booleans()):
        route["mirror"] = {"host": host}
        route["mirrorPercentage"] = {"value": draw(PERCENT)}
    if draw(st.booleans()):
        route["rewrite"] = draw(
            st.sampled_from(
                [{"uri": "/new"}, {"authority": "other"}, {"uri": "/x", "authority": "y"}]
            )
        )
    if draw(st.booleans()):
        route["headers"] = {
            "request": {"set": {"x-a": draw(WORDS)}, "remove": ["x-b"]},
            "response": {"add": {"x-c": draw(WORDS)}},
        }
    if draw(st.booleans()):
        route["corsPolicy"] = {
            "allowOrigins": [{"exact": "https://a.example"}],
            "allowMethods": ["GET"],
            "maxAge": draw(DURATIONS),
        }
    return route


@st.composite
def virtual_service(draw: st.DrawFn, n: int) -> dict[str, Any]:
    host = draw(st.sampled_from(HOSTS))
    spec: dict[str, Any] = {
        "hosts": [host],
        "http": draw(st.lists(http_route(host), min_size=1, max_size=3)),
    }
    if draw(st.booleans()):
        spec["gateways"] = ["istio-system/ingress"]
        spec["hosts"] = ["*"]
    return _doc("VirtualService", "networking.istio.io/v1", f"vs{n}", "default", spec)


@st.composite
def traffic_policy(draw: st.DrawFn) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if draw(st.booleans()):
        policy["loadBalancer"] = draw(
            st.sampled_from(
                [
                    {"simple": "ROUND_ROBIN"},
                    {"simple": "LEAST_REQUEST"},
                    {"simple": "RANDOM"},
                    {"consistentHash": {"httpHeaderName": "x-user"}},
                    {"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 65537}}},
                    {"consistentHash": {"httpCookie": {"name": "c", "ttl": "10s"}}},
                    {"consistentHash": {"httpQueryParameterName": "u", "minimumRingSize": 64}},
                ]
            )
        )
    if draw(st.booleans()):
        policy["connectionPool"] = {
            "tcp": {
                "maxConnections": draw(st.integers(1, 1000)),
                "connectTimeout": draw(DURATIONS),
            },
            "http": {"http1MaxPendingRequests": draw(st.integers(1, 100)), "idleTimeout": "30s"},
        }
    if draw(st.booleans()):
        policy["outlierDetection"] = {
            "consecutive5xxErrors": draw(st.integers(1, 10)),
            "interval": draw(DURATIONS),
            "baseEjectionTime": draw(DURATIONS),
            "maxEjectionPercent": draw(st.integers(0, 100)),
        }
    if draw(st.booleans()):
        policy["tls"] = {"mode": draw(st.sampled_from(["ISTIO_MUTUAL", "DISABLE"]))}
    return policy


@st.composite
def destination_rule(draw: st.DrawFn, n: int) -> dict[str, Any]:
    host = draw(st.sampled_from(HOSTS))
    spec: dict[str, Any] = {"host": host, "trafficPolicy": draw(traffic_policy())}
    spec["subsets"] = [
        {"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": draw(traffic_policy())},
        {"name": "v2", "labels": {"version": "v2"}},
    ]
    return _doc("DestinationRule", "networking.istio.io/v1", f"dr{n}", "default", spec)


@st.composite
def service_entry(draw: st.DrawFn, n: int) -> dict[str, Any]:
    resolution = draw(st.sampled_from(["STATIC", "DNS"]))
    spec: dict[str, Any] = {
        "hosts": [draw(st.sampled_from(["api.example.com", "db.example.com"]))],
        "ports": draw(
            st.sampled_from(
                [
                    [{"number": 80, "name": "http", "protocol": "HTTP"}],
                    [
                        {"number": 80, "name": "http", "protocol": "HTTP"},
                        {"number": 8080, "name": "alt", "protocol": "HTTP", "targetPort": 9090},
                    ],
                    [{"number": 5432, "name": "tcp", "protocol": "TCP"}],
                ]
            )
        ),
        "resolution": resolution,
    }
    if resolution == "STATIC":
        choices = [
            [{"address": "192.0.2.1"}, {"address": "192.0.2.2"}],
            [{"address": "192.0.2.1"}, {"network": "west"}],  # address-less: a remote network
        ]
        if len(spec["ports"]) == 1:  # a unix socket endpoint needs exactly one service port
            choices.append([{"address": "unix:///var/run/example.sock"}])
        spec["endpoints"] = draw(st.sampled_from(choices))
    ns = draw(st.sampled_from(NAMESPACES))
    return _doc("ServiceEntry", "networking.istio.io/v1", f"se{n}", ns, spec)


@st.composite
def authorization_policy(draw: st.DrawFn, n: int) -> dict[str, Any]:
    def pick(table: dict[str, list[str]], negate: bool = True) -> dict[str, list[str]]:
        keys = draw(st.lists(st.sampled_from(sorted(table)), min_size=1, max_size=3, unique=True))
        out = {}
        for key in keys:
            field = key
            if negate and draw(st.booleans()):
                field = "not" + key[0].upper() + key[1:]
            out[field] = [draw(st.sampled_from(table[key]))]
        return out

    rule: dict[str, Any] = {}
    if draw(st.booleans()):
        source = pick(ATTRIBUTE_VALUES)
        if any("erviceAccounts" in k for k in source):  # not with namespaces or principals
            source = {
                k: v for k, v in source.items() if "amespaces" not in k and "rincipals" not in k
            }
        rule["from"] = [{"source": source}]
    if draw(st.booleans()):
        rule["to"] = [{"operation": pick(OPERATION_VALUES)}]
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(WHEN_VALUES)))
        form = draw(st.sampled_from(["values", "notValues"]))
        rule["when"] = [{"key": key, form: [draw(st.sampled_from(WHEN_VALUES[key]))]}]
    action = draw(st.sampled_from(["ALLOW", "DENY", "AUDIT"]))
    spec: dict[str, Any] = {"action": action, "rules": [rule]}
    if draw(st.booleans()):
        spec["selector"] = {"matchLabels": {"app": "productpage"}}
    ns = draw(st.sampled_from(["default", "istio-system"]))
    return _doc("AuthorizationPolicy", "security.istio.io/v1", f"ap{n}", ns, spec)


@st.composite
def peer_authentication(draw: st.DrawFn, n: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"mtls": {"mode": draw(st.sampled_from(["STRICT", "PERMISSIVE"]))}}
    if draw(st.booleans()):
        spec["selector"] = {"matchLabels": {"app": "productpage"}}
        spec["portLevelMtls"] = {"9080": {"mode": draw(st.sampled_from(["STRICT", "PERMISSIVE"]))}}
    return _doc("PeerAuthentication", "security.istio.io/v1", f"pa{n}", "default", spec)


def request_authentication(n: int) -> dict[str, Any]:
    jwks = (
        '{"keys":[{"kty":"EC","crv":"P-256","kid":"k",'
        '"x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",'
        '"y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}]}'
    )
    spec = {"jwtRules": [{"issuer": "iss", "jwks": jwks, "audiences": ["aud"]}]}
    return _doc("RequestAuthentication", "security.istio.io/v1", f"ra{n}", "default", spec)


def gateway() -> dict[str, Any]:
    spec = {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
    }
    return _doc("Gateway", "networking.istio.io/v1", "ingress", "istio-system", spec)


@st.composite
def telemetry(draw: st.DrawFn, n: int) -> dict[str, Any]:
    spec = {
        "accessLogging": [{"providers": [{"name": "envoy"}], "disabled": draw(st.booleans())}],
        "tracing": [{"randomSamplingPercentage": draw(PERCENT)}],
    }
    return _doc("Telemetry", "telemetry.istio.io/v1", f"tm{n}", "default", spec)


@st.composite
def config_set(draw: st.DrawFn) -> list[dict[str, Any]]:
    makers = [
        virtual_service,
        destination_rule,
        service_entry,
        authorization_policy,
        peer_authentication,
        telemetry,
    ]
    docs = [gateway()]
    for n in range(draw(st.integers(1, 5))):
        docs.append(draw(draw(st.sampled_from(makers))(n)))
    if draw(st.booleans()):
        docs.append(request_authentication(0))
    return docs


@pytest.fixture(scope="module")
def mesh(envoy_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = Path(tmp_path_factory.mktemp("no-nack"))
    with Mesh.running(workdir, envoy_bin, citadel=True) as m:
        yield m


def _galley(mesh: Mesh, method: str, path: str, body: object = None) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{mesh.galley_http}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {mesh.token}"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(resp.status)


def _path(doc: dict[str, Any]) -> str:
    info = kinds()[doc["kind"]]
    meta = doc["metadata"]
    return f"/apis/{doc['apiVersion']}/namespaces/{meta['namespace']}/{info.plural}/{meta['name']}"


def _settled(mesh: Mesh, proxies: list[str], after: int) -> dict[str, Any] | None:
    """Pilot's sync status once it published a snapshot newer than `after` and every
    proxy has answered (ACK or NACK) everything it was sent."""
    status = mesh.pilot_json("/debug/syncz")
    if (status["snapshot"] or 0) <= after:
        return None
    mine = {p["proxy"]: p for p in status["proxies"] if p["proxy"] in proxies}
    if set(mine) != set(proxies):
        return None
    for p in mine.values():
        for t in p["types"].values():
            answered = t["version_acked"] == t["version_sent"] or t.get("nack")
            if not answered:
                return None
    return status


def test_accepted_config_is_never_nacked(mesh: Mesh) -> None:
    mesh.add("reviews", "reviews-1")
    mesh.add("reviews", "reviews-2", version="v2")
    page: Workload = mesh.add("productpage", "productpage-1", service_account="productpage")
    client = mesh.client("client", service_account="client")
    gw = mesh.gateway("ingressgateway")
    proxies = [page.instance, client.instance, gw.instance]
    eventually(lambda: _settled(mesh, proxies, 0), timeout=30, what="proxies synced")
    tried = {"applied": 0}

    @settings(
        max_examples=50,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(docs=config_set())
    def check(docs: list[dict[str, Any]]) -> None:
        docs = [d for d in docs if check_document(d, "generated").ok]
        if not docs:
            return
        before = mesh.pilot_json("/debug/syncz")["snapshot"] or 0
        assert _galley(mesh, "POST", "/v1/apply", docs) == 200
        tried["applied"] += 1
        try:
            status = eventually(
                lambda: _settled(mesh, proxies, before), timeout=30, what="config pushed"
            )
            nacks = [
                (p["proxy"], kind, t["nack"])
                for p in status["proxies"]
                for kind, t in p["types"].items()
                if t.get("nack")
            ]
            assert nacks == [], json.dumps(docs, indent=1)
        finally:
            for doc in docs:
                _galley(mesh, "DELETE", _path(doc))

    check()
    assert tried["applied"] >= 10, "too few generated sets passed validation"
    assert mesh.pilot_metric("pilot_xds_nacks_total") == 0
