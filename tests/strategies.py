"""Hypothesis strategies for Istio documents, derived from the api/ models.

A document is drawn by walking its kind's pydantic spec model field by field:
each optional field is set or left out, nested models are walked, and every
leaf value comes from a small vocabulary chosen by the field's name (hosts the
test mesh knows, ports, durations, percentages, regexes, label sets, the
authorization attribute forms), falling back to the field's own type and
bounds. Istio's "exactly one of" fields (a StringMatch's forms, a route's
action, ...) pick one; the fields every document needs are always set.

Validation is the judge of the rest: `accepted` checks a drawn document with
Galley's own `check_document` and, while it is refused, removes the field each
error names (or the entry that holds it), so what is left is a document the
validator accepts, with every field it kept as drawn. `Draw` records how many
documents were valid as drawn and how many were kept at all.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annotated_types import Ge, Le
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from api.resources import check_document, kinds
from api.security.authz_rules import WHEN_ATTRIBUTES, Operation, Source

__all__ = ["KINDS", "Draw", "Vocabulary", "accepted", "document", "spec"]

KINDS = (
    "VirtualService",
    "DestinationRule",
    "ServiceEntry",
    "Sidecar",
    "Gateway",
    "PeerAuthentication",
    "AuthorizationPolicy",
    "RequestAuthentication",
    "Telemetry",
)
CERTS = Path(__file__).resolve().parent / "pilot" / "golden" / "certs"
S = st.SearchStrategy


@dataclass(frozen=True)
class Vocabulary:
    """What depends on the mesh under test: ports a gateway may listen on, and where
    the certificate files are (they must exist where Envoy runs)."""

    gateway_ports: tuple[int, ...] = (18080, 18443)
    certs: Path = CERTS


def _one(*values: Any) -> S[Any]:
    return st.sampled_from(values)


HOSTS = ("reviews", "productpage", "reviews.default.svc.cluster.local", "api.example.com")
PATHS = _one("/", "/api", "/api/v1", "/static/x.css", "/a%20b", "/a/../b", "/x?y=1", "api")
WORDS = _one("a", "v1", "shop", "x-y", "jason", "0", "", "a b", "ü", "%REQ(:path)%")
REGEXES = _one("/a.*", "[a-z]+", ".*", "^/api/v[0-9]+$", "(a|b)+", "a{2,999}", "\\d+", "(?i)x")
DURATIONS = _one("1ms", "250ms", "1s", "2.5s", "30s", "1h", "0s", "10m", "1us", "87600h")
PERCENTS = _one(0.0, 0.1, 25.0, 50.5, 100.0, 0.0001, 99.9999)
HEADERS = _one("x-user", "x-team", "end-user", "X-Upper", "host", ":authority", "x_u")
LABELS = _one({"version": "v1"}, {"version": "v2"}, {"app": "productpage"}, {"app": "reviews"})
NAMESPACES = _one("default", "backend")
TARGETS = _one(
    {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
    {"kind": "Service", "name": "reviews"},
    {"group": "networking.istio.io", "kind": "ServiceEntry", "name": "api"},
)
# `from.source` and `when` values in every form the validator accepts.
SOURCE_VALUES: dict[str, S[str]] = {
    "principals": _one("cluster.local/ns/default/sa/fe", "*", "*/sa/x", "cluster.local/*"),
    "requestPrincipals": _one("https://iss/sub", "*", "iss/*", "*/sub"),
    "namespaces": _one("default", "*", "team-*", "*-prod"),
    "serviceAccounts": _one("fe", "backend/worker"),
    "trustDomains": _one("cluster.local", "*", "*.corp", "corp.*"),
    "ipBlocks": _one("10.0.0.0/8", "127.0.0.1", "::1", "2001:db8::/32"),
    "remoteIpBlocks": _one("192.0.2.0/24", "10.1.2.3"),
    "hosts": _one("reviews", "*.example", "shop*", "*"),
    "ports": _one("9080", "80"),
    "methods": _one("GET", "POST", "*"),
    "paths": _one("/a", "/a*", "*/b", "/items/{*}/x", "/files/{**}", "*"),
}
WHEN_VALUES: dict[str, S[str]] = {
    "source.ip": _one("10.0.0.1"),
    "remote.ip": _one("10.0.0.0/16"),
    "source.namespace": _one("default"),
    "source.principal": _one("cluster.local/ns/default/sa/fe"),
    "source.serviceAccount": _one("fe", "default/fe"),
    "source.trustDomain": _one("cluster.local"),
    "request.auth.principal": _one("iss/sub"),
    "request.auth.audiences": _one("aud"),
    "request.auth.presenter": _one("azp"),
    "request.auth.claims[groups]": _one("admins"),
    "request.auth.claims[a][b]": _one("c"),
    "request.headers[x-team]": _one("blue", "*"),
    "destination.ip": _one("10.0.0.0/8"),
    "destination.port": _one("9080"),
    "connection.sni": _one("outbound_.*", "*.example"),
    "experimental.envoy.filters.network.mysql_proxy[db.table]": _one("[update]", "x"),
}


def _with_not(table: dict[str, S[str]]) -> list[tuple[str, S[str]]]:
    """Each attribute and its not- form ('principals', 'notPrincipals')."""
    return [(n, v) for k, v in table.items() for n in (k, "not" + k[0].upper() + k[1:])]


_ATTRIBUTES = {f.alias or n for m in (Source, Operation) for n, f in m.model_fields.items()}
if _ATTRIBUTES - {n for n, _ in _with_not(SOURCE_VALUES)}:  # a new attribute: add values
    raise AssertionError(
        f"no values for {sorted(_ATTRIBUTES - dict(_with_not(SOURCE_VALUES)).keys())}"
    )
if set(WHEN_ATTRIBUTES) - set(WHEN_VALUES):  # a new `when` key: give it values here
    raise AssertionError(f"no values for {sorted(set(WHEN_ATTRIBUTES) - set(WHEN_VALUES))}")
JWKS = (
    '{"keys":[{"kty":"EC","crv":"P-256","kid":"k",'
    '"x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",'
    '"y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}]}'
)


# Values Envoy NACKs (or Pilot could not build) that validation once accepted, found by
# the no-NACK property test; validation refuses them now (tests/api/test_known_nacks.py),
# and they stay in the draws so that the property keeps checking that.
KNOWN_NACKS: dict[str, tuple[Any, ...]] = {
    "minimumRingSize": (8388609,),
    "HTTPDirectResponse.status": (600,),
    "httpStatus": (600,),
    "jwks": ('{"keys":[]}',),
    "timeout": ("100000000h",),
}


def _values(vocab: Vocabulary) -> dict[str, S[Any]]:
    table = _base_values(vocab)
    for key, extra in KNOWN_NACKS.items():
        table[key] = table[key] | _one(*extra) if key in table else _one(*extra)
    return table


def _base_values(vocab: Vocabulary) -> dict[str, S[Any]]:
    """Leaf values by field: 'Kind:Model.field', 'Model.field', 'parent.field' or 'field'
    (the first that exists wins). For a list of strings, the strategy of one item."""
    cert, key, ca = (str(vocab.certs / f) for f in ("cert.pem", "key.pem", "ca.pem"))
    return {
        # hosts, by where they appear
        "VirtualServiceSpec.hosts": _one(*HOSTS, "*.example.com", "*"),
        "VirtualServiceSpec.gateways": _one("mesh", "istio-system/ingress", "istio-system/g-gw"),
        "gateways": _one("mesh", "istio-system/ingress"),
        "Destination.host": _one(*HOSTS, "db.example.com"),
        "DestinationRuleSpec.host": _one(*HOSTS, "*.example.com"),
        "ServiceEntrySpec.hosts": _one("api.example.com", "db.example.com", "*.wild.example"),
        "Server.hosts": _one("*", "*/api.example.com", "./shop.example.com", "default/*"),
        "IstioEgressListener.hosts": _one(
            "./*",
            "*/*",
            "istio-system/*",
            "*/api.example.com",
            "default/reviews.default.svc.cluster.local",
        ),
        "sniHosts": _one("api.example.com", "*.example.com", "reviews", "productpage"),
        "subset": _one("v1", "v2"),
        "Subset.name": _one("v1", "v2", "canary"),
        # ports
        "Gateway:Port.number": st.sampled_from(vocab.gateway_ports),
        # Sidecar egress ports get listeners of their own: ports the test knows are free
        # (Envoys share them with SO_REUSEPORT; another process's port would be refused).
        "Sidecar:Port.number": st.sampled_from(vocab.gateway_ports),
        "ServiceEntry:Port.number": _one(80, 443, 8080, 5432),
        "number": _one(9080, 80, 8080, 1, 65535),
        "port": _one(9080, 80),
        "targetPort": _one(9090, 8080),
        "Port.protocol": _one("HTTP", "HTTPS", "HTTP2", "GRPC", "TCP", "TLS"),
        "Port.name": _one("http", "https-web", "tcp-db", "grpc"),
        # route parts
        "uri.exact": PATHS,
        "uri.prefix": PATHS,
        "scheme.exact": _one("http", "https"),
        "method.exact": _one("GET", "POST"),
        "authority.exact": _one(*HOSTS),
        "regex": REGEXES,
        "allowOrigins.exact": _one("https://a.example"),
        "allowOrigins.prefix": _one("https://shop."),
        "allowOrigin": _one("https://a.example"),
        "allowMethods": _one("GET", "POST"),
        "weight": _one(25, 50, 100, 25, 50, 100, 0, 1000),
        "attempts": _one(0, 1, 3, 2147483647),
        "retryOn": _one("5xx", "gateway-error,503", "reset,connect-failure", "retriable-4xx"),
        "httpStatus": _one(400, 418, 503, 200, 599),
        "grpcStatus": _one("UNAVAILABLE", "NOT_FOUND"),
        "http2Error": _one("INTERNAL_ERROR", "REFUSED_STREAM"),
        "HTTPDirectResponse.status": _one(200, 204, 404, 503, 100, 599),
        "redirectCode": _one(301, 302, 307, 308, 300, 399),
        "HTTPRedirect.port": _one(8443),
        "HTTPRedirect.scheme": _one("https", "http"),
        "HTTPRedirect.authority": _one("api.example.com"),
        "HTTPRewrite.authority": _one("other", "api.example.com"),
        "RegexRewrite.rewrite": _one("/new", "/v2/"),
        "HTTPBody.string": _one("ok", "short and stout"),
        "HTTPBody.bytes": _one("AP97ImEiOjF9Cg==", "aGVsbG8="),
        "remove": HEADERS,
        "allowHeaders": HEADERS,
        "exposeHeaders": HEADERS,
        "destinationSubnets": _one("10.0.0.0/8", "192.0.2.1"),
        "sourceSubnet": _one("10.0.0.0/8"),
        "sourceNamespace": NAMESPACES,
        # traffic policy
        "httpHeaderName": HEADERS,
        "HTTPCookie.name": _one("session"),
        "HTTPCookie.path": _one("/", "app"),
        "CookieAttribute.name": _one("SameSite"),
        "CookieAttribute.value": _one("Strict"),
        "httpQueryParameterName": _one("user"),
        "minimumRingSize": _one(1024, 2048, 1, 8388608),
        "tableSize": _one(65537, 1031, 65536, 1000, 5000011, 5000012),
        "minClusterSize": _one(1, 3),
        "minimumPercent": _one(10.0),
        "aggression": _one(1.0, 2.0),
        "maxConnections": _one(1, 100, 0, 2147483647),
        "probes": _one(3, 9),
        "http1MaxPendingRequests": _one(1, 100),
        "http2MaxRequests": _one(1, 1000, 0),
        "maxRequestsPerConnection": _one(0, 1, 10),
        "maxRetries": _one(0, 3),
        "maxConcurrentStreams": _one(100),
        "consecutiveLocalOriginFailures": _one(1, 5),
        "consecutiveGatewayErrors": _one(0, 3),
        "consecutive5xxErrors": _one(0, 5, 4294967295),
        "consecutiveErrors": _one(5),
        "maxEjectionPercent": _one(0, 10, 100, 101),
        "minHealthPercent": _one(0, 30, 100),
        "outlierDetectionHttpErrorCodes": _one(500, 503),
        "minRetryConcurrency": _one(3),
        "RetryBudget.percent": _one(20.0),
        "clientCertificate": _one(cert),
        "serverCertificate": _one(cert),
        "privateKey": _one(key),
        "caCertificates": _one(ca),
        "caCrl": _one(ca),
        "credentialName": _one("client-cred"),
        "credentialNames": _one("gw-cred", "gw-cred-ec"),
        "caCertCredentialName": _one("gw-ca"),
        "subjectAltNames": _one("api.example.com", "spiffe://cluster.local/ns/default/sa/x"),
        "sni": _one("api.example.com"),
        "verifyCertificateSpki": _one("Y2FmZWJhYmVjYWZlYmFiZWNhZmViYWJlY2FmZWJhYmU="),
        "verifyCertificateHash": _one(":".join(["ab"] * 32)),
        "cipherSuites": _one("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"),
        "TunnelSettings.protocol": _one("CONNECT", "POST"),
        "targetHost": _one("api.example.com"),
        "Distribute.from": _one("us-east/zone1/*"),
        "Failover.from": _one("us-east"),
        "Failover.to": _one("us-west"),
        "failoverPriority": _one("topology.kubernetes.io/region"),
        # service entries, sidecars, gateways
        "addresses": _one("192.0.2.10", "10.10.0.0/16", "2001:db8::1", "::/0"),
        "WorkloadEntry.address": _one("192.0.2.1", "192.0.2.2", "unix:///var/run/example.sock"),
        "network": _one("west"),
        "locality": _one("us-east/zone1"),
        "WorkloadEntry.weight": _one(1, 10),
        "serviceAccount": _one("sa"),
        "bind": _one("0.0.0.0", "127.0.0.1"),
        "resolution": _one("STATIC", "STATIC", "DNS", "DNS", "NONE", "DNS_ROUND_ROBIN"),
        "defaultEndpoint": _one("127.0.0.1:9080", "unix:///var/run/app.sock"),
        # security
        "ExtensionProvider.name": _one("ext-authz"),
        "issuer": _one("https://issuer.example", "iss"),
        "audiences": _one("aud"),
        "jwksUri": _one("http://127.0.0.1:1/jwks.json"),
        "jwks": _one(JWKS),
        "JwtHeader.name": _one("authorization", "x-jwt", "Authorization", "x jwt"),
        "JwtHeader.prefix": _one("Bearer "),
        "fromParams": _one("token"),
        "fromCookies": _one("session"),
        "outputPayloadToHeader": _one("x-jwt-payload", "X-Payload", ":path"),
        "ClaimToHeader.header": _one("x-jwt-sub", "X-Sub", "x sub"),
        "ClaimToHeader.claim": _one("sub"),
        "spaceDelimitedClaims": _one("roles"),
        "timeout": DURATIONS,
        **{f"{m}.{k}": v for m in ("Source", "Operation") for k, v in _with_not(SOURCE_VALUES)},
        # telemetry
        "ProviderRef.name": _one("envoy", "zipkin", "prometheus"),
        "randomSamplingPercentage": PERCENTS,
        "Literal_.value": WORDS,
        "Environment.name": _one("POD_NAME"),
        "RequestHeader.name": HEADERS,
        "Formatter.value": _one("%REQ(:path)%"),
        "customMetric": _one("my_metric"),
        "customTags.key": _one("tag1", "tag2"),
        "tagOverrides.key": _one("request_host", "destination_port"),
        "TagOverride.value": _one("request.host"),
        "expression": _one("response.code >= 400"),
        # by shape, anywhere
        "value": PERCENTS,  # Percent.value
        "percent": _one(0, 50, 100),
        "mirrorPercent": _one(0, 50, 100),
        "name": _one("a", "route-1"),
        "defaultValue": WORDS,
    }


def _whole(vocab: Vocabulary) -> dict[str, S[Any]]:
    """Whole-field values (maps, and a few models), keyed as in `_values`."""
    string_map = st.dictionaries(HEADERS, WORDS, min_size=1, max_size=2)
    return {
        "GatewaySpec.selector": _one({"istio": "ingressgateway"}, {"istio": "other"}),
        "sourceLabels": LABELS,
        "labels": LABELS,
        "matchLabels": LABELS,
        "set": string_map,
        "add": string_map,
        "queryParams": st.dictionaries(_one("q", "user"), st.builds(dict, exact=WORDS), max_size=1),
        "portLevelMtls": st.dictionaries(
            _one("9080", "8080"),
            st.builds(dict, mode=_one("DISABLE", "PERMISSIVE", "STRICT")),
            min_size=1,
            max_size=2,
        ),
        "WorkloadEntry.ports": st.dictionaries(_one("http", "tcp"), _one(8080, 9090), max_size=1),
        "Distribute.to": st.dictionaries(
            _one("us-east/zone1/*", "us-west/*"), _one(50), max_size=1
        ),
        "Rule.when": st.lists(_condition(), min_size=1, max_size=2),
        "targetRef": TARGETS,
        "targetRefs": st.lists(TARGETS, min_size=1, max_size=2, unique_by=_UNIQUE),
    }


@st.composite
def _condition(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(st.sampled_from(sorted(WHEN_VALUES)))
    form = draw(_one("values", "notValues"))
    return {"key": key, form: [draw(WHEN_VALUES[key])]}


# Fields Istio reads as "exactly one of" (or at most one, with None): one is drawn and
# the others are left out.
ONE_OF: dict[str, tuple[tuple[str | None, ...], ...]] = {
    "VirtualServiceSpec": (("http", "http", "http", "http", "http", "http", "tls", "tcp"),),
    "StringMatch": (("exact", "prefix", "regex"),),
    "HTTPRoute": (
        ("route", "route", "route", "route", "redirect", "directResponse", "delegate"),
        ("mirror", "mirrors", None),
        ("mirrorPercent", "mirrorPercentage", None),
    ),
    "HTTPBody": (("string", "bytes"),),
    "FaultDelay": (("fixedDelay", "exponentialDelay"), ("percentage", "percent", None)),
    "TrafficPolicy": (("tunnel", "proxyProtocol", None),),
    "ServiceEntrySpec": (("endpoints", "workloadSelector", None),),
    "FaultAbort": (("httpStatus", "grpcStatus", "http2Error"),),
    "LoadBalancerSettings": (("simple", "consistentHash", None),),
    "ConsistentHashLB": (
        ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"),
        ("ringHash", "maglev", "minimumRingSize", None),
    ),
    "CustomTag": (("literal", "environment", "header", "formatter"),),
    "ServerTLSSettings": (("serverCertificate", "credentialName", "credentialNames", None),),
    "MetricSelector": (("metric", "customMetric"),),
    "AuthorizationPolicySpec": (("selector", "targetRef", "targetRefs", None),),
    "RequestAuthenticationSpec": (("selector", "targetRef", "targetRefs", None),),
    "TelemetrySpec": (("selector", "targetRef", "targetRefs", None),),
    "JwtRule": (("jwks", "jwks", "jwksUri"),),
}
# Of these, at least one is set (one is drawn and set; the others as any field).
SOME_OF: dict[str, tuple[str, ...]] = {
    "HTTPFaultInjection": ("delay", "abort"),
    "HTTPRewrite": ("uri", "authority", "uriRegexRewrite"),
    "HTTPRedirect": ("uri", "authority", "port", "scheme", "prefixRewrite"),
    "SidecarSpec": ("egress", "ingress", "outboundTrafficPolicy", "inboundConnectionPool"),
    "Source": tuple(f.alias or n for n, f in Source.model_fields.items()),
    "Operation": tuple(f.alias or n for n, f in Operation.model_fields.items()),
    "CorsPolicy": ("allowOrigins", "allowOrigin"),
    "ConnectionPoolSettings": ("tcp", "http"),
    "PortTrafficPolicy": ("loadBalancer", "connectionPool", "outlierDetection", "tls"),
}
# Fields that come with another: set one, set them all.
COMPANIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "ServerTLSSettings": {"serverCertificate": ("privateKey",)},
    "ClientTLSSettings": {"clientCertificate": ("privateKey",)},
    "Http2KeepAlive": {"interval": ("timeout",)},
}
# Fields left out: refused in this position whatever their value ('Kind:Model' or 'Model').
NEVER: dict[str, tuple[str, ...]] = {
    "Gateway:Port": ("targetPort",),
    "Sidecar:Port": ("targetPort",),
    "ServerTLSSettings": ("insecureSkipVerify",),
}
# Fields every document of that model needs.
REQUIRED: dict[str, tuple[str, ...]] = {
    "VirtualServiceSpec": ("hosts",),
    "HTTPRouteDestination": ("destination",),
    "RouteDestination": ("destination",),
    "HTTPMirrorPolicy": ("destination",),
    "Destination": ("host",),
    "DestinationRuleSpec": ("host",),
    "Subset": ("name",),
    "GatewaySpec": ("servers", "selector"),
    "Server": ("port", "hosts"),
    "Port": ("number", "protocol", "name"),
    "ServiceEntrySpec": ("hosts", "ports"),
    "IstioEgressListener": ("hosts",),
    "TLSRoute": ("match", "route"),
    "TLSMatchAttributes": ("sniHosts",),
    "TCPRoute": ("route",),
    "RuleFrom": ("source",),
    "RuleTo": ("operation",),
    "JwtRule": ("issuer",),
    "JwtHeader": ("name",),
    "ClaimToHeader": ("header", "claim"),
    "ProviderRef": ("name",),
    "HTTPDirectResponse": ("status",),
    "HTTPRetry": ("attempts",),
    "HTTPCookie": ("name",),
    "CookieAttribute": ("name",),
    "RegexRewrite": ("match", "rewrite"),
    "Percent": ("value",),
    "MutualTls": ("mode",),
    "PolicyTargetReference": ("kind", "name"),
    "ExtensionProvider": ("name",),
    "TLSCertificate": ("serverCertificate", "privateKey"),
    "ClientTLSSettings": ("mode",),
    "ServerTLSSettings": ("mode",),
    "WorkloadSelector": ("matchLabels",),
    "AlphaWorkloadSelector": ("labels",),
    "Distribute": ("from", "to"),
    "Failover": ("from", "to"),
    "Environment": ("name",),
    "RequestHeader": ("name",),
    "Literal_": ("value",),
    "Formatter": ("value",),
    "AccessLoggingFilter": ("expression",),
    "TagOverride": ("operation",),
    "PortSelector": ("number",),
    "TunnelSettings": ("protocol", "targetHost", "targetPort"),
    "PortTrafficPolicy": ("port",),
    "IstioIngressListener": ("port",),
    "WarmupConfiguration": ("duration",),
    "AuthorizationPolicySpec": ("rules",),
}


@dataclass
class _Walker:
    kind: str
    values: dict[str, S[Any]]
    whole: dict[str, S[Any]]

    def _find(self, table: dict[str, S[Any]], model: str, parent: str, name: str) -> S[Any] | None:
        for key in (f"{self.kind}:{model}.{name}", f"{model}.{name}", f"{parent}.{name}", name):
            if key in table:
                return table[key]
        return None

    def model(self, cls: type[BaseModel], parent: str, depth: int) -> S[dict[str, Any]]:
        @st.composite
        def draw_model(draw: st.DrawFn) -> dict[str, Any]:
            out: dict[str, Any] = {}
            chosen: set[str | None] = set()
            grouped: set[str | None] = set()
            for group in ONE_OF.get(cls.__name__, ()):
                grouped.update(group)
                chosen.add(draw(st.sampled_from(group)))
            required = set(REQUIRED.get(cls.__name__, ()))
            if (some := SOME_OF.get(cls.__name__)) is not None:
                required.add(draw(st.sampled_from(some)))
            keep = 6 if depth < 2 else 3  # of 10: shallower fields are set more often
            never = NEVER.get(f"{self.kind}:{cls.__name__}", ()) + NEVER.get(cls.__name__, ())
            for name, info in cls.model_fields.items():
                alias = info.alias or name
                if alias in never:
                    continue
                if alias in grouped:
                    if alias not in chosen:
                        continue
                elif alias not in required and draw(st.integers(0, 9)) < 10 - keep:
                    continue
                out[alias] = draw(self.field(info.annotation, cls.__name__, parent, alias, depth))
            for alias, companions in COMPANIONS.get(cls.__name__, {}).items():
                for other in companions if alias in out else ():
                    info = cls.model_fields[_snake(cls, other)]
                    value = self.field(info.annotation, cls.__name__, parent, other, depth)
                    out[other] = draw(value)
            return out

        return draw_model()

    def field(self, annotation: Any, model: str, parent: str, name: str, depth: int) -> S[Any]:
        if (whole := self._find(self.whole, model, parent, name)) is not None:
            return whole
        return self.value(annotation, model, parent, name, depth)

    def value(self, annotation: Any, model: str, parent: str, name: str, depth: int) -> S[Any]:
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin in (typing.Union, types.UnionType):
            options = [a for a in args if a is not type(None)]
            return st.one_of([self.value(a, model, parent, name, depth) for a in options])
        if origin is typing.Annotated:
            bounds = [
                m for a in args[1:] for m in (a.metadata if isinstance(a, FieldInfo) else [a])
            ]
            return self._leaf(args[0], model, parent, name, bounds)
        if origin is list:
            item = self.value(args[0], model, parent, name, depth)
            return st.lists(item, min_size=1, max_size=2 if depth else 3, unique_by=_UNIQUE)
        if origin is dict:
            keys = self._find(self.values, model, parent, f"{name}.key")
            item = self.value(args[1], model, parent, name, depth)
            return st.dictionaries(HEADERS if keys is None else keys, item, min_size=1, max_size=2)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return self.model(annotation, name, depth + 1)
        return self._leaf(annotation, model, parent, name, [])

    def _leaf(self, t: Any, model: str, parent: str, name: str, bounds: list[Any]) -> S[Any]:
        if (known := self._find(self.values, model, parent, name)) is not None:
            return known
        if typing.get_origin(t) is typing.Literal:
            return st.sampled_from(typing.get_args(t))
        if t is bool:
            return st.booleans()
        if t is int:
            lo = max([0, *(b.ge for b in bounds if isinstance(b, Ge))])
            hi = min([100, *(b.le for b in bounds if isinstance(b, Le))])
            return st.integers(int(lo), int(hi))
        if t is float:
            return PERCENTS
        if t is str:
            return DURATIONS if _is_duration(name) else WORDS
        raise TypeError(f"{self.kind}: no strategy for {model}.{name}: {t!r}")


def _snake(cls: type[BaseModel], alias: str) -> str:
    """The model field name of an alias."""
    return next(n for n, f in cls.model_fields.items() if (f.alias or n) == alias)


def _name(value: Any) -> str:
    """Items of a list are distinct (Istio refuses repeated hosts, port names, ...)."""
    return str(value.get("name", repr(value))) if isinstance(value, dict) else repr(value)


def _number(value: Any) -> str:
    return str(value.get("number", repr(value))) if isinstance(value, dict) else repr(value)


_UNIQUE = (_name, _number)


_DURATION_NAMES = frozenset(
    {"timeout", "ttl", "interval", "time", "duration", "backoff", "maxAge", "reportingInterval"}
)


def _is_duration(name: str) -> bool:
    suffixes = ("Timeout", "Delay", "Time", "Duration", "Secs", "Interval")
    return name in _DURATION_NAMES or name.endswith(suffixes)


def spec(kind: str, vocab: Vocabulary | None = None) -> S[dict[str, Any]]:
    """A spec of this kind, drawn from its model (not yet checked)."""
    vocab = vocab or Vocabulary()
    model = kinds()[kind].spec_model
    return _Walker(kind, _values(vocab), _whole(vocab)).model(model, "spec", 0)


_NAMESPACES: dict[str, tuple[str, ...]] = {
    "Gateway": ("istio-system", "default"),
    "Sidecar": ("default", "istio-system"),
    "PeerAuthentication": ("default", "istio-system"),
    "AuthorizationPolicy": ("default", "istio-system"),
    "RequestAuthentication": ("default", "istio-system"),
    "Telemetry": ("default", "istio-system"),
}


@st.composite
def document(
    draw: st.DrawFn, kind: str, name: str, vocab: Vocabulary | None = None
) -> dict[str, Any]:
    info = kinds()[kind]
    namespace = draw(st.sampled_from(_NAMESPACES.get(kind, ("default", "backend", "istio-system"))))
    return {
        "apiVersion": f"{info.group}/{info.versions[-1]}",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": draw(spec(kind, vocab)),
    }


@dataclass
class Draw:
    """Acceptance counts, per kind: drawn, valid as drawn, kept after pruning."""

    drawn: dict[str, int] = field(default_factory=dict)
    valid: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, valid: bool, kept: bool) -> None:
        for table, yes in ((self.drawn, True), (self.valid, valid), (self.kept, kept)):
            table[kind] = table.get(kind, 0) + yes

    def rates(self) -> str:
        total = sum(self.drawn.values()) or 1
        parts = [
            f"{k} {self.valid.get(k, 0)}/{self.kept.get(k, 0)}/{n}"
            for k, n in sorted(self.drawn.items())
        ]
        return (
            f"valid as drawn {sum(self.valid.values()) / total:.0%}, "
            f"kept {sum(self.kept.values()) / total:.0%} of {total} "
            f"(valid/kept/drawn: {', '.join(parts)})"
        )


def _parse(path: str) -> list[str | int]:
    """'spec.http[0].route' -> ['spec', 'http', 0, 'route']."""
    out: list[str | int] = []
    for part in path.split("."):
        name, *indexes = part.split("[")
        if name:
            out.append(name)
        out.extend(int(i.rstrip("]")) for i in indexes)
    return out


def _drop(doc: dict[str, Any], parts: Sequence[str | int]) -> bool:
    """Remove what `parts` names, or the nearest container of it that exists below
    `spec`; False when nothing below `spec` can be removed."""
    parts = list(parts)
    while len(parts) > 1 and parts[0] == "spec":
        node: Any = doc
        for p in parts[:-1]:
            try:
                node = node[p]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        last = parts[-1]
        if isinstance(node, dict) and last in node:
            del node[last]
            return True
        if isinstance(node, list) and isinstance(last, int) and last < len(node):
            del node[last]
            return True
        parts = parts[:-1]
    return False


def accepted(
    doc: dict[str, Any], draw_stats: Draw | None = None, limit: int = 60
) -> dict[str, Any] | None:
    """The document once validation accepts it: each field an error names is removed
    (its holder when it is missing), until none is left; None if it cannot be."""
    kind = doc["kind"]
    for attempt in range(limit):
        checked = check_document(doc, "generated")
        errors = checked.errors
        if not errors:
            if draw_stats is not None:
                draw_stats.count(kind, attempt == 0, True)
            return doc
        parts = _parse(errors[0].path)
        if errors[0].message == "required field is missing" and parts:
            parts = parts[:-1]  # the holder of what is missing
        if not _drop(doc, parts):
            break
    if draw_stats is not None:
        draw_stats.count(kind, False, False)
    return None
