"""Gateway API routes (HTTPRoute, GRPCRoute, TCPRoute, TLSRoute): documents of the
shapes of Istio's samples and the Gateway API's examples are accepted; each rule of the
Gateway API's CRDs (schema and CEL) is refused at its field path."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from api.gateway_api.grpc_route import GRPCRouteSpec
from api.gateway_api.http_route import HTTPRouteSpec
from api.gateway_api.tcp_route import TCPRouteSpec
from api.gateway_api.tls_route import TLSRouteSpec
from api.resources import check_text
from tests.api.gateway_api_helpers import assert_error, assert_ok, check, errors, validate_as

# --- documents that are accepted --------------------------------------------------------

HTTP_ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: storefront}
spec:
  parentRefs:
  - name: shop-gateway
  rules:
  - matches:
    - path: {type: Exact, value: /index.html}
    - path: {type: PathPrefix, value: /assets}
    - path: {type: PathPrefix, value: /api/v2/catalog}
    backendRefs:
    - name: storefront
      port: 8080
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cart-canary}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: cart
    port: 8080
  rules:
  - backendRefs:
    - {name: cart-stable, port: 8080, weight: 95}
    - {name: cart-canary, port: 8080, weight: 5}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: echo}
spec:
  parentRefs: [{name: public, namespace: edge}]
  rules:
  - backendRefs: [{name: echo, port: 8000}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: everything, namespace: shop}
spec:
  parentRefs:
  - {name: everything, namespace: edge, sectionName: http}
  - {name: everything, namespace: edge, sectionName: https}
  - {group: gateway.networking.k8s.io, kind: Gateway, name: internal, port: 80}
  hostnames: ["shop.example.com", "*.shop.example.com"]
  rules:
  - name: search
    matches:
    - path: {type: RegularExpression, value: "^/search/[a-z]+//?$"}
      headers:
      - {name: X-Version, value: "2"}
      - {type: RegularExpression, name: user-agent, value: ".*Mobile.*"}
      queryParams:
      - {name: q, value: shoes}
      method: GET
    - method: POST
    backendRefs:
    - name: search
      port: 8080
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier: {add: [{name: X-Backend, value: search}]}
    timeouts: {request: 10s, backendRequest: 2s}
    retry: {codes: [500, 502, 503], attempts: 3, backoff: 100ms}
    sessionPersistence:
      type: Cookie
      absoluteTimeout: 1h
      cookie: {name: shop-session, path: /, lifetimeType: Permanent}
  - matches: [{path: {type: PathPrefix, value: /old-shop}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: https
        hostname: shop.example.com
        port: 443
        statusCode: 301
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /shop}
  - matches: [{path: {type: PathPrefix, value: /v1}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: api.internal
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /}
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Env, value: prod}]
        add: [{name: X-Via, value: gateway}]
        remove: [X-Debug]
    - type: ResponseHeaderModifier
      responseHeaderModifier: {remove: [Server]}
    - type: RequestMirror
      requestMirror:
        backendRef: {name: api-shadow, port: 8080}
        percent: 10
    - type: RequestMirror
      requestMirror:
        backendRef: {name: api-audit, namespace: audit, port: 9090}
        fraction: {numerator: 1, denominator: 1000}
    - type: CORS
      cors:
        allowOrigins: ["https://shop.example.com", "https://*.example.com:8443", "http://*"]
        allowMethods: [GET, POST]
        allowHeaders: [Authorization, X-Request-Id]
        exposeHeaders: [X-Total-Count]
        allowCredentials: true
        maxAge: 600
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: RateLimit, name: slow-down}
    backendRefs:
    - {name: api, port: 8080, weight: 0}
    - {group: example.com, kind: Bucket, name: static-assets}
    - {name: api-v2, namespace: api, port: 8080, weight: 1000000}
  - name: auth
    filters:
    - type: ExternalAuth
      externalAuth:
        protocol: HTTP
        backendRef: {name: authz, port: 9000}
        http: {path: /check, allowedHeaders: [Authorization], allowedResponseHeaders: [X-User]}
        forwardBody: {maxSize: 8192}
    backendRefs: [{name: account, port: 8080}]
    sessionPersistence:
      type: Header
      header: {name: X-Session}
  - matches: [{method: DELETE}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /deleted}}
    backendRefs: [{name: api, port: 8080}]
    timeouts: {request: 0s, backendRequest: 1h}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catch-all}
spec:
  parentRefs: [{name: shop-gateway}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: https-redirect}
spec:
  parentRefs: [{name: shop-gateway, sectionName: http}]
  hostnames: [shop.example.com]
  rules:
  - filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, statusCode: 301}
"""


def test_http_routes_are_accepted() -> None:
    checked = check_text(HTTP_ROUTES, "routes.yaml")
    assert [errors(c) for c in checked] == [[]] * 6
    canary = checked[1].resource
    assert canary is not None
    spec = canary.spec_as(HTTPRouteSpec)
    assert spec.parent_refs is not None and spec.parent_refs[0].kind == "Service"
    assert spec.rules is not None
    assert [(b.name, b.weight) for b in spec.rules[0].backend_refs or []] == [
        ("cart-stable", 95),
        ("cart-canary", 5),
    ]
    full = checked[3].resource
    assert full is not None
    rules = full.spec_as(HTTPRouteSpec).rules or []
    assert rules[0].timeouts is not None and rules[0].timeouts.backend_request == "2s"
    assert rules[0].retry is not None and rules[0].retry.codes == [500, 502, 503]
    assert [f.type for f in rules[2].filters or []][:2] == ["URLRewrite", "RequestHeaderModifier"]
    assert full.spec.dump()["rules"][2]["filters"][0]["urlRewrite"]["hostname"] == "api.internal"


GRPC_ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: greeter}
spec:
  parentRefs: [{name: grpc-gateway}]
  hostnames: [greeter.example.com]
  rules:
  - matches:
    - method: {service: helloworld.Greeter, method: SayHello}
    - method: {service: grpc.reflection.v1.ServerReflection}
    - method: {type: Exact, method: Check}
    - headers:
      - {name: env, value: canary}
      - {type: RegularExpression, name: x-client, value: "mobile-.*"}
    - method: {type: RegularExpression, service: "helloworld\\\\..*", method: "Say.+/x"}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-route, value: greeter}]}
    - type: RequestMirror
      requestMirror: {backendRef: {name: greeter-shadow, port: 50051}, percent: 5}
    backendRefs:
    - name: greeter-v1
      port: 50051
      weight: 90
    - name: greeter-v2
      port: 50051
      weight: 10
      filters:
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: x-version, value: v2}]}
  - name: health
    matches: [{method: {service: grpc.health.v1.Health, method: Watch}}]
    backendRefs: [{name: health, port: 50051}]
    sessionPersistence: {type: Header, header: {name: x-session}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: empty}
spec: {}
"""


def test_grpc_routes_are_accepted() -> None:
    checked = check_text(GRPC_ROUTES, "grpc.yaml")
    assert [errors(c) for c in checked] == [[], []]
    route = checked[0].resource
    assert route is not None
    rules = route.spec_as(GRPCRouteSpec).rules or []
    match = (rules[0].matches or [])[0].method
    assert match is not None and (match.service, match.method) == ("helloworld.Greeter", "SayHello")


L4_ROUTES = """
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: echo}
spec:
  parentRefs:
  - name: echo-gateway
    sectionName: tcp-9000
  rules:
  - backendRefs:
    - {name: echo-v1, port: 9000, weight: 75}
    - {name: echo-v2, port: 9000, weight: 25}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: postgres}
spec:
  parentRefs: [{name: everything, namespace: edge, sectionName: tcp}]
  rules:
  - name: primary
    backendRefs: [{name: postgres, port: 5432}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: by-port}
spec:
  parentRefs: [{group: example.io, kind: Mesh, name: my-mesh, port: 8000}]
  rules:
  - backendRefs: [{name: svc, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: passthrough}
spec:
  parentRefs: [{name: everything, namespace: edge, sectionName: tls-passthrough}]
  rules:
  - backendRefs: [{name: db, port: 443}]
---
apiVersion: gateway.networking.k8s.io/v1alpha3
kind: TLSRoute
metadata: {name: by-sni}
spec:
  parentRefs: [{name: everything, namespace: edge}]
  hostnames: [db.example.com]
  rules:
  - backendRefs: [{name: db, port: 443}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: wildcard}
spec:
  parentRefs: [{name: everything, namespace: edge}]
  hostnames: ["*.db.example.com", db.example.com]
  rules:
  - backendRefs: [{name: db, port: 443}]
"""


def test_tcp_and_tls_routes_are_accepted() -> None:
    checked = check_text(L4_ROUTES, "l4.yaml")
    assert [errors(c) for c in checked] == [[]] * 6
    echo = checked[0].resource
    assert echo is not None and echo.version == "v1alpha2"
    rules = echo.spec_as(TCPRouteSpec).rules
    assert [b.weight for b in rules[0].backend_refs] == [75, 25]
    tls = checked[5].resource
    assert tls is not None and tls.spec_as(TLSRouteSpec).hostnames == [
        "*.db.example.com",
        "db.example.com",
    ]


# --- HTTPRoute rules ---------------------------------------------------------------------

BACKEND = {"name": "web", "port": 8080}


def route(*rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"parentRefs": [{"name": "gw"}], "rules": list(rules), **spec}


def rule(**fields: Any) -> dict[str, Any]:
    return {"backendRefs": [BACKEND], **fields}


def match(**fields: Any) -> dict[str, Any]:
    return rule(matches=[fields])


def path(kind: str, value: str) -> dict[str, Any]:
    return match(path={"type": kind, "value": value})


def filters(*items: dict[str, Any], backends: bool = True) -> dict[str, Any]:
    return rule(filters=list(items)) if backends else {"filters": list(items)}


def header_modifier(**fields: Any) -> dict[str, Any]:
    return {"type": "RequestHeaderModifier", "requestHeaderModifier": fields}


def mirror(**fields: Any) -> dict[str, Any]:
    return {"type": "RequestMirror", "requestMirror": {"backendRef": BACKEND, **fields}}


def redirect(**fields: Any) -> dict[str, Any]:
    return {"type": "RequestRedirect", "requestRedirect": fields}


def rewrite(**fields: Any) -> dict[str, Any]:
    return {"type": "URLRewrite", "urlRewrite": fields}


def cors(**fields: Any) -> dict[str, Any]:
    return {"type": "CORS", "cors": fields}


def auth(**fields: Any) -> dict[str, Any]:
    return {
        "type": "ExternalAuth",
        "externalAuth": {"protocol": "HTTP", "backendRef": BACKEND, "http": {}, **fields},
    }


PREFIX = {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}
R0 = "spec.rules[0]"
F0 = f"{R0}.filters[0]"
M0 = f"{R0}.matches[0]"
GW = {"name": "gw"}


def many(count: int, make: Any) -> list[Any]:
    return [make(i) for i in range(count)]


HTTP_CASES = [
    # hostnames, parentRefs, rules
    (route(rule(), hostnames=[f"h{i}.com" for i in range(17)]), "spec.hostnames", "at most 16"),
    (route(rule(), hostnames=["Shop.example.com"]), "spec.hostnames[0]", "not a valid hostname"),
    (route(rule(), hostnames=["*"]), "spec.hostnames[0]", "not a valid hostname"),
    (route(rule(), hostnames=[""]), "spec.hostnames[0]", "empty"),
    (route(rule(), parentRefs=[GW] * 33), "spec.parentRefs", "at most 32"),
    (route(rule(), parentRefs=[{"kind": "Gateway"}]), "spec.parentRefs[0].name", "required"),
    (route(rule(), parentRefs=[{"name": ""}]), "spec.parentRefs[0].name", "empty"),
    (route(rule(), parentRefs=[{"name": "g", "port": 0}]), "spec.parentRefs[0].port", ">= 1"),
    (
        route(rule(), parentRefs=[{"name": "g", "port": 65536}]),
        "spec.parentRefs[0].port",
        "<= 65535",
    ),
    (
        route(rule(), parentRefs=[{"name": "g", "sectionName": "HTTP"}]),
        "spec.parentRefs[0].sectionName",
        "not a valid name",
    ),
    (
        route(rule(), parentRefs=[{"name": "g", "namespace": "a.b"}]),
        "spec.parentRefs[0].namespace",
        "",
    ),
    (route(rule(), parentRefs=[{"name": "g", "kind": ""}]), "spec.parentRefs[0].kind", "empty"),
    (
        route(rule(), parentRefs=[{"name": "g", "group": "a_b"}]),
        "spec.parentRefs[0].group",
        "group",
    ),
    (route(rule(), parentRefs=[GW, GW]), "spec.parentRefs[1]", "must be unique"),
    (
        route(rule(), parentRefs=[GW, {"name": "gw", "group": "gateway.networking.k8s.io"}]),
        "spec.parentRefs[1]",
        "must be unique",
    ),
    (
        route(rule(), parentRefs=[{"name": "gw", "sectionName": "a"}, GW]),
        "spec.parentRefs[1]",
        "must be specified",
    ),
    (
        route(rule(), parentRefs=[{"name": "gw", "sectionName": "a", "port": 80}] * 2),
        "spec.parentRefs[1]",
        "must be unique",
    ),
    (route(rule(), parentRefs=[GW, {"name": "gw", "port": 80}]), "spec.parentRefs[1]", ""),
    (route(), "spec.rules", "at least 1"),
    (route(*[rule()] * 17), "spec.rules", "at most 16"),
    (
        route(rule(matches=[{}] * 64), rule(matches=[{}] * 64), rule()),
        "spec.rules",
        "at most 128, not 129",
    ),
    (route(rule(name="Search")), f"{R0}.name", "not a valid name"),
    (route(rule(name="")), f"{R0}.name", "empty"),
    (route(rule(foo=1)), f"{R0}.foo", "unknown field"),
    (route(rule(), useDefaultGateways="Some"), "spec.useDefaultGateways", "must be one of"),
    # matches
    (route(rule(matches=[{}] * 65)), f"{R0}.matches", "at most 64"),
    (route(path("Exact", "shop")), f"{M0}.path.value", "start with '/'"),
    (route(match(path={"value": "shop"})), f"{M0}.path.value", "start with '/'"),
    (route(path("PathPrefix", "")), f"{M0}.path.value", "start with '/'"),
    (route(path("Exact", "/a//b")), f"{M0}.path.value", "must not contain '//'"),
    (route(path("PathPrefix", "/a/./b")), f"{M0}.path.value", "must not contain '/./'"),
    (route(path("PathPrefix", "/a/../b")), f"{M0}.path.value", "must not contain '/../'"),
    (route(path("PathPrefix", "/a%2fb")), f"{M0}.path.value", "must not contain '%2f'"),
    (route(path("PathPrefix", "/a%2Fb")), f"{M0}.path.value", "must not contain '%2F'"),
    (route(path("PathPrefix", "/a#b")), f"{M0}.path.value", "must not contain '#'"),
    (route(path("PathPrefix", "/a/..")), f"{M0}.path.value", "must not end with '/..'"),
    (route(path("PathPrefix", "/a/.")), f"{M0}.path.value", "must not end with '/.'"),
    (route(path("Exact", "/a b")), f"{M0}.path.value", "valid path characters"),
    (route(path("Exact", "/%zz")), f"{M0}.path.value", "valid path characters"),
    (route(path("Exact", "/" + "a" * 1024)), f"{M0}.path.value", "at most 1024"),
    (route(path("RegularExpression", "/" + "a" * 1024)), f"{M0}.path.value", "at most 1024"),
    (route(path("Glob", "/a")), f"{M0}.path.type", "must be one of"),
    (route(match(path={"type": "Exact", "value": 1})), f"{M0}.path.value", "must be a string"),
    (
        route(match(headers=[{"name": f"h{i}", "value": "v"} for i in range(17)])),
        f"{M0}.headers",
        "at most 16",
    ),
    (
        route(match(headers=[{"name": "h", "value": "a"}, {"name": "h", "value": "b"}])),
        f"{M0}.headers[1].name",
        "duplicate",
    ),
    (
        route(match(headers=[{"name": "bad header", "value": "v"}])),
        f"{M0}.headers[0].name",
        "header name",
    ),
    (
        route(match(headers=[{"name": "h" * 257, "value": "v"}])),
        f"{M0}.headers[0].name",
        "at most 256",
    ),
    (route(match(headers=[{"name": "h", "value": ""}])), f"{M0}.headers[0].value", "empty"),
    (
        route(match(headers=[{"name": "h", "value": "v" * 4097}])),
        f"{M0}.headers[0].value",
        "at most 4096",
    ),
    (route(match(headers=[{"name": "h"}])), f"{M0}.headers[0].value", "required"),
    (
        route(match(headers=[{"name": "h", "value": "v", "type": "Prefix"}])),
        f"{M0}.headers[0].type",
        "one of",
    ),
    (
        route(match(queryParams=[{"name": "q", "value": "a"}, {"name": "q", "value": "b"}])),
        f"{M0}.queryParams[1].name",
        "duplicate",
    ),
    (
        route(match(queryParams=[{"name": "q", "value": "v" * 1025}])),
        f"{M0}.queryParams[0].value",
        "at most 1024",
    ),
    (
        route(match(queryParams=[{"name": "q=", "value": "v"}])),
        f"{M0}.queryParams[0].name",
        "header name",
    ),
    (route(match(method="FETCH")), f"{M0}.method", "must be one of"),
    # filters: each type sets its own field, and some once only
    (route(filters(*[mirror()] * 17)), f"{R0}.filters", "at most 16"),
    (route(filters({"requestHeaderModifier": {}})), f"{F0}.type", "required"),
    (route(filters({"type": "Bogus"})), f"{F0}.type", "must be one of"),
    (
        route(filters({"type": "RequestHeaderModifier"})),
        f"{F0}.requestHeaderModifier",
        "required when type",
    ),
    (
        route(filters({"type": "ResponseHeaderModifier"})),
        f"{F0}.responseHeaderModifier",
        "required",
    ),
    (route(filters({"type": "RequestMirror"})), f"{F0}.requestMirror", "required when type"),
    (
        route(filters({"type": "RequestRedirect"}, backends=False)),
        f"{F0}.requestRedirect",
        "required",
    ),
    (route(filters({"type": "URLRewrite"})), f"{F0}.urlRewrite", "required when type"),
    (route(filters({"type": "ExtensionRef"})), f"{F0}.extensionRef", "required when type"),
    (route(filters({"type": "CORS"})), f"{F0}.cors", "required when type"),
    (route(filters({"type": "ExternalAuth"})), f"{F0}.externalAuth", "required when type"),
    (
        route(filters({**header_modifier(set=[]), "urlRewrite": {}})),
        f"{F0}.urlRewrite",
        "must not be set when type is RequestHeaderModifier",
    ),
    (
        route(filters({**mirror(), "cors": {}})),
        f"{F0}.cors",
        "must not be set when type is RequestMirror",
    ),
    (
        route(filters(header_modifier(), header_modifier())),
        f"{R0}.filters[1].type",
        "cannot be repeated",
    ),
    (
        route(filters(*[{"type": "ResponseHeaderModifier", "responseHeaderModifier": {}}] * 2)),
        f"{R0}.filters[1].type",
        "ResponseHeaderModifier filter cannot be repeated",
    ),
    (route(filters(cors(), cors())), f"{R0}.filters[1].type", "CORS filter cannot be repeated"),
    (
        route(filters(rewrite(), rewrite())),
        f"{R0}.filters[1].type",
        "URLRewrite filter cannot be repeated",
    ),
    (
        route(filters(redirect(), redirect(), backends=False)),
        f"{R0}.filters[1].type",
        "RequestRedirect filter cannot be repeated",
    ),
    (
        route(filters(redirect(), rewrite(), backends=False)),
        f"{R0}.filters[1].type",
        "either a RequestRedirect or a URLRewrite",
    ),
    # header modifiers
    (
        route(filters(header_modifier(set=[{"name": f"h{i}", "value": "v"} for i in range(17)]))),
        f"{F0}.requestHeaderModifier.set",
        "at most 16",
    ),
    (
        route(
            filters(header_modifier(set=[{"name": "h", "value": "a"}, {"name": "h", "value": "b"}]))
        ),
        f"{F0}.requestHeaderModifier.set[1].name",
        "duplicate",
    ),
    (
        route(
            filters(header_modifier(add=[{"name": "h", "value": "a"}, {"name": "h", "value": "b"}]))
        ),
        f"{F0}.requestHeaderModifier.add[1].name",
        "duplicate",
    ),
    (
        route(filters(header_modifier(add=[{"name": "a:b", "value": "v"}]))),
        f"{F0}.requestHeaderModifier.add[0].name",
        "header name",
    ),
    (
        route(filters(header_modifier(add=[{"name": "h", "value": ""}]))),
        f"{F0}.requestHeaderModifier.add[0].value",
        "empty",
    ),
    (
        route(filters(header_modifier(set=[{"name": "h", "value": "v" * 4097}]))),
        f"{F0}.requestHeaderModifier.set[0].value",
        "at most 4096",
    ),
    (
        route(filters(header_modifier(set=[{"value": "v"}]))),
        f"{F0}.requestHeaderModifier.set[0].name",
        "required",
    ),
    (
        route(filters(header_modifier(remove=[f"h{i}" for i in range(17)]))),
        f"{F0}.requestHeaderModifier.remove",
        "at most 16",
    ),
    (
        route(filters(header_modifier(remove=["foo", "foo"]))),
        f"{F0}.requestHeaderModifier.remove[1]",
        "duplicate",
    ),
    # request mirror
    (
        route(filters({"type": "RequestMirror", "requestMirror": {}})),
        f"{F0}.requestMirror.backendRef",
        "required",
    ),
    (
        route(filters(mirror(backendRef={"name": "shadow"}))),
        f"{F0}.requestMirror.backendRef.port",
        "required when the backend is a Service",
    ),
    (route(filters(mirror(percent=101))), f"{F0}.requestMirror.percent", "<= 100"),
    (route(filters(mirror(percent=-1))), f"{F0}.requestMirror.percent", ">= 0"),
    (
        route(filters(mirror(percent=5, fraction={"numerator": 1}))),
        f"{F0}.requestMirror.fraction",
        "only one of percent or fraction",
    ),
    (
        route(filters(mirror(fraction={"numerator": 3, "denominator": 2}))),
        f"{F0}.requestMirror.fraction.numerator",
        "less than or equal to denominator",
    ),
    (
        route(filters(mirror(fraction={"numerator": 101}))),
        f"{F0}.requestMirror.fraction.numerator",
        "denominator (100)",
    ),
    (
        route(filters(mirror(fraction={"numerator": -1}))),
        f"{F0}.requestMirror.fraction.numerator",
        ">= 0",
    ),
    (
        route(filters(mirror(fraction={"numerator": 0, "denominator": 0}))),
        f"{F0}.requestMirror.fraction.denominator",
        ">= 1",
    ),
    (
        route(filters(mirror(fraction={"denominator": 10}))),
        f"{F0}.requestMirror.fraction.numerator",
        "required",
    ),
    (
        route(filters(mirror(fraction={"numerator": 1, "denominator": 2**31}))),
        f"{F0}.requestMirror.fraction.denominator",
        "<= 2147483647",
    ),
    # redirect and rewrite
    (
        route(filters(redirect(scheme="ftp"), backends=False)),
        f"{F0}.requestRedirect.scheme",
        "one of",
    ),
    (
        route(filters(redirect(statusCode=304), backends=False)),
        f"{F0}.requestRedirect.statusCode",
        "one of",
    ),
    (
        route(filters(redirect(statusCode="301"), backends=False)),
        f"{F0}.requestRedirect.statusCode",
        "",
    ),
    (route(filters(redirect(port=0), backends=False)), f"{F0}.requestRedirect.port", ">= 1"),
    (
        route(filters(redirect(hostname="*.example.com"), backends=False)),
        f"{F0}.requestRedirect.hostname",
        "not a valid hostname",
    ),
    (
        route(filters(redirect(path={"type": "ReplaceFullPath"}), backends=False)),
        f"{F0}.requestRedirect.path.replaceFullPath",
        "required when type is ReplaceFullPath",
    ),
    (
        route(filters(redirect(path={"type": "ReplacePrefixMatch"}), backends=False)),
        f"{F0}.requestRedirect.path.replacePrefixMatch",
        "required when type is ReplacePrefixMatch",
    ),
    (
        route(
            filters(
                redirect(
                    path={
                        "type": "ReplaceFullPath",
                        "replaceFullPath": "/",
                        "replacePrefixMatch": "/",
                    }
                ),
                backends=False,
            )
        ),
        f"{F0}.requestRedirect.path.replacePrefixMatch",
        "must not be set when type is ReplaceFullPath",
    ),
    (
        route(filters(redirect(path={"replaceFullPath": "/"}), backends=False)),
        f"{F0}.requestRedirect.path.type",
        "required",
    ),
    (
        route(filters(rewrite(path={"type": "ReplaceFullPath", "replaceFullPath": "/" * 1025}))),
        f"{F0}.urlRewrite.path.replaceFullPath",
        "at most 1024",
    ),
    (
        route(
            filters(
                rewrite(
                    path={
                        "type": "ReplacePrefixMatch",
                        "replaceFullPath": "/",
                        "replacePrefixMatch": "/",
                    }
                )
            )
        ),
        f"{F0}.urlRewrite.path.replaceFullPath",
        "must not be set when type is ReplacePrefixMatch",
    ),
    (route(filters(rewrite(hostname="API.internal"))), f"{F0}.urlRewrite.hostname", "hostname"),
    (route(filters(redirect())), f"{F0}", "must not be used together with backendRefs"),
    (
        route(
            rule(
                matches=[{"path": {"value": "/a"}}, {"path": {"value": "/b"}}],
                filters=[rewrite(path=PREFIX)],
            )
        ),
        f"{R0}.matches",
        "when using a URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match",
    ),
    (
        route(
            {
                "matches": [{"path": {"type": "Exact", "value": "/a"}}],
                "filters": [redirect(path=PREFIX)],
            }
        ),
        f"{R0}.matches",
        "RequestRedirect filter with path.replacePrefixMatch",
    ),
    (
        route(rule(matches=[], filters=[rewrite(path=PREFIX)])),
        f"{R0}.matches",
        "exactly one PathPrefix match",
    ),
    (
        route(
            {
                "matches": [{"path": {"value": "/a"}}, {"path": {"value": "/b"}}],
                "backendRefs": [{**BACKEND, "filters": [rewrite(path=PREFIX)]}],
            }
        ),
        f"{R0}.matches",
        "within backendRefs, when using a URLRewrite filter",
    ),
    # CORS
    (
        route(filters(cors(allowOrigins=["ftp://a.com"]))),
        f"{F0}.cors.allowOrigins[0]",
        "valid origin",
    ),
    (
        route(filters(cors(allowOrigins=["https://a.com/path"]))),
        f"{F0}.cors.allowOrigins[0]",
        "valid origin",
    ),
    (
        route(filters(cors(allowOrigins=["*", "https://a.com"]))),
        f"{F0}.cors.allowOrigins",
        "'*' cannot be combined",
    ),
    (
        route(filters(cors(allowOrigins=["https://a.com"] * 2))),
        f"{F0}.cors.allowOrigins[1]",
        "duplicate",
    ),
    (
        route(filters(cors(allowOrigins=[f"https://a{i}.com" for i in range(65)]))),
        f"{F0}.cors.allowOrigins",
        "at most 64",
    ),
    (
        route(filters(cors(allowOrigins=["https://" + "a" * 246]))),
        f"{F0}.cors.allowOrigins[0]",
        "at most 253",
    ),
    (
        route(filters(cors(allowMethods=["GET", "*"]))),
        f"{F0}.cors.allowMethods",
        "'*' cannot be combined",
    ),
    (route(filters(cors(allowMethods=["FETCH"]))), f"{F0}.cors.allowMethods[0]", "must be one of"),
    (route(filters(cors(allowMethods=["GET", "GET"]))), f"{F0}.cors.allowMethods[1]", "duplicate"),
    (
        route(
            filters(
                cors(
                    allowMethods=[
                        "GET",
                        "HEAD",
                        "POST",
                        "PUT",
                        "DELETE",
                        "CONNECT",
                        "OPTIONS",
                        "TRACE",
                        "PATCH",
                        "*",
                    ]
                )
            )
        ),
        f"{F0}.cors.allowMethods",
        "at most 9",
    ),
    (
        route(filters(cors(allowHeaders=["*", "X-A"]))),
        f"{F0}.cors.allowHeaders",
        "'*' cannot be combined",
    ),
    (
        route(filters(cors(allowHeaders=["bad header"]))),
        f"{F0}.cors.allowHeaders[0]",
        "header name",
    ),
    (
        route(filters(cors(exposeHeaders=["X-A", "X-A"]))),
        f"{F0}.cors.exposeHeaders[1]",
        "duplicate",
    ),
    (route(filters(cors(exposeHeaders=["x" * 257]))), f"{F0}.cors.exposeHeaders[0]", "at most 256"),
    (route(filters(cors(maxAge=0))), f"{F0}.cors.maxAge", ">= 1"),
    (route(filters(cors(allowCredentials="yes"))), f"{F0}.cors.allowCredentials", "true or false"),
    # extensionRef, externalAuth (experimental channel)
    (
        route(filters({"type": "ExtensionRef", "extensionRef": {"kind": "K", "name": "n"}})),
        f"{F0}.extensionRef.group",
        "required",
    ),
    (
        route(
            filters(
                {"type": "ExtensionRef", "extensionRef": {"group": "", "kind": "K", "name": ""}}
            )
        ),
        f"{F0}.extensionRef.name",
        "empty",
    ),
    (route(filters(auth(http=None))), f"{F0}.externalAuth.http", "required when protocol is HTTP"),
    (
        route(filters(auth(protocol="GRPC"))),
        f"{F0}.externalAuth.grpc",
        "required when protocol is GRPC",
    ),
    (
        route(filters(auth(protocol="GRPC", grpc={}))),
        f"{F0}.externalAuth.http",
        "must not be set when protocol is GRPC",
    ),
    (
        route(filters(auth(grpc={}))),
        f"{F0}.externalAuth.grpc",
        "must not be set when protocol is HTTP",
    ),
    (route(filters(auth(protocol="SOAP"))), f"{F0}.externalAuth.protocol", "one of"),
    (
        route(filters(auth(http={"path": "/[]"}))),
        f"{F0}.externalAuth.http.path",
        "valid path characters",
    ),
    (
        route(filters(auth(http={"path": "/" * 1025}))),
        f"{F0}.externalAuth.http.path",
        "at most 1024",
    ),
    (
        route(filters(auth(http={"allowedHeaders": [f"h{i}" for i in range(65)]}))),
        f"{F0}.externalAuth.http.allowedHeaders",
        "at most 64",
    ),
    (
        route(filters(auth(forwardBody={"maxSize": -1}))),
        f"{F0}.externalAuth.forwardBody.maxSize",
        ">= 0",
    ),
    (
        route(filters(auth(backendRef={"name": "authz"}))),
        f"{F0}.externalAuth.backendRef.port",
        "required",
    ),
    (
        route(filters({"type": "ExternalAuth", "externalAuth": {"backendRef": BACKEND}})),
        f"{F0}.externalAuth.protocol",
        "required",
    ),
    # backendRefs
    (route({"backendRefs": [BACKEND] * 17}), f"{R0}.backendRefs", "at most 16"),
    (
        route({"backendRefs": [{"name": "web"}]}),
        f"{R0}.backendRefs[0].port",
        "required when the backend is a Service",
    ),
    (
        route({"backendRefs": [{"name": "web", "kind": "Service", "group": ""}]}),
        f"{R0}.backendRefs[0].port",
        "Service",
    ),
    (route({"backendRefs": [{**BACKEND, "weight": -1}]}), f"{R0}.backendRefs[0].weight", ">= 0"),
    (
        route({"backendRefs": [{**BACKEND, "weight": 1000001}]}),
        f"{R0}.backendRefs[0].weight",
        "<= 1000000",
    ),
    (route({"backendRefs": [{**BACKEND, "port": 70000}]}), f"{R0}.backendRefs[0].port", "<= 65535"),
    (route({"backendRefs": [{"port": 80}]}), f"{R0}.backendRefs[0].name", "required"),
    (
        route({"backendRefs": [{**BACKEND, "name": "n" * 254}]}),
        f"{R0}.backendRefs[0].name",
        "at most 253",
    ),
    (
        route({"backendRefs": [{**BACKEND, "namespace": "Shop"}]}),
        f"{R0}.backendRefs[0].namespace",
        "namespace",
    ),
    (
        route({"backendRefs": [{**BACKEND, "kind": "Service!"}]}),
        f"{R0}.backendRefs[0].kind",
        "kind",
    ),
    (
        route({"backendRefs": [{**BACKEND, "filters": [redirect(), rewrite()]}]}),
        f"{R0}.backendRefs[0].filters[1].type",
        "either a RequestRedirect or a URLRewrite",
    ),
    (
        route({"backendRefs": [{**BACKEND, "filters": [{"type": "CORS"}]}]}),
        f"{R0}.backendRefs[0].filters[0].cors",
        "required when type is CORS",
    ),
    (
        route({"backendRefs": [{**BACKEND, "filters": [mirror(percent=200)]}]}),
        f"{R0}.backendRefs[0].filters[0].requestMirror.percent",
        "<= 100",
    ),
    # timeouts, retry, sessionPersistence
    (route(rule(timeouts={"request": "10"})), f"{R0}.timeouts.request", "invalid duration"),
    (route(rule(timeouts={"request": "1.5s"})), f"{R0}.timeouts.request", "invalid duration"),
    (
        route(rule(timeouts={"backendRequest": "100000s"})),
        f"{R0}.timeouts.backendRequest",
        "invalid duration",
    ),
    (
        route(rule(timeouts={"request": "1h1m1s1ms1s"})),
        f"{R0}.timeouts.request",
        "invalid duration",
    ),
    (
        route(rule(timeouts={"request": "10s", "backendRequest": "10001ms"})),
        f"{R0}.timeouts.backendRequest",
        "cannot be longer than request timeout",
    ),
    (route(rule(timeouts={"requests": "1s"})), f"{R0}.timeouts.requests", "unknown field"),
    (route(rule(retry={"attempts": 0})), f"{R0}.retry.attempts", ">= 1"),
    (route(rule(retry={"codes": [399]})), f"{R0}.retry.codes[0]", ">= 400"),
    (route(rule(retry={"codes": [600]})), f"{R0}.retry.codes[0]", "<= 599"),
    (route(rule(retry={"codes": [503, 503]})), f"{R0}.retry.codes[1]", "duplicate"),
    (route(rule(retry={"backoff": "1 s"})), f"{R0}.retry.backoff", "invalid duration"),
    (
        route(rule(sessionPersistence={})),
        f"{R0}.sessionPersistence.cookie",
        "required when type is Cookie",
    ),
    (
        route(rule(sessionPersistence={"type": "Header"})),
        f"{R0}.sessionPersistence.header",
        "required",
    ),
    (
        route(rule(sessionPersistence={"type": "Header", "header": {"name": "h"}, "cookie": {}})),
        f"{R0}.sessionPersistence.cookie",
        "must not be set when type is Header",
    ),
    (
        route(rule(sessionPersistence={"cookie": {}, "header": {"name": "h"}})),
        f"{R0}.sessionPersistence.header",
        "must not be set when type is Cookie",
    ),
    (
        route(rule(sessionPersistence={"cookie": {"lifetimeType": "Permanent"}})),
        f"{R0}.sessionPersistence.absoluteTimeout",
        "required when cookie lifetimeType is Permanent",
    ),
    (
        route(rule(sessionPersistence={"cookie": {"name": "a=b"}})),
        f"{R0}.sessionPersistence.cookie.name",
        "header name",
    ),
    (
        route(rule(sessionPersistence={"cookie": {"path": "/" * 1025}})),
        f"{R0}.sessionPersistence.cookie.path",
        "at most 1024",
    ),
    (
        route(rule(sessionPersistence={"absoluteTimeout": "1d", "cookie": {}})),
        f"{R0}.sessionPersistence.absoluteTimeout",
        "invalid duration",
    ),
    (
        route(rule(sessionPersistence={"type": "Header", "header": {}})),
        f"{R0}.sessionPersistence.header.name",
        "required",
    ),
    (
        route(rule(sessionPersistence={"type": "Sticky"})),
        f"{R0}.sessionPersistence.type",
        "must be one of",
    ),
]


@pytest.mark.parametrize(("spec", "path", "fragment"), HTTP_CASES)
def test_http_route_rules(spec: dict[str, Any], path: str, fragment: str) -> None:
    assert_error(check("HTTPRoute", spec), path, fragment)


@pytest.mark.parametrize(
    "spec",
    [
        route(
            rule(),
            hostnames=[f"h{i}.com" for i in range(16)],
            parentRefs=[{"name": f"g{i}"} for i in range(32)],
        ),
        route(*[rule()] * 16),
        route(rule(matches=[{}] * 64), rule(matches=[{}] * 64)),
        route(rule(matches=[{}] * 64), rule(matches=[{}] * 63), rule()),
        route({"backendRefs": [{**BACKEND, "weight": 1000000}] * 16}),
        route(path("Exact", "/" + "a" * 1023), path("RegularExpression", "/a//b/../#")),
        route(path("PathPrefix", "/a%20b/~user/x.y/@!$&'()*+,;=:")),
        route(match(headers=[{"name": f"h{i}", "value": "v" * 4096} for i in range(16)])),
        route(match(headers=[{"name": "h", "value": "a"}, {"name": "H", "value": "b"}])),
        # Several parents, told apart by sectionName, or by port (the experimental rule).
        route(
            rule(),
            parentRefs=[{"name": "gw", "sectionName": "a"}, {"name": "gw", "sectionName": "b"}],
        ),
        route(rule(), parentRefs=[GW, {"name": "gw", "namespace": "other"}]),
        route(rule(), parentRefs=[GW, {"name": "gw", "kind": "ListenerSet"}]),
        route(
            rule(),
            parentRefs=[
                {"group": "", "kind": "Service", "name": "cart", "port": 80},
                {"group": "", "kind": "Service", "name": "cart", "port": 8080},
            ],
        ),
        # replacePrefixMatch with the default match, or a match whose path is the default
        route(filters(rewrite(path=PREFIX))),
        route(rule(matches=[{"method": "GET"}], filters=[rewrite(path=PREFIX)])),
        route(rule(matches=[{"path": {"value": "/api"}}], filters=[rewrite(path=PREFIX)])),
        # Two backendRefs rewriting the prefix: the CRD's rule asks for exactly one such.
        route(
            {
                "matches": [{"path": {"value": "/a"}}, {"path": {"value": "/b"}}],
                "backendRefs": [{**BACKEND, "filters": [rewrite(path=PREFIX)]}] * 2,
            }
        ),
        route(filters(*[mirror()] * 16)),
        route(
            filters(
                header_modifier(
                    set=[{"name": f"h{i}", "value": "v"} for i in range(16)],
                    remove=[f"r{i}" for i in range(16)],
                )
            )
        ),
        route(filters(mirror(fraction={"numerator": 100}), mirror(percent=100), mirror(percent=0))),
        route(
            filters(
                cors(
                    allowOrigins=["*"],
                    allowMethods=["*"],
                    allowHeaders=["*"],
                    exposeHeaders=["*", "X-A"],
                )
            )
        ),
        route(filters(cors(allowOrigins=[f"https://a{i}.com" for i in range(64)]))),
        route(
            filters(
                redirect(path={"type": "ReplaceFullPath", "replaceFullPath": ""}), backends=False
            )
        ),
        route(rule(timeouts={"request": "10s", "backendRequest": "10000ms"})),
        route(rule(timeouts={"request": "99999h99999m99999s99999ms"})),
        route(rule(retry={"codes": [400, 599], "attempts": 1})),
        route(rule(sessionPersistence={"cookie": {}})),
    ],
)
def test_http_route_boundaries_are_accepted(spec: dict[str, Any]) -> None:
    assert_ok(check("HTTPRoute", spec))


def test_http_route_reports_every_error() -> None:
    spec = route(
        rule(
            matches=[{"path": {"type": "Exact", "value": "api//x"}}],
            filters=[{"type": "URLRewrite"}, header_modifier(add=[{"name": "h", "value": ""}])],
        ),
        hostnames=["Bad"],
    )
    assert errors(check("HTTPRoute", spec)) == [
        "spec.hostnames[0]: 'Bad' is not a valid hostname (lower-case DNS labels, optionally "
        "'*.' first)",
        "spec.rules[0].matches[0].path.value: must be an absolute path and start with '/' "
        "when type is Exact or PathPrefix",
        "spec.rules[0].matches[0].path.value: must not contain '//' when type is Exact or "
        "PathPrefix",
        "spec.rules[0].filters[0].urlRewrite: required when type is URLRewrite",
        "spec.rules[0].filters[1].requestHeaderModifier.add[0].value: must not be empty",
    ]


def test_http_route_v1beta1_has_the_same_rules() -> None:
    assert_error(
        check("HTTPRoute", route(path("Exact", "x")), version="v1beta1"),
        f"{M0}.path.value",
        "start with '/'",
    )


# --- GRPCRoute rules -----------------------------------------------------------------------


def grpc(*rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"parentRefs": [{"name": "gw"}], "rules": list(rules), **spec}


def grpc_method(**method: Any) -> dict[str, Any]:
    return rule(matches=[{"method": method}])


GRPC_CASES = [
    (grpc(rule(), hostnames=["*.Example.com"]), "spec.hostnames[0]", "not a valid hostname"),
    (grpc(rule(), parentRefs=[GW, GW]), "spec.parentRefs[1]", "must be unique"),
    (grpc(*[rule()] * 17), "spec.rules", "at most 16"),
    (grpc(rule(matches=[{}] * 65)), f"{R0}.matches", "at most 64"),
    (
        grpc(rule(matches=[{}] * 64), rule(matches=[{}] * 64), rule(matches=[{}])),
        "spec.rules",
        "at most 128, not 129",
    ),
    (grpc(rule(name="Health")), f"{R0}.name", "not a valid name"),
    (grpc(grpc_method()), f"{M0}.method", "one or both of 'service' or 'method'"),
    (grpc(grpc_method(type="Exact")), f"{M0}.method", "one or both"),
    (grpc(grpc_method(service="helloworld/Greeter")), f"{M0}.method.service", "gRPC service name"),
    (grpc(grpc_method(service="1greeter")), f"{M0}.method.service", "gRPC service name"),
    (grpc(grpc_method(method="Say.Hello")), f"{M0}.method.method", "gRPC method name"),
    (grpc(grpc_method(type="Exact", method="")), f"{M0}.method.method", "gRPC method name"),
    (grpc(grpc_method(service="s" * 1025)), f"{M0}.method.service", "at most 1024"),
    (
        grpc(grpc_method(type="RegularExpression", method="m" * 1025)),
        f"{M0}.method.method",
        "at most 1024",
    ),
    (grpc(grpc_method(type="Prefix", method="m")), f"{M0}.method.type", "must be one of"),
    (
        grpc(
            rule(matches=[{"headers": [{"name": "h", "value": "a"}, {"name": "h", "value": "b"}]}])
        ),
        f"{M0}.headers[1].name",
        "duplicate",
    ),
    (
        grpc(rule(matches=[{"headers": [{"name": f"h{i}", "value": "v"} for i in range(17)]}])),
        f"{M0}.headers",
        "at most 16",
    ),
    (
        grpc(rule(matches=[{"headers": [{"name": "h:", "value": "v"}]}])),
        f"{M0}.headers[0].name",
        "header name",
    ),
    (
        grpc(rule(matches=[{"headers": [{"name": "h", "value": ""}]}])),
        f"{M0}.headers[0].value",
        "empty",
    ),
    (
        grpc(rule(matches=[{"headers": [{"name": "h", "value": "v" * 4097}]}])),
        f"{M0}.headers[0].value",
        "at most 4096",
    ),
    (grpc(rule(matches=[{"path": {"value": "/"}}])), f"{M0}.path", "unknown field"),
    (grpc(filters(rewrite())), f"{F0}.type", "must be one of"),
    (grpc(filters(cors())), f"{F0}.type", "must be one of"),
    (
        grpc(filters(header_modifier(), header_modifier())),
        f"{R0}.filters[1].type",
        "cannot be repeated",
    ),
    (grpc(filters({"type": "RequestMirror"})), f"{F0}.requestMirror", "required when type"),
    (
        grpc(filters({**mirror(), "extensionRef": {"group": "", "kind": "K", "name": "n"}})),
        f"{F0}.extensionRef",
        "must not be set",
    ),
    (
        grpc(filters(mirror(percent=5, fraction={"numerator": 1}))),
        f"{F0}.requestMirror.fraction",
        "only one of",
    ),
    (grpc(filters(*[mirror()] * 17)), f"{R0}.filters", "at most 16"),
    (
        grpc({"backendRefs": [{"name": "greeter"}]}),
        f"{R0}.backendRefs[0].port",
        "required when the backend is a Service",
    ),
    (grpc({"backendRefs": [BACKEND] * 17}), f"{R0}.backendRefs", "at most 16"),
    (
        grpc(
            {
                "backendRefs": [
                    {
                        **BACKEND,
                        "filters": [
                            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {}}
                        ]
                        * 2,
                    }
                ]
            }
        ),
        f"{R0}.backendRefs[0].filters[1].type",
        "cannot be repeated",
    ),
    (grpc(rule(timeouts={"request": "1s"})), f"{R0}.timeouts", "unknown field"),
    (
        grpc(rule(sessionPersistence={"type": "Header"})),
        f"{R0}.sessionPersistence.header",
        "required",
    ),
]


@pytest.mark.parametrize(("spec", "path", "fragment"), GRPC_CASES)
def test_grpc_route_rules(spec: dict[str, Any], path: str, fragment: str) -> None:
    assert_error(check("GRPCRoute", spec), path, fragment)


def test_grpc_route_boundaries_are_accepted() -> None:
    # A rule without matches counts none towards the 128 (HTTPRoute's counts its default).
    spec = grpc(rule(matches=[{}] * 64), rule(matches=[{}] * 64), rule())
    spec["rules"][0]["matches"] = [{"method": {"service": "a.B", "method": "C"}}] * 64
    assert_ok(check("GRPCRoute", spec))
    assert_ok(check("GRPCRoute", grpc(grpc_method(service=".Pkg_1.svc", method="_m1"))))


# --- TCPRoute and TLSRoute ------------------------------------------------------------------


def l4(*rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"parentRefs": [{"name": "gw"}], "rules": list(rules), **spec}


L4_CASES = [
    ({"parentRefs": [GW]}, "spec.rules", "required"),
    (l4(), "spec.rules", "at least 1"),
    (l4(*[{"backendRefs": [BACKEND]}] * 17), "spec.rules", "at most 16"),
    (l4({}), f"{R0}.backendRefs", "required"),
    (l4({"backendRefs": []}), f"{R0}.backendRefs", "at least 1"),
    (l4({"backendRefs": [BACKEND] * 17}), f"{R0}.backendRefs", "at most 16"),
    (
        l4({"backendRefs": [{"name": "db"}]}),
        f"{R0}.backendRefs[0].port",
        "required when the backend is a Service",
    ),
    (
        l4({"backendRefs": [{**BACKEND, "weight": 1000001}]}),
        f"{R0}.backendRefs[0].weight",
        "<= 1000000",
    ),
    (
        l4({"backendRefs": [{**BACKEND, "filters": []}]}),
        f"{R0}.backendRefs[0].filters",
        "unknown field",
    ),
    (l4({"backendRefs": [BACKEND], "matches": []}), f"{R0}.matches", "unknown field"),
    (l4({"backendRefs": [BACKEND], "name": "DB"}), f"{R0}.name", "not a valid name"),
    (
        l4({"backendRefs": [BACKEND], "name": "db"}, {"backendRefs": [BACKEND], "name": "db"}),
        "spec.rules[1].name",
        "rule name must be unique",
    ),
    (l4({"backendRefs": [BACKEND]}, parentRefs=[GW, GW]), "spec.parentRefs[1]", "must be unique"),
    (l4({"backendRefs": [BACKEND]}, useDefaultGateways="Yes"), "spec.useDefaultGateways", "one of"),
]


@pytest.mark.parametrize("kind", ["TCPRoute", "TLSRoute"])
@pytest.mark.parametrize(("spec", "path", "fragment"), L4_CASES)
def test_tcp_and_tls_route_rules(kind: str, spec: dict[str, Any], path: str, fragment: str) -> None:
    # v1alpha2: the version whose limits are the largest (16 rules, no hostnames needed).
    assert_error(check(kind, spec, version="v1alpha2"), path, fragment)


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        (
            l4({"backendRefs": [BACKEND]}, hostnames=["Db.example.com"]),
            "spec.hostnames[0]",
            "hostname",
        ),
        (l4({"backendRefs": [BACKEND]}, hostnames=["http://a<"]), "spec.hostnames[0]", "hostname"),
        (
            l4({"backendRefs": [BACKEND]}, hostnames=[f"h{i}.com" for i in range(1025)]),
            "spec.hostnames",
            "at most 1024",
        ),
    ],
)
def test_tls_route_hostnames(spec: dict[str, Any], path: str, fragment: str) -> None:
    assert_error(check("TLSRoute", spec), path, fragment)


def test_tcp_route_versions() -> None:
    two = l4({"backendRefs": [BACKEND], "name": "a"}, {"backendRefs": [BACKEND], "name": "b"})
    assert validate_as("TCPRoute", two, "v1alpha2") == []
    assert validate_as("TCPRoute", two, "v1") == ["spec.rules: must have at most 1 items, not 2"]
    assert validate_as("TCPRoute", l4({"backendRefs": [BACKEND]}), "v1") == []
    # Through check_document, as Galley validates: the apiVersion decides.
    assert_ok(check("TCPRoute", two, version="v1alpha2"))
    assert_error(check("TCPRoute", two, version="v1"), "spec.rules", "at most 1")


def test_parent_refs_of_the_alpha_versions_take_the_experimental_rule() -> None:
    section_or_port = l4(
        {"backendRefs": [BACKEND]},
        parentRefs=[
            {"name": "gw", "sectionName": "a"},
            {"name": "gw", "sectionName": "b", "port": 80},
        ],
    )
    assert validate_as("TCPRoute", section_or_port, "v1") == []
    assert validate_as("TCPRoute", section_or_port, "v1alpha2") == [
        "spec.parentRefs[1]: sectionName or port must be specified when parentRefs includes 2 "
        "or more references to the same parent (parentRefs[0])"
    ]
    by_port = l4(
        {"backendRefs": [BACKEND]},
        parentRefs=[
            {"name": "gw", "sectionName": "a", "port": 80},
            {"name": "gw", "sectionName": "a", "port": 81},
        ],
    )
    assert validate_as("TLSRoute", {**by_port, "hostnames": ["a.com"]}, "v1alpha3") == []
    assert validate_as("TLSRoute", by_port, "v1alpha2") == []
    assert validate_as("TLSRoute", {**by_port, "hostnames": ["a.com"]}, "v1") == []
    assert_ok(check("TCPRoute", by_port))


def test_tls_route_versions() -> None:
    bare = l4({"backendRefs": [BACKEND]})
    assert validate_as("TLSRoute", bare, "v1alpha2") == []
    for version in ("v1", "v1alpha3"):
        assert validate_as("TLSRoute", bare, version) == [
            f"spec.hostnames: required field is missing (in {version})"
        ]
        assert validate_as("TLSRoute", {**bare, "hostnames": []}, version) == [
            "spec.hostnames: must have at least 1 item, not 0"
        ]
        assert validate_as("TLSRoute", {**bare, "hostnames": ["10.0.0.1"]}, version) == [
            "spec.hostnames[0]: hostnames cannot be an IP address ('10.0.0.1')"
        ]
        two_rules = {**bare, "hostnames": ["a.com"], "rules": bare["rules"] * 2}
        assert validate_as("TLSRoute", two_rules, version) == [
            "spec.rules: must have at most 1 items, not 2"
        ]
    assert validate_as("TLSRoute", {**bare, "hostnames": ["10.0.0.1"]}, "v1alpha2") == []
    # Through check_document, as Galley validates: the apiVersion decides.
    assert_ok(check("TLSRoute", bare, version="v1alpha2"))
    assert_error(check("TLSRoute", bare, version="v1"), "spec.hostnames", "required")
    assert_ok(check("TLSRoute", {**bare, "rules": bare["rules"] * 16}, version="v1alpha2"))


def test_route_models_are_frozen_and_dump_as_written() -> None:
    spec = yaml.safe_load(
        """
parentRefs: [{name: gw, sectionName: http}]
rules:
- matches: [{path: {type: PathPrefix, value: /a}, queryParams: [{name: q, value: v}]}]
  backendRefs: [{name: web, port: 8080}]
"""
    )
    checked = check("HTTPRoute", copy.deepcopy(spec))
    assert checked.resource is not None
    assert checked.resource.spec.dump() == spec
    model = checked.resource.spec_as(HTTPRouteSpec)
    with pytest.raises(ValueError, match="frozen"):
        model.hostnames = ["a.com"]
