"""Gateway API kinds (gateway.networking.k8s.io): registration, the shared types
(durations, references), GatewayClass, Gateway and ReferenceGrant, each rule of the
Gateway API's CRDs refused at its field path. Routes: test_gateway_api_routes.py."""

from __future__ import annotations

from typing import Any

import pytest

from api.gateway_api import common
from api.gateway_api.gateway import GatewaySpec
from api.gateway_api.gateway_class import GatewayClassSpec
from api.gateway_api.reference_grant import ReferenceGrantSpec
from api.resources import GATEWAY_API, check_text, kind_by_plural, kinds
from tests.api.gateway_api_helpers import assert_error, assert_ok, check, errors

# --- registration ----------------------------------------------------------------------


def test_every_kind_is_registered_by_kind_and_group() -> None:
    served = {
        info.kind: (info.versions, info.cluster_scoped)
        for info in kinds().values()
        if info.group == GATEWAY_API
    }
    assert served == {
        "GatewayClass": (("v1beta1", "v1"), True),
        "Gateway": (("v1beta1", "v1"), False),
        "HTTPRoute": (("v1beta1", "v1"), False),
        "GRPCRoute": (("v1",), False),
        "TCPRoute": (("v1alpha2", "v1"), False),
        "TLSRoute": (("v1alpha2", "v1alpha3", "v1"), False),
        "ReferenceGrant": (("v1beta1", "v1"), False),
    }
    assert all(k.spec_required for k in kinds().values() if k.group == GATEWAY_API)
    # Istio's Gateway keeps its name; the Gateway API's is named with its group.
    assert kinds()["Gateway"].group == "networking.istio.io"
    assert kinds()["Gateway.gateway.networking.k8s.io"].spec_model is GatewaySpec
    assert kind_by_plural("gateways") is kinds()["Gateway"]
    assert kind_by_plural("gateways", GATEWAY_API) is kinds()["Gateway.gateway.networking.k8s.io"]


def test_spec_is_required_and_status_is_ignored() -> None:
    assert_error(check("Gateway", None), "spec", "required")
    checked = check(
        "GatewayClass",
        {"controllerName": "istio.io/gateway-controller"},
        status={"conditions": [{"type": "Accepted", "status": "True"}]},
    )
    assert_ok(checked)


def test_an_unserved_version_is_refused() -> None:
    assert_error(check("GRPCRoute", {}, version="v1alpha2"), "apiVersion", "served as")
    assert_error(check("Gateway", GATEWAY_SPEC, version="v1alpha2"), "apiVersion")


# --- durations (GEP-2257) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("1h", 3600.0),
        ("10s", 10.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1h1m1s1ms", 3661.001),
        ("99999ms", 99.999),
        ("1s1s", 2.0),  # as Go's time.ParseDuration sums them
    ],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert common.duration_seconds(text) == pytest.approx(seconds)
    assert common.duration(text) is None


@pytest.mark.parametrize(
    "text", ["", "1", "1.5s", "-1s", "1us", "1ns", "100000s", "1h1m1s1ms1h", " 1s", "1s\n", "1S"]
)
def test_invalid_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid Gateway API duration"):
        common.duration_seconds(text)
    assert "invalid duration" in (common.duration(text) or "")


def test_route_version_comes_from_the_caller() -> None:
    assert common.route_version({"version": "v1alpha2"}) == "v1alpha2"
    assert common.route_version({"apiVersion": f"{GATEWAY_API}/v1"}) == "v1"
    assert common.route_version({"name": "x"}) is None


@pytest.mark.parametrize(
    ("check_name", "value", "ok"),
    [
        ("hostname", "*.example.com", True),
        ("hostname", "foo.example.com", True),
        ("hostname", "*", False),
        ("hostname", "Foo.com", False),
        ("hostname", "foo.*.com", False),
        ("hostname", "a" * 253, True),
        ("hostname", "a" * 254, False),
        ("precise_hostname", "*.example.com", False),
        ("section_name", "https-443.a", True),
        ("section_name", "Bad_Name", False),
        ("group_name", "", True),
        ("group_name", "example.com", True),
        ("group_name", "Example.com", False),
        ("kind_name", "Service", True),
        ("kind_name", "9Service", False),
        ("kind_name", "S" * 64, False),
        ("namespace_name", "istio-system", True),
        ("namespace_name", "a" * 64, False),
        ("header_name", "X-Request-Id", True),
        ("header_name", "bad header", False),
        ("header_name", ":authority", False),
    ],
)
def test_names(check_name: str, value: str, ok: bool) -> None:
    assert (getattr(common, check_name)(value) is None) is ok


# --- GatewayClass ----------------------------------------------------------------------

GATEWAY_CLASS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: mesh-gateways
  namespace: ignored
spec:
  controllerName: istio.io/gateway-controller
  description: The mesh's ingress gateways
  parametersRef:
    group: ""
    kind: ConfigMap
    name: gateway-options
    namespace: istio-system
"""


def test_gateway_class_is_accepted_and_cluster_scoped() -> None:
    for version in ("v1", "v1beta1"):
        (checked,) = check_text(GATEWAY_CLASS.replace("/v1\n", f"/{version}\n"), "gc.yaml")
        assert_ok(checked)
        assert checked.resource is not None
        assert checked.resource.namespace == ""
        spec = checked.resource.spec_as(GatewayClassSpec)
        assert spec.controller_name == "istio.io/gateway-controller"
        assert spec.parameters_ref is not None and spec.parameters_ref.kind == "ConfigMap"


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({}, "spec.controllerName", "required"),
        ({"controllerName": ""}, "spec.controllerName", "empty"),
        ({"controllerName": "example"}, "spec.controllerName", "DOMAIN/PATH"),
        ({"controllerName": "Example.com/gw"}, "spec.controllerName", "DOMAIN/PATH"),
        ({"controllerName": "example.com/" + "g" * 242}, "spec.controllerName", "at most 253"),
        ({"controllerName": "a.io/b", "description": "d" * 65}, "spec.description", "at most 64"),
        ({"controllerName": "a.io/b", "foo": 1}, "spec.foo", "unknown field"),
        (
            {"controllerName": "a.io/b", "parametersRef": {"group": "", "kind": "ConfigMap"}},
            "spec.parametersRef.name",
            "required",
        ),
        (
            {"controllerName": "a.io/b", "parametersRef": {"group": "", "kind": "9", "name": "p"}},
            "spec.parametersRef.kind",
            "not a valid kind",
        ),
        (
            {
                "controllerName": "a.io/b",
                "parametersRef": {"group": "", "kind": "C", "name": "p", "namespace": "Bad"},
            },
            "spec.parametersRef.namespace",
            "namespace",
        ),
    ],
)
def test_gateway_class_rules(spec: dict[str, Any], path: str, fragment: str) -> None:
    assert_error(check("GatewayClass", spec), path, fragment)


def test_gateway_class_boundaries() -> None:
    spec = {"controllerName": "example.com/" + "g" * 241, "description": "d" * 64}
    assert_ok(check("GatewayClass", spec))


# --- Gateway ---------------------------------------------------------------------------

GATEWAY_SPEC: dict[str, Any] = {
    "gatewayClassName": "istio",
    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
}

GATEWAYS = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shop-gateway}
spec:
  gatewayClassName: istio
  listeners:
  - name: web
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces: {from: Same}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: public, namespace: edge}
spec:
  gatewayClassName: istio
  listeners:
  - name: plain
    port: 8080
    protocol: HTTP
    allowedRoutes:
      namespaces: {from: All}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shop-waypoint}
spec:
  gatewayClassName: istio-waypoint
  listeners:
  - {name: mesh, port: 15008, protocol: HBONE}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: cross-network, namespace: istio-system}
spec:
  gatewayClassName: istio-east-west
  listeners:
  - name: mesh
    port: 15008
    protocol: HBONE
    tls:
      mode: Terminate
      options:
        gateway.istio.io/tls-terminate-mode: ISTIO_MUTUAL
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: everything, namespace: edge}
spec:
  gatewayClassName: acme-lb
  addresses:
  - value: 192.0.2.10
  - {type: IPAddress, value: "2001:db8::10"}
  - {type: Hostname, value: lb.example.com}
  - {type: example.com/pool, value: "pool one"}
  - {type: NamedAddress, value: reserved-ip}
  infrastructure:
    labels: {team: shop, example.com/tier: edge}
    annotations: {example.com/owner: "Shop team <shop@example.com>"}
    parametersRef: {group: example.com, kind: GatewayConfig, name: large}
  allowedListeners:
    namespaces:
      from: Selector
      selector:
        matchLabels: {listeners: allowed}
        matchExpressions:
        - {key: env, operator: In, values: [prod, staging]}
  tls:
    backend:
      clientCertificateRef: {name: gateway-client-cert}
    frontend:
      default:
        validation:
          caCertificateRefs:
          - {group: "", kind: ConfigMap, name: client-ca}
      perPort:
      - port: 8443
        tls:
          validation:
            mode: AllowInsecureFallback
            caCertificateRefs: [{group: "", kind: ConfigMap, name: other-ca, namespace: certs}]
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    hostname: "*.shop.example.com"
    allowedRoutes:
      kinds: [{kind: HTTPRoute}, {group: gateway.networking.k8s.io, kind: GRPCRoute}]
      namespaces:
        from: Selector
        selector: {matchLabels: {shared-gateway-access: "true"}}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: "*.shop.example.com"
    tls:
      mode: Terminate
      certificateRefs:
      - {kind: Secret, group: "", name: shop-cert}
      - {name: shop-cert-ecdsa, namespace: certs}
  - name: https-api
    port: 443
    protocol: HTTPS
    hostname: api.example.com
    tls:
      certificateRefs: [{name: api-cert}]
  - name: tls-passthrough
    port: 8443
    protocol: TLS
    hostname: db.example.com
    tls: {mode: Passthrough}
    allowedRoutes:
      kinds: [{kind: TLSRoute}]
  - name: tcp
    port: 5432
    protocol: TCP
    allowedRoutes:
      kinds: [{kind: TCPRoute}]
  - name: udp
    port: 53
    protocol: UDP
  - name: custom
    port: 9000
    protocol: example.com/Custom
"""


def test_gateways_are_accepted() -> None:
    checked = check_text(GATEWAYS, "gateways.yaml")
    assert [errors(c) for c in checked] == [[]] * 5
    everything = checked[4].resource
    assert everything is not None
    spec = everything.spec_as(GatewaySpec)
    assert spec.gateway_class_name == "acme-lb"
    https = spec.listeners[1]
    assert (https.name, https.port, https.protocol, https.hostname) == (
        "https",
        443,
        "HTTPS",
        "*.shop.example.com",
    )
    assert https.tls is not None and [r.name for r in https.tls.certificate_refs or []] == [
        "shop-cert",
        "shop-cert-ecdsa",
    ]
    routes = spec.listeners[0].allowed_routes
    assert routes is not None and routes.namespaces is not None
    assert routes.namespaces.from_ == "Selector"
    assert everything.spec.dump()["listeners"][0]["allowedRoutes"]["namespaces"]["from"] == (
        "Selector"
    )


def listeners(*items: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"gatewayClassName": "istio", "listeners": list(items), **spec}


HTTP = {"name": "http", "port": 80, "protocol": "HTTP"}
HTTPS = {
    "name": "https",
    "port": 443,
    "protocol": "HTTPS",
    "tls": {"certificateRefs": [{"name": "c"}]},
}


def with_http(**fields: Any) -> dict[str, Any]:
    return listeners({**HTTP, **fields})


def with_https(**fields: Any) -> dict[str, Any]:
    return listeners({**HTTPS, **fields})


def many(count: int, make: Any) -> list[Any]:
    return [make(i) for i in range(count)]


GATEWAY_CASES = [
    ({"listeners": [HTTP]}, "spec.gatewayClassName", "required"),
    ({**GATEWAY_SPEC, "gatewayClassName": ""}, "spec.gatewayClassName", "empty"),
    ({**GATEWAY_SPEC, "gatewayClassName": "c" * 254}, "spec.gatewayClassName", "at most 253"),
    ({"gatewayClassName": "istio"}, "spec.listeners", "required"),
    (listeners(), "spec.listeners", "at least 1"),
    (
        listeners(*many(65, lambda i: {"name": f"l{i}", "port": 1000 + i, "protocol": "TCP"})),
        "spec.listeners",
        "at most 64",
    ),
    (with_http(name="Web"), "spec.listeners[0].name", "not a valid name"),
    (with_http(name=""), "spec.listeners[0].name", "empty"),
    (with_http(port=0), "spec.listeners[0].port", ">= 1"),
    (with_http(port=65536), "spec.listeners[0].port", "<= 65535"),
    (with_http(port="80"), "spec.listeners[0].port", "must be an integer"),
    (listeners({"name": "http", "port": 80}), "spec.listeners[0].protocol", "required"),
    (with_http(protocol=""), "spec.listeners[0].protocol", "empty"),
    (with_http(protocol="HT TP"), "spec.listeners[0].protocol", "not a valid protocol"),
    (with_http(protocol="P" * 256), "spec.listeners[0].protocol", "at most 255"),
    (with_http(hostname="Shop.example.com"), "spec.listeners[0].hostname", "hostname"),
    (with_http(hostname="shop.*.com"), "spec.listeners[0].hostname", "hostname"),
    (with_http(hostname=""), "spec.listeners[0].hostname", "empty"),
    (with_http(hostname="a" * 254), "spec.listeners[0].hostname", "at most 253"),
    (listeners(HTTP, {**HTTP, "port": 81}), "spec.listeners[1].name", "must be unique"),
    (
        listeners(HTTP, {**HTTP, "name": "other"}),
        "spec.listeners[1]",
        "port, protocol and hostname must be unique",
    ),
    (
        listeners({**HTTP, "hostname": "a.com"}, {**HTTP, "name": "b", "hostname": "a.com"}),
        "spec.listeners[1]",
        "port, protocol and hostname must be unique",
    ),
    (with_http(tls={"mode": "Passthrough"}), "spec.listeners[0].tls", "must not be specified"),
    (
        listeners({"name": "t", "port": 9, "protocol": "TCP", "tls": {"mode": "Passthrough"}}),
        "spec.listeners[0].tls",
        "must not be specified for protocol TCP",
    ),
    (
        listeners({"name": "u", "port": 9, "protocol": "UDP", "tls": {"mode": "Passthrough"}}),
        "spec.listeners[0].tls",
        "must not be specified for protocol UDP",
    ),
    (
        listeners({"name": "t", "port": 9, "protocol": "TCP", "hostname": "a.com"}),
        "spec.listeners[0].hostname",
        "must not be specified for protocol TCP",
    ),
    (
        listeners({"name": "u", "port": 9, "protocol": "UDP", "hostname": "a.com"}),
        "spec.listeners[0].hostname",
        "must not be specified for protocol UDP",
    ),
    (
        listeners({"name": "s", "port": 443, "protocol": "HTTPS"}),
        "spec.listeners[0].tls",
        "required for protocol HTTPS",
    ),
    (
        listeners({"name": "s", "port": 443, "protocol": "TLS"}),
        "spec.listeners[0].tls",
        "required for protocol TLS",
    ),
    (with_https(tls={"mode": "Passthrough"}), "spec.listeners[0].tls.mode", "must be Terminate"),
    (with_https(tls={"mode": "Open"}), "spec.listeners[0].tls.mode", "must be one of"),
    (with_https(tls={}), "spec.listeners[0].tls.certificateRefs", "certificateRefs or options"),
    (
        with_https(tls={"mode": "Terminate", "certificateRefs": []}),
        "spec.listeners[0].tls.certificateRefs",
        "certificateRefs or options",
    ),
    (
        with_https(tls={"certificateRefs": many(65, lambda i: {"name": f"c{i}"})}),
        "spec.listeners[0].tls.certificateRefs",
        "at most 64",
    ),
    (
        with_https(tls={"certificateRefs": [{"kind": "Secret"}]}),
        "spec.listeners[0].tls.certificateRefs[0].name",
        "required",
    ),
    (
        with_https(tls={"certificateRefs": [{"name": "c", "namespace": "Certs"}]}),
        "spec.listeners[0].tls.certificateRefs[0].namespace",
        "namespace",
    ),
    (
        with_https(tls={"certificateRefs": [{"name": "c", "group": "Core"}]}),
        "spec.listeners[0].tls.certificateRefs[0].group",
        "API group",
    ),
    (
        with_https(tls={"options": {f"o{i}": "v" for i in range(17)}}),
        "spec.listeners[0].tls.options",
        "at most 16",
    ),
    (
        with_https(tls={"options": {"o": "v" * 4097}}),
        "spec.listeners[0].tls.options.o",
        "at most 4096",
    ),
    (
        with_http(allowedRoutes={"namespaces": {"from": "Elsewhere"}}),
        "spec.listeners[0].allowedRoutes.namespaces.from",
        "must be one of",
    ),
    (
        with_http(allowedRoutes={"namespaces": {"from": "None"}}),
        "spec.listeners[0].allowedRoutes.namespaces.from",
        "must be one of",
    ),
    (
        with_http(allowedRoutes={"kinds": many(9, lambda i: {"kind": f"K{i}"})}),
        "spec.listeners[0].allowedRoutes.kinds",
        "at most 8",
    ),
    (
        with_http(allowedRoutes={"kinds": [{"kind": "9Route"}]}),
        "spec.listeners[0].allowedRoutes.kinds[0].kind",
        "not a valid kind",
    ),
    (
        with_http(allowedRoutes={"kinds": [{"group": "Bad_Group", "kind": "HTTPRoute"}]}),
        "spec.listeners[0].allowedRoutes.kinds[0].group",
        "API group",
    ),
    (
        with_http(allowedRoutes={"kinds": [{"group": "a.io"}]}),
        "spec.listeners[0].allowedRoutes.kinds[0].kind",
        "required",
    ),
    (with_http(foo=1), "spec.listeners[0].foo", "unknown field"),
    # addresses
    (
        listeners(HTTP, addresses=many(17, lambda i: {"value": f"10.0.0.{i}"})),
        "spec.addresses",
        "at most 16",
    ),
    (listeners(HTTP, addresses=[{"value": "1.2.3"}]), "spec.addresses[0].value", "IPv4 or IPv6"),
    (listeners(HTTP, addresses=[{"value": "lb.example.com"}]), "spec.addresses[0].value", "IPv4"),
    (
        listeners(HTTP, addresses=[{"type": "IPAddress", "value": "256.0.0.1"}]),
        "spec.addresses[0].value",
        "IPv4 or IPv6",
    ),
    (
        listeners(HTTP, addresses=[{"type": "IPAddress", "value": "fe80::1%eth0"}]),
        "spec.addresses[0].value",
        "IPv4 or IPv6",
    ),
    (
        listeners(HTTP, addresses=[{"type": "Hostname", "value": "lb.example.com:80"}]),
        "spec.addresses[0].value",
        "not a valid hostname",
    ),
    (
        listeners(HTTP, addresses=[{"type": "a pool", "value": "x"}]),
        "spec.addresses[0].type",
        "not an address type",
    ),
    (listeners(HTTP, addresses=[{"type": ""}]), "spec.addresses[0].type", "empty"),
    (
        listeners(HTTP, addresses=[{"type": "a.io/p", "value": "v" * 254}]),
        "spec.addresses[0].value",
        "at most 253",
    ),
    (
        listeners(
            HTTP, addresses=[{"value": "10.0.0.1"}, {"type": "IPAddress", "value": "10.0.0.1"}]
        ),
        "spec.addresses[1].value",
        "IPAddress values must be unique",
    ),
    (
        listeners(HTTP, addresses=[{"type": "Hostname", "value": "a.com"}] * 2),
        "spec.addresses[1].value",
        "Hostname values must be unique",
    ),
    # infrastructure
    (
        listeners(HTTP, infrastructure={"labels": {f"l{i}": "v" for i in range(9)}}),
        "spec.infrastructure.labels",
        "at most 8",
    ),
    (
        listeners(HTTP, infrastructure={"labels": {"bad key": "v"}}),
        "spec.infrastructure.labels.bad key",
        "DNS subdomain prefix",
    ),
    (
        listeners(HTTP, infrastructure={"labels": {"Example.com/tier": "v"}}),
        "spec.infrastructure.labels.Example.com/tier",
        "DNS subdomain prefix",
    ),
    (
        listeners(HTTP, infrastructure={"labels": {"tier": "-edge"}}),
        "spec.infrastructure.labels.tier",
        "not a valid label value",
    ),
    (
        listeners(HTTP, infrastructure={"labels": {"tier": "v" * 64}}),
        "spec.infrastructure.labels.tier",
        "at most 63",
    ),
    (
        listeners(HTTP, infrastructure={"annotations": {f"a{i}": "v" for i in range(17)}}),
        "spec.infrastructure.annotations",
        "at most 16",
    ),
    (
        listeners(HTTP, infrastructure={"annotations": {"a" * 253 + "/x": "v"}}),
        "spec.infrastructure.annotations." + "a" * 253 + "/x",
        "shorter than 253",
    ),
    (
        listeners(HTTP, infrastructure={"annotations": {"a": "v" * 4097}}),
        "spec.infrastructure.annotations.a",
        "at most 4096",
    ),
    (
        listeners(HTTP, infrastructure={"parametersRef": {"group": "", "name": "p"}}),
        "spec.infrastructure.parametersRef.kind",
        "required",
    ),
    (
        listeners(HTTP, infrastructure={"parametersRef": {"group": "", "kind": "C", "name": ""}}),
        "spec.infrastructure.parametersRef.name",
        "empty",
    ),
    # allowedListeners, defaultScope
    (
        listeners(HTTP, allowedListeners={"namespaces": {"from": "Nearby"}}),
        "spec.allowedListeners.namespaces.from",
        "must be one of",
    ),
    (listeners(HTTP, defaultScope="Some"), "spec.defaultScope", "must be one of"),
    # tls
    (listeners(HTTP, tls={"frontend": {}}), "spec.tls.frontend.default", "required"),
    (
        listeners(HTTP, tls={"frontend": {"default": {"validation": {}}}}),
        "spec.tls.frontend.default.validation.caCertificateRefs",
        "required",
    ),
    (
        listeners(HTTP, tls={"frontend": {"default": {"validation": {"caCertificateRefs": []}}}}),
        "spec.tls.frontend.default.validation.caCertificateRefs",
        "at least 1",
    ),
    (
        listeners(
            HTTP,
            tls={
                "frontend": {
                    "default": {
                        "validation": {
                            "caCertificateRefs": many(
                                17, lambda i: {"group": "", "kind": "ConfigMap", "name": f"c{i}"}
                            )
                        }
                    }
                }
            },
        ),
        "spec.tls.frontend.default.validation.caCertificateRefs",
        "at most 16",
    ),
    (
        listeners(
            HTTP,
            tls={
                "frontend": {
                    "default": {
                        "validation": {"caCertificateRefs": [{"kind": "ConfigMap", "name": "c"}]}
                    }
                }
            },
        ),
        "spec.tls.frontend.default.validation.caCertificateRefs[0].group",
        "required",
    ),
    (
        listeners(
            HTTP,
            tls={
                "frontend": {
                    "default": {},
                    "perPort": [{"port": 8443, "tls": {}}, {"port": 8443, "tls": {}}],
                }
            },
        ),
        "spec.tls.frontend.perPort[1].port",
        "must be unique",
    ),
    (
        listeners(HTTP, tls={"frontend": {"default": {}, "perPort": [{"port": 0, "tls": {}}]}}),
        "spec.tls.frontend.perPort[0].port",
        ">= 1",
    ),
    (
        listeners(
            HTTP,
            tls={
                "frontend": {
                    "default": {},
                    "perPort": many(65, lambda i: {"port": i + 1, "tls": {}}),
                }
            },
        ),
        "spec.tls.frontend.perPort",
        "at most 64",
    ),
    (
        listeners(HTTP, tls={"frontend": {"default": {}, "perPort": [{"port": 1}]}}),
        "spec.tls.frontend.perPort[0].tls",
        "required",
    ),
    (
        listeners(
            HTTP,
            tls={
                "frontend": {
                    "default": {
                        "validation": {
                            "mode": "AllowAll",
                            "caCertificateRefs": [{"group": "", "kind": "C", "name": "c"}],
                        }
                    }
                }
            },
        ),
        "spec.tls.frontend.default.validation.mode",
        "must be one of",
    ),
    (
        listeners(HTTP, tls={"backend": {"clientCertificateRef": {"name": "c", "kind": "-"}}}),
        "spec.tls.backend.clientCertificateRef.kind",
        "not a valid kind",
    ),
]


@pytest.mark.parametrize(("spec", "path", "fragment"), GATEWAY_CASES)
def test_gateway_rules(spec: dict[str, Any], path: str, fragment: str) -> None:
    assert_error(check("Gateway", spec), path, fragment)


def test_gateway_boundaries_are_accepted() -> None:
    spec = listeners(
        *many(64, lambda i: {"name": f"l{i}", "port": i + 1, "protocol": "TCP"}),
        addresses=many(16, lambda i: {"value": f"10.0.0.{i}"}),
        infrastructure={
            "labels": {f"l{i}": "v" * 63 for i in range(8)},
            "annotations": {f"a{i}": "v" * 4096 for i in range(16)},
        },
    )
    spec["listeners"][63]["port"] = 65535
    assert_ok(check("Gateway", spec))
    tls = {
        "certificateRefs": many(64, lambda i: {"name": f"c{i}"}),
        "options": {f"o{i}": "" for i in range(16)},
    }
    assert_ok(check("Gateway", with_https(tls=tls)))
    # The same port, protocol and hostname with and without a hostname are distinct.
    assert_ok(check("Gateway", listeners(HTTP, {**HTTP, "name": "h", "hostname": "a.com"})))
    # Terminate with options only (Istio's ISTIO_MUTUAL east-west listener).
    assert_ok(check("Gateway", with_https(tls={"options": {"k": "v"}})))
    # Addresses of other types may repeat; a value-less address asks for one.
    addresses = [{"type": "a.io/p", "value": "x"}] * 2 + [{"type": "IPAddress"}, {}]
    assert_ok(check("Gateway", listeners(HTTP, addresses=addresses)))


def test_gateway_errors_are_all_reported() -> None:
    spec = listeners(
        {"name": "a", "port": 443, "protocol": "HTTPS"},
        {"name": "a", "port": 53, "protocol": "UDP", "hostname": "x.com"},
    )
    assert errors(check("Gateway", spec)) == [
        "spec.listeners[0].tls: required for protocol HTTPS",
        "spec.listeners[1].hostname: hostname must not be specified for protocol UDP",
        "spec.listeners[1].name: listener name must be unique within the Gateway (as listeners[0])",
    ]


# --- ReferenceGrant --------------------------------------------------------------------

REFERENCE_GRANTS = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: routes-to-backends, namespace: backends}
spec:
  from:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    namespace: frontends
  - {group: gateway.networking.k8s.io, kind: GRPCRoute, namespace: frontends}
  to:
  - group: ""
    kind: Service
---
apiVersion: gateway.networking.k8s.io/v1
kind: ReferenceGrant
metadata: {name: gateway-to-cert, namespace: certs}
spec:
  from:
  - {group: gateway.networking.k8s.io, kind: Gateway, namespace: edge}
  to:
  - {group: "", kind: Secret, name: shop-cert}
"""


def test_reference_grants_are_accepted() -> None:
    checked = check_text(REFERENCE_GRANTS, "grants.yaml")
    assert [errors(c) for c in checked] == [[], []]
    grant = checked[0].resource
    assert grant is not None
    spec = grant.spec_as(ReferenceGrantSpec)
    assert [f.kind for f in spec.from_] == ["HTTPRoute", "GRPCRoute"]
    assert grant.spec.dump()["from"][0]["namespace"] == "frontends"
    assert spec.to[0].name is None


FROM = {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "web"}
TO = {"group": "", "kind": "Service"}


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"to": [TO]}, "spec.from", "required"),
        ({"from": [FROM]}, "spec.to", "required"),
        ({"from": [], "to": [TO]}, "spec.from", "at least 1"),
        ({"from": [FROM], "to": []}, "spec.to", "at least 1"),
        ({"from": [FROM] * 17, "to": [TO]}, "spec.from", "at most 16"),
        ({"from": [FROM], "to": [TO] * 17}, "spec.to", "at most 16"),
        (
            {"from": [{"group": "", "kind": "HTTPRoute"}], "to": [TO]},
            "spec.from[0].namespace",
            "required",
        ),
        (
            {"from": [{**FROM, "namespace": "Web"}], "to": [TO]},
            "spec.from[0].namespace",
            "namespace",
        ),
        ({"from": [{**FROM, "kind": ""}], "to": [TO]}, "spec.from[0].kind", "empty"),
        ({"from": [{**FROM, "group": "Gateway"}], "to": [TO]}, "spec.from[0].group", "API group"),
        (
            {"from": [{"kind": "HTTPRoute", "namespace": "web"}], "to": [TO]},
            "spec.from[0].group",
            "required",
        ),
        ({"from": [FROM], "to": [{**TO, "name": ""}]}, "spec.to[0].name", "empty"),
        ({"from": [FROM], "to": [{**TO, "name": "n" * 254}]}, "spec.to[0].name", "at most 253"),
        ({"from": [FROM], "to": [{**TO, "kind": "K" * 64}]}, "spec.to[0].kind", "at most 63"),
        ({"from": [FROM], "to": [{"group": ""}]}, "spec.to[0].kind", "required"),
        (
            {"from": [FROM], "to": [{**TO, "namespace": "x"}]},
            "spec.to[0].namespace",
            "unknown field",
        ),
    ],
)
def test_reference_grant_rules(spec: dict[str, Any], path: str, fragment: str) -> None:
    assert_error(check("ReferenceGrant", spec), path, fragment)


def test_reference_grant_boundaries() -> None:
    spec = {"from": [FROM] * 16, "to": [{**TO, "name": "n" * 253, "kind": "K" * 63}] * 16}
    assert_ok(check("ReferenceGrant", spec))


@pytest.mark.parametrize(
    ("selector", "path", "fragment"),
    [
        (None, "spec.listeners[0].allowedRoutes.namespaces.selector", "selects no namespace"),
        (
            {"matchExpressions": [{"key": "team", "operator": "Equals", "values": ["a"]}]},
            "spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].operator",
            "selects nothing",
        ),
        (
            {"matchExpressions": [{"key": "team", "operator": "In"}]},
            "spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].values",
            "needs values",
        ),
        (
            {"matchExpressions": [{"key": "team", "operator": "Exists", "values": ["a"]}]},
            "spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].values",
            "takes no values",
        ),
    ],
)
def test_a_namespace_selector_that_selects_nothing_is_warned_at_its_path(
    selector: dict[str, Any] | None, path: str, fragment: str
) -> None:
    namespaces: dict[str, Any] = {"from": "Selector"}
    if selector is not None:
        namespaces["selector"] = selector
    listener = {
        "name": "http",
        "port": 80,
        "protocol": "HTTP",
        "allowedRoutes": {"namespaces": namespaces},
    }
    checked = check("Gateway", {"gatewayClassName": "istio", "listeners": [listener]})
    assert_ok(checked)  # the CRD accepts it
    found = [w.message for w in checked.warnings if w.path == path]
    assert any(fragment in m for m in found), [str(w) for w in checked.warnings]
