"""VirtualService: schema and semantic rules, each error at its field path."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.resources import check_document
from tests.api.helpers import check, errors, other_warnings, warnings

BOOKINFO = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "istio"
BOOKINFO_VS = [
    (path, index, doc)
    for path in sorted((BOOKINFO / "bookinfo-networking").glob("*.yaml"))
    for index, doc in enumerate(yaml.safe_load_all(path.read_text()))
    if doc and doc.get("kind") == "VirtualService"
]

DEST = {"destination": {"host": "reviews"}}


def vs(**spec: Any) -> dict[str, Any]:
    """A valid mesh VirtualService for `reviews`, with `spec` fields replaced."""
    base: dict[str, Any] = {"hosts": ["reviews"], "http": [{"route": [copy.deepcopy(DEST)]}]}
    base.update(spec)
    return base


def http(**rule: Any) -> dict[str, Any]:
    """A VirtualService with one HTTP rule (a route to reviews unless `route` is given)."""
    return vs(http=[{"route": [copy.deepcopy(DEST)], **rule}])


def http_only(**rule: Any) -> dict[str, Any]:
    """One HTTP rule with exactly the given fields (no default route)."""
    return vs(http=[rule])


def tls(*routes: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"hosts": ["*.bookinfo.com"], "gateways": ["ns/gw"], "tls": list(routes), **spec}


def sni_route(*sni: str, **match: Any) -> dict[str, Any]:
    return {"match": [{"sniHosts": list(sni), **match}], "route": [copy.deepcopy(DEST)]}


@pytest.mark.skipif(not BOOKINFO_VS, reason="shared/corpus is not beside the repo")
@pytest.mark.parametrize(
    ("path", "index", "doc"), BOOKINFO_VS, ids=lambda v: v.name if isinstance(v, Path) else ""
)
def test_bookinfo_virtual_services_are_accepted(path: Path, index: int, doc: Any) -> None:
    result = check_document(doc, f"{path.name}:{index}")
    assert result.ok, errors(result)


FULL: dict[str, Any] = {
    "hosts": ["reviews.prod.svc.cluster.local", "*.bookinfo.com", "10.0.0.1"],
    "gateways": ["istio-system/ingress", "mesh"],
    "exportTo": [".", "other"],
    "http": [
        {
            "name": "api",
            "match": [
                {
                    "name": "v2",
                    "uri": {"prefix": "/api/v2"},
                    "scheme": {"exact": "https"},
                    "method": {"regex": "GET|POST"},
                    "authority": {"prefix": "reviews"},
                    "headers": {"end-user": {"exact": "jason"}, "x-present": {}},
                    "port": 9080,
                    "sourceLabels": {"app": "productpage", "version": "v1"},
                    "gateways": ["mesh"],
                    "queryParams": {"debug": {"exact": "1"}},
                    "ignoreUriCase": True,
                    "withoutHeaders": {"x-skip": {"regex": "*"}},
                    "sourceNamespace": "frontend",
                    "statPrefix": "reviews_api",
                }
            ],
            "route": [
                {
                    "destination": {
                        "host": "reviews.prod.svc.cluster.local",
                        "subset": "v2",
                        "port": {"number": 9080},
                    },
                    "weight": 75,
                    "headers": {"response": {"remove": ["x-internal"]}},
                },
                {"destination": {"host": "reviews", "subset": "v1"}, "weight": 25},
            ],
            "rewrite": {"uriRegexRewrite": {"match": "^/api/v2/(.*)", "rewrite": "/\\1"}},
            "timeout": "10s",
            "retries": {
                "attempts": 3,
                "perTryTimeout": "2s",
                "retryOn": "gateway-error,connect-failure,503",
                "retryRemoteLocalities": True,
                "retryIgnorePreviousHosts": True,
                "backoff": "25ms",
            },
            "fault": {
                "delay": {"fixedDelay": "5s", "percentage": {"value": 0.1}},
                "abort": {"httpStatus": 503, "percentage": {"value": 1}},
            },
            "mirrors": [
                {"destination": {"host": "reviews-shadow"}, "percentage": {"value": 50}},
            ],
            "corsPolicy": {
                "allowOrigins": [{"exact": "https://example.com"}, {"regex": ".*\\.example\\.org"}],
                "allowMethods": ["GET", "POST"],
                "allowHeaders": ["x-foo", "*"],
                "exposeHeaders": ["x-bar"],
                "maxAge": "24h",
                "allowCredentials": False,
                "unmatchedPreflights": "IGNORE",
            },
            "headers": {
                "request": {"set": {"x-user": "%DOWNSTREAM_REMOTE_ADDRESS%"}, "add": {"host": "a"}},
                "response": {"add": {"x-served-by": "meshpy"}, "remove": ["server"]},
            },
        },
        {
            "match": [{"uri": {"exact": "/old"}}],
            "redirect": {"uri": "/new", "authority": "new.example.com", "redirectCode": 308},
        },
        {
            "match": [{"uri": {"prefix": "/moved/"}}],
            "redirect": {"prefixRewrite": "/new/", "derivePort": "FROM_REQUEST_PORT"},
        },
        {
            "match": [{"uri": {"exact": "/health"}}],
            "directResponse": {"status": 200, "body": {"string": "ok"}},
        },
        {
            "match": [{"uri": {"exact": "/bytes"}}],
            "directResponse": {"status": 503, "body": {"bytes": base64.b64encode(b"x").decode()}},
        },
        {
            "route": [{"destination": {"host": "reviews"}}],
            "mirror": {"host": "reviews-shadow"},
            "mirrorPercentage": {"value": 10},
        },
    ],
    "tcp": [
        {
            "match": [
                {
                    "destinationSubnets": ["10.0.0.0/8"],
                    "port": 27017,
                    "sourceSubnet": "192.168.0.0/16",
                    "sourceLabels": {"app": "mongo-client"},
                    "gateways": ["mesh"],
                    "sourceNamespace": "db",
                }
            ],
            "route": [{"destination": {"host": "mongo", "port": {"number": 5555}}, "weight": 100}],
        }
    ],
}


def test_full_virtual_service_is_accepted_and_round_trips() -> None:
    result = check("VirtualService", FULL)
    assert result.ok, errors(result)
    assert other_warnings(result) == []
    assert result.resource is not None
    dumped = result.resource.spec.dump()
    assert dumped["http"][0]["fault"]["abort"]["percentage"] == {"value": 1.0}
    assert dumped["http"][0]["match"][0]["withoutHeaders"] == {"x-skip": {"regex": "*"}}
    assert dumped["tcp"] == FULL["tcp"]


def test_tls_routes_and_gateway_forms_are_accepted() -> None:
    spec = tls(
        sni_route("login.bookinfo.com", port=443, destinationSubnets=["10.1.0.0/16"]),
        sni_route("*.reviews.bookinfo.com"),
    )
    spec["hosts"].append("outbound_.443_._.ratings.prod.svc.cluster.local")
    spec["tls"].append(sni_route("outbound_.443_._.ratings.prod.svc.cluster.local"))
    result = check("VirtualService", spec)
    assert result.ok, errors(result)


@pytest.mark.parametrize(
    "spec",
    [
        # '*' is fine for a VirtualService bound to gateways only.
        vs(hosts=["*"], gateways=["ns/gw"]),
        # JWT claim routing is fine on gateways.
        http(match=[{"headers": {"@request.auth.claims.group": {"exact": "admin"}}}])
        | {"gateways": ["istio-system/ingress"]},
        # An empty uri prefix matches everything; headers with {} mean "present".
        http(match=[{"uri": {"prefix": ""}, "headers": {"x": {}}}]),
        # A delegate VirtualService (no hosts) and a root delegating to it.
        {"http": [{"match": [{"uri": {"prefix": "/a"}}], "route": [DEST]}]},
        vs(
            http=[
                {"match": [{"uri": {"prefix": "/a"}}], "delegate": {"name": "a", "namespace": "b"}}
            ]
        ),
        # Weights need not add up to 100; a single zero weight is fine.
        http(route=[{**DEST, "weight": 0}]),
        http(route=[{**DEST, "weight": 10}, {**DEST, "weight": 0}]),
        # A short exact match in an earlier rule does not cover a longer prefix.
        vs(http=[{"match": [{"uri": {"exact": "/a"}}], "route": [DEST]}, {"route": [DEST]}]),
    ],
)
def test_valid_edge_cases(spec: dict[str, Any]) -> None:
    result = check("VirtualService", spec)
    assert result.ok, errors(result)


BIG = "x" * (1024 * 1024 + 1)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    # --- schema (CRD layer) ---
    ("unknown field", http(timout="1s"), "spec.http[0].timout: unknown field"),
    (
        "removed field",
        http(websocketUpgrade=True),
        "spec.http[0].websocketUpgrade: unknown field: removed from the API",
    ),
    (
        "weight is an integer",
        http(route=[{**DEST, "weight": "50"}]),
        "spec.http[0].route[0].weight: must be an integer",
    ),
    (
        "destination required",
        http(route=[{"weight": 100}]),
        "spec.http[0].route[0].destination: required field is missing",
    ),
    ("uint32 port", http(match=[{"port": -1}]), "spec.http[0].match[0].port: must be >= 0"),
    (
        "stringmatch oneof",
        http(match=[{"uri": {"exact": "/a", "prefix": "/a"}}]),
        "spec.http[0].match[0].uri: only one of exact, prefix or regex",
    ),
    # --- delegate ---
    (
        "delegate vs gateways",
        {"gateways": ["ns/gw"], "http": [{"route": [DEST]}]},
        "spec.gateways: a delegate VirtualService",
    ),
    ("delegate vs tls", tls(sni_route("a.b.com"), hosts=[], gateways=[]), "spec.tls: a delegate"),
    (
        "delegate vs tcp",
        {"tcp": [{"route": [DEST]}]},
        "spec.tcp: a delegate VirtualService (no hosts) must not set tcp",
    ),
    (
        "delegate in delegate vs",
        {"http": [{"delegate": {"name": "x"}}]},
        "spec.http[0].delegate: a delegate VirtualService must not delegate again",
    ),
    (
        "root delegate with route",
        http(delegate={"name": "x"}),
        "spec.http[0].route: a route with delegate must not also set route",
    ),
    (
        "root delegate with redirect",
        http_only(delegate={"name": "x"}, redirect={"uri": "/x"}),
        "spec.http[0].redirect: a route with delegate must not also set redirect",
    ),
    # --- top level ---
    ("no routes", {"hosts": ["reviews"]}, "spec: at least one of http, tcp or tls"),
    ("gateway namespace", vs(gateways=["bad_ns/gw"]), "spec.gateways[0]: 'bad_ns/gw': namespace"),
    ("gateway empty part", vs(gateways=["ns/"]), "spec.gateways[0]: 'ns/': namespace and"),
    ("gateway not fqdn", vs(gateways=["my_gw"]), "spec.gateways[0]: invalid gateway name"),
    ("host invalid", vs(hosts=["-bad.com"]), "spec.hosts[0]: invalid host '-bad.com'"),
    ("host * on mesh", vs(hosts=["*"]), "spec.hosts[0]: the host '*' is not allowed"),
    (
        "overlapping hosts",
        vs(hosts=["*.foo.com", "a.foo.com"]),
        "spec.hosts[0]: duplicate or overlapping hosts",
    ),
    (
        "jwt claim on mesh",
        http(match=[{"withoutHeaders": {"@request.auth.claims.group": {"exact": "a"}}}]),
        "spec.http[0].match[0].withoutHeaders.@request.auth.claims.group: JWT claim",
    ),
    ("exportTo entry", vs(exportTo=["~"]), "spec.exportTo[0]: invalid exportTo entry"),
    ("exportTo duplicate", vs(exportTo=[".", "default"]), "spec.exportTo[1]: duplicate"),
    ("exportTo * alone", vs(exportTo=["*", "other"]), "spec.exportTo: '*' exports"),
    # --- HTTP route conflicts ---
    (
        "redirect and route",
        http(redirect={"uri": "/x"}),
        "spec.http[0].route: a route with redirect must not also set route",
    ),
    (
        "redirect and fault",
        http_only(redirect={"uri": "/x"}, fault={"abort": {"httpStatus": 500}}),
        "spec.http[0].fault: a route with redirect",
    ),
    (
        "redirect and rewrite",
        http_only(redirect={"uri": "/x"}, rewrite={"uri": "/y"}),
        "spec.http[0].rewrite: a route with redirect",
    ),
    (
        "redirect and directResponse",
        http_only(redirect={"uri": "/x"}, directResponse={"status": 200}),
        "spec.http[0].directResponse: a route with redirect",
    ),
    (
        "directResponse and route",
        http(directResponse={"status": 200}),
        "spec.http[0].route: a route with directResponse must not also set route",
    ),
    (
        "no action",
        http_only(timeout="1s"),
        "spec.http[0].route: route, redirect or directResponse is required",
    ),
    (
        "mirror and mirrors",
        http(mirror={"host": "a"}, mirrors=[{"destination": {"host": "b"}}]),
        "spec.http[0].mirrors: mirror and mirrors cannot both be set",
    ),
    # --- HTTP match ---
    (
        "header name",
        http(match=[{"headers": {"bad header": {"exact": "a"}}}]),
        "spec.http[0].match[0].headers.bad header: invalid header name",
    ),
    (
        "null header match",
        http(match=[{"headers": {"x": None}}]),
        "spec.http[0].match[0].headers.x: a header match must not be null",
    ),
    (
        "empty header prefix",
        http(match=[{"headers": {"x": {"prefix": ""}}}]),
        "spec.http[0].match[0].headers.x.prefix: a prefix match must not be empty",
    ),
    (
        "empty method prefix",
        http(match=[{"method": {"prefix": ""}}]),
        "spec.http[0].match[0].method.prefix: a prefix match must not be empty",
    ),
    (
        "empty query prefix",
        http(match=[{"queryParams": {"q": {"prefix": ""}}}]),
        "spec.http[0].match[0].queryParams.q.prefix: a prefix match",
    ),
    (
        "bad uri regex",
        http(match=[{"uri": {"regex": "(unclosed"}}]),
        "spec.http[0].match[0].uri.regex: invalid RE2 regex",
    ),
    (
        "withoutHeaders regex",
        http(match=[{"withoutHeaders": {"x": {"regex": ""}}}]),
        "spec.http[0].match[0].withoutHeaders.x.regex: regex must not be empty",
    ),
    (
        "long regex",
        http(match=[{"authority": {"regex": "a" * 1025}}]),
        "spec.http[0].match[0].authority.regex: regex is longer than 1024",
    ),
    ("match port", http(match=[{"port": 70000}]), "spec.http[0].match[0].port: port number"),
    (
        "source labels",
        http(match=[{"sourceLabels": {"app": "bad value"}}]),
        "spec.http[0].match[0].sourceLabels: label value",
    ),
    (
        "match gateways",
        http(match=[{"gateways": ["ns/bad_gw"]}]),
        "spec.http[0].match[0].gateways[0]: 'ns/bad_gw': gateway name",
    ),
    (
        "source namespace",
        http(match=[{"sourceNamespace": "Bad_NS"}]),
        "spec.http[0].match[0].sourceNamespace: 'Bad_NS' is not a DNS-1123 label",
    ),
    # --- destinations ---
    (
        "destination *",
        http(route=[{"destination": {"host": "*"}}]),
        "spec.http[0].route[0].destination.host: destination host must not be '*'",
    ),
    (
        "destination host",
        http(route=[{"destination": {"host": "bad..host"}}]),
        "spec.http[0].route[0].destination.host: invalid host 'bad..host'",
    ),
    (
        "subset",
        http(route=[{"destination": {"host": "a", "subset": "v_1"}}]),
        "spec.http[0].route[0].destination.subset: invalid subset",
    ),
    (
        "destination port",
        http(route=[{"destination": {"host": "a", "port": {"number": 0}}}]),
        "spec.http[0].route[0].destination.port.number: port number 0",
    ),
    (
        "negative weight",
        http(route=[{**DEST, "weight": 110}, {**DEST, "weight": -10}]),
        "spec.http[0].route[1].weight: must be >= 0",
    ),
    (
        "weights add up to 0",
        http(route=[{**DEST, "weight": 0}, {**DEST, "weight": 0}]),
        "spec.http[0].route: the destination weights add up to 0",
    ),
    (
        "destination header remove host",
        http(route=[{**DEST, "headers": {"request": {"remove": ["Host"]}}}]),
        "spec.http[0].route[0].headers.request.remove[0]: the Host header",
    ),
    (
        "response pseudo-header",
        http(headers={"response": {"set": {":status": "200"}}}),
        "spec.http[0].headers.response.set.:status: HTTP/2 pseudo-header",
    ),
    (
        "header value",
        http(headers={"request": {"add": {"x": "100%"}}}),
        "spec.http[0].headers.request.add.x: header value '100%' has an unclosed",
    ),
    # --- fault ---
    ("empty fault", http(fault={}), "spec.http[0].fault: a fault needs an abort and/or a delay"),
    (
        "fault percentage",
        http(fault={"abort": {"httpStatus": 500, "percentage": {"value": 100.5}}}),
        "spec.http[0].fault.abort.percentage.value: percentage 100.5",
    ),
    (
        "tiny fault percentage",
        http(fault={"delay": {"fixedDelay": "1s", "percentage": {"value": 0.00001}}}),
        "spec.http[0].fault.delay.percentage.value: percentage",
    ),
    (
        "abort http status",
        http(fault={"abort": {"httpStatus": 601}}),
        "spec.http[0].fault.abort.httpStatus: HTTP status 601 must be in 200..599",
    ),
    (
        "abort grpc status",
        http(fault={"abort": {"grpcStatus": "NOPE"}}),
        "spec.http[0].fault.abort.grpcStatus: unknown gRPC status",
    ),
    (
        "abort http2 error",
        http(fault={"abort": {"http2Error": "CANCEL"}}),
        "spec.http[0].fault.abort.http2Error: HTTP/2 error abort faults are not supported",
    ),
    (
        "fixed delay",
        http(fault={"delay": {"fixedDelay": "0.5ms"}}),
        "spec.http[0].fault.delay.fixedDelay: duration '0.5ms' must be at least 1ms",
    ),
    (
        "exponential delay",
        http(fault={"delay": {"exponentialDelay": "1s"}}),
        "spec.http[0].fault.delay.exponentialDelay: exponentialDelay is not supported",
    ),
    # --- redirect ---
    (
        "redirect uri and prefixRewrite",
        http_only(redirect={"uri": "/a", "prefixRewrite": "/b"}),
        "spec.http[0].redirect.prefixRewrite: only one of uri or prefixRewrite",
    ),
    (
        "prefixRewrite needs prefix matches",
        http_only(match=[{"uri": {"exact": "/a"}}], redirect={"prefixRewrite": "/b"}),
        "spec.http[0].redirect.prefixRewrite: prefixRewrite needs every uri match",
    ),
    (
        "empty redirect",
        http_only(redirect={"redirectCode": 301}),
        "spec.http[0].redirect: a redirect must set uri",
    ),
    (
        "redirect code",
        http_only(redirect={"uri": "/a", "redirectCode": 200}),
        "spec.http[0].redirect.redirectCode: 200 is not a redirect code",
    ),
    (
        "redirect scheme",
        http_only(redirect={"scheme": "ftp"}),
        "spec.http[0].redirect.scheme: scheme must be 'http' or 'https'",
    ),
    (
        "redirect port",
        http_only(redirect={"port": 70000}),
        "spec.http[0].redirect.port: port number 70000",
    ),
    (
        "redirect port oneof",
        http_only(redirect={"port": 8080, "derivePort": "FROM_REQUEST_PORT"}),
        "spec.http[0].redirect.derivePort: only one of port or derivePort",
    ),
    # --- direct response ---
    (
        "direct response status",
        http_only(directResponse={"status": 199}),
        "spec.http[0].directResponse.status: HTTP status 199",
    ),
    (
        "direct response body size",
        http_only(directResponse={"status": 200, "body": {"string": BIG}}),
        "spec.http[0].directResponse.body: a direct response body must be at most 1MiB",
    ),
    (
        "direct response bytes",
        http_only(directResponse={"status": 200, "body": {"bytes": "not base64!"}}),
        "spec.http[0].directResponse.body.bytes: must be base64-encoded",
    ),
    # --- rewrite ---
    (
        "rewrite uri and regex",
        http(rewrite={"uri": "/a", "uriRegexRewrite": {"match": "a", "rewrite": "b"}}),
        "spec.http[0].rewrite.uriRegexRewrite: only one of uri or uriRegexRewrite",
    ),
    ("empty rewrite", http(rewrite={}), "spec.http[0].rewrite: a rewrite must set uri"),
    (
        "regex rewrite incomplete",
        http(rewrite={"uriRegexRewrite": {"match": "^/a"}}),
        "spec.http[0].rewrite.uriRegexRewrite: uriRegexRewrite needs both match and rewrite",
    ),
    (
        "regex rewrite regex",
        http(rewrite={"uriRegexRewrite": {"match": "a(", "rewrite": "b"}}),
        "spec.http[0].rewrite.uriRegexRewrite.match: invalid RE2 regex",
    ),
    (
        "authority set twice",
        http(rewrite={"authority": "a.com"}, headers={"request": {"set": {":authority": "b"}}}),
        "spec.http[0].headers.request.set.:authority: the authority is already set to 'a.com'",
    ),
    # --- mirroring ---
    (
        "mirror percentage",
        http(mirror={"host": "a"}, mirrorPercentage={"value": 100.1}),
        "spec.http[0].mirrorPercentage.value: 100.1 must be in 0..100",
    ),
    (
        "mirror percent",
        http(mirror={"host": "a"}, mirrorPercent=101),
        "spec.http[0].mirrorPercent: 101 must be at most 100",
    ),
    (
        "mirror destination",
        http(mirror={"host": "*"}),
        "spec.http[0].mirror.host: destination host must not be '*'",
    ),
    (
        "mirrors percentage",
        http(mirrors=[{"destination": {"host": "a"}, "percentage": {"value": -1}}]),
        "spec.http[0].mirrors[0].percentage.value: -1.0 must be in 0..100",
    ),
    (
        "mirrors destination",
        http(mirrors=[{"destination": {"host": "a", "subset": "-v1"}}]),
        "spec.http[0].mirrors[0].destination.subset: invalid subset",
    ),
    # --- retries and timeout ---
    (
        "negative attempts",
        http(retries={"attempts": -1}),
        "spec.http[0].retries.attempts: must be >= 0",
    ),
    (
        "attempts 0 with policy",
        http(retries={"attempts": 0, "retryOn": "5xx"}),
        "spec.http[0].retries.attempts: retries are disabled",
    ),
    (
        "per try timeout",
        http(retries={"attempts": 2, "perTryTimeout": "1.5ms"}),
        "spec.http[0].retries.perTryTimeout: duration '1.5ms' must be a whole number",
    ),
    (
        "backoff",
        http(retries={"attempts": 2, "backoff": "0s"}),
        "spec.http[0].retries.backoff: duration '0s' must be at least 1ms",
    ),
    (
        "retry on",
        http(retries={"attempts": 2, "retryOn": "5xx,sometimes"}),
        "spec.http[0].retries.retryOn: 'sometimes' is not a retryOn policy",
    ),
    (
        "retry on status",
        http(retries={"attempts": 2, "retryOn": "599"}),
        "spec.http[0].retries.retryOn: '599'",
    ),
    ("timeout", http(timeout="0s"), "spec.http[0].timeout: duration '0s' must be at least 1ms"),
    ("timeout syntax", http(timeout="10"), "spec.http[0].timeout: invalid duration '10'"),
    # --- CORS ---
    (
        "cors empty origin",
        http(corsPolicy={"allowOrigins": [{"exact": ""}]}),
        "spec.http[0].corsPolicy.allowOrigins[0]: an origin match must set",
    ),
    (
        "cors origin regex",
        http(corsPolicy={"allowOrigins": [{"regex": "*.com"}]}),
        "spec.http[0].corsPolicy.allowOrigins[0].regex: invalid RE2 regex",
    ),
    (
        "cors method",
        http(corsPolicy={"allowMethods": ["GET", "FETCH"]}),
        "spec.http[0].corsPolicy.allowMethods[1]: 'FETCH' is not a supported HTTP method",
    ),
    (
        "cors allow header",
        http(corsPolicy={"allowHeaders": ["x foo"]}),
        "spec.http[0].corsPolicy.allowHeaders[0]: invalid header name",
    ),
    (
        "cors expose header",
        http(corsPolicy={"exposeHeaders": [""]}),
        "spec.http[0].corsPolicy.exposeHeaders[0]: invalid header name",
    ),
    (
        "cors max age seconds",
        http(corsPolicy={"maxAge": "1500ms"}),
        "spec.http[0].corsPolicy.maxAge: maxAge '1500ms' must be a whole number of seconds",
    ),
    # --- TLS routes ---
    (
        "tls without match",
        tls({"route": [DEST]}),
        "spec.tls[0].match: a TLS route needs at least one match",
    ),
    (
        "tls match without sni",
        tls({"match": [{"port": 443}], "route": [DEST]}),
        "spec.tls[0].match[0].sniHosts: a TLS match needs at least one SNI host",
    ),
    (
        "sni not a subset",
        tls(sni_route("login.other.com")),
        "spec.tls[0].match[0].sniHosts[0]: SNI host 'login.other.com' is not a subset",
    ),
    (
        "sni invalid",
        tls(sni_route("bad_sni.bookinfo.com")),
        "spec.tls[0].match[0].sniHosts[0]: invalid host 'bad_sni.bookinfo.com'",
    ),
    (
        "tls subnet",
        tls(sni_route("a.bookinfo.com", destinationSubnets=["10.0.0.0/33"])),
        "spec.tls[0].match[0].destinationSubnets[0]: '10.0.0.0/33' is not an IP",
    ),
    (
        "tls port",
        tls(sni_route("a.bookinfo.com", port=65536)),
        "spec.tls[0].match[0].port: port number 65536",
    ),
    (
        "tls without route",
        tls({"match": [{"sniHosts": ["a.bookinfo.com"]}]}),
        "spec.tls[0].route: a TLS route needs at least one destination",
    ),
    # --- TCP routes ---
    ("tcp without route", vs(http=None, tcp=[{}]), "spec.tcp[0].route: a TCP route needs"),
    (
        "tcp subnet",
        vs(http=None, tcp=[{"match": [{"destinationSubnets": ["1.2.3"]}], "route": [DEST]}]),
        "spec.tcp[0].match[0].destinationSubnets[0]: '1.2.3' is not an IP",
    ),
    (
        "tcp source subnet",
        vs(http=None, tcp=[{"match": [{"sourceSubnet": "x"}], "route": [DEST]}]),
        "spec.tcp[0].match[0].sourceSubnet: 'x' is not an IP",
    ),
    (
        "tcp source labels",
        vs(http=None, tcp=[{"match": [{"sourceLabels": {"-a": "b"}}], "route": [DEST]}]),
        "spec.tcp[0].match[0].sourceLabels: label key '-a'",
    ),
]


@pytest.mark.parametrize(
    ("spec", "expected"), [row[1:] for row in INVALID], ids=[row[0] for row in INVALID]
)
def test_invalid_virtual_services_name_the_field(spec: dict[str, Any], expected: str) -> None:
    result = check("VirtualService", spec)
    assert not result.ok
    assert any(e.startswith(expected) for e in errors(result)), errors(result)


WARNINGS: list[tuple[str, dict[str, Any], str]] = [
    ("legacy gateway name", vs(gateways=["gw.ns"]), "spec.gateways[0]: legacy gateway name"),
    ("abort without type", http(fault={"abort": {}}), "spec.http[0].fault.abort: abort is set"),
    (
        "mirrorPercent deprecated",
        http(mirror={"host": "a"}, mirrorPercent=5),
        "spec.http[0].mirrorPercent: mirrorPercent is deprecated",
    ),
    (
        "big body",
        http_only(directResponse={"status": 200, "body": {"string": "x" * 200_000}}),
        "spec.http[0].directResponse.body: a large direct response body",
    ),
    (
        "sni ip",
        tls(sni_route("10.0.0.1"), hosts=["*"]),
        "spec.tls[0].match[0].sniHosts[0]: SNI host '10.0.0.1' is an IP address",
    ),
    (
        "catch-all not last",
        vs(http=[{"route": [DEST]}, {"match": [{"uri": {"prefix": "/a"}}], "route": [DEST]}]),
        "spec.http[1]: rule is never used: http[0] has no match",
    ),
    (
        "duplicate match",
        vs(
            http=[
                {"name": "a", "match": [{"name": "x", "uri": {"exact": "/a"}}], "route": [DEST]},
                {"match": [{"uri": {"exact": "/a"}}, {"uri": {"exact": "/b"}}], "route": [DEST]},
            ]
        ),
        "spec.http[1].match[0]: match is never used: the same match is in http[0] ('a')",
    ),
    (
        "all matches repeated",
        vs(
            http=[
                {"match": [{"uri": {"exact": "/a"}}], "route": [DEST]},
                {"match": [{"uri": {"exact": "/a"}}], "route": [DEST]},
            ]
        ),
        "spec.http[1]: rule is never used: every one of its matches",
    ),
    (
        "prefix covered",
        vs(
            http=[
                {"match": [{"uri": {"prefix": "/api"}, "port": 80}], "route": [DEST]},
                {"match": [{"uri": {"prefix": "/api/v2"}, "port": 80}], "route": [DEST]},
            ]
        ),
        "spec.http[1].match[0]: match is never used: the shorter uri prefix in http[0].match[0]",
    ),
    (
        "tcp duplicate",
        vs(http=None, tcp=[{"match": [{"port": 1}], "route": [DEST]}] * 2),
        "spec.tcp[1].match[0]: match is never used: the same match is in tcp[0]",
    ),
    (
        "tls after catch-all",
        tls(sni_route("a.bookinfo.com"), sni_route("a.bookinfo.com")),
        "spec.tls[1]: rule is never used: every one of its matches",
    ),
]


@pytest.mark.parametrize(
    ("spec", "expected"), [row[1:] for row in WARNINGS], ids=[row[0] for row in WARNINGS]
)
def test_warnings_name_the_field(spec: dict[str, Any], expected: str) -> None:
    result = check("VirtualService", spec)
    assert result.ok, errors(result)
    assert any(w.startswith(expected) for w in warnings(result)), warnings(result)


def test_prefix_with_different_conditions_is_not_covered() -> None:
    spec = vs(
        http=[
            {"match": [{"uri": {"prefix": "/api"}, "port": 80}], "route": [DEST]},
            {"match": [{"uri": {"prefix": "/api/v2"}, "port": 81}], "route": [DEST]},
            {"route": [DEST]},
        ]
    )
    result = check("VirtualService", spec)
    assert result.ok and warnings(result) == []


def test_all_served_versions_are_accepted() -> None:
    for version in ("v1alpha3", "v1beta1", "v1"):
        result = check("VirtualService", vs(), api_version=f"networking.istio.io/{version}")
        assert result.ok, errors(result)
