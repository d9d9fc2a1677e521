"""Two Gateways whose TLS servers claim one SNI name on one port: the older serves it,
the younger is reported, and the listener has one chain for the name (never two, which
Envoy would refuse)."""

from __future__ import annotations

import json

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from pilot.model import MeshSnapshot, Proxy
from pilot.xds.context import PushContext
from pilot.xds.lds import ListenerGenerator
from pilot.xds.rds import RouteGenerator
from tests.pilot.fixtures import instance
from tests.pilot.test_conflicts import resources

SDS = ("127.0.0.1:15013", "/token", "/root.pem")
GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 8443, name: https, protocol: HTTPS}}
    hosts: [shop.example.com]
    tls: {{mode: SIMPLE, credentialName: {name}-cert}}
---
"""


def test_the_older_gateway_serves_a_contested_sni_name() -> None:
    snap = MeshSnapshot.build(
        1,
        {"reviews": (instance("reviews", 1),)},
        resources(GATEWAY.format(name="young") + GATEWAY.format(name="old"), 9, 4),
    )
    assert [str(c) for c in snap.conflicts] == [
        "SNI shop.example.com on gateway port 8443: Gateway/istio-system/young loses to "
        "Gateway/istio-system/old (oldest wins)"
    ]
    proxy = Proxy(
        id="gw",
        service="ingressgateway",
        namespace="istio-system",
        labels={"istio": "ingressgateway"},
        kind="gateway",
        sds=SDS,
    )
    (listener,) = ListenerGenerator().generate(PushContext.build(snap), proxy, frozenset(), None)
    chains = json_format.MessageToDict(listener_pb2.Listener.FromString(listener.value_bytes))[
        "filterChains"
    ]
    assert len(chains) == 1
    secrets = json.dumps(chains[0]["transportSocket"])
    assert "kubernetes://old-cert" in secrets and "young-cert" not in secrets


HTTP_GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: ["*/*"]
---
"""
BOUND = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/{gateway}]
  http: [{{route: [{{destination: {{host: reviews}}}}]}}]
---
"""


def test_one_host_on_a_shared_http_port_goes_to_the_oldest_gateways_route() -> None:
    """Plain HTTP servers of two Gateways on one port share a route table: the host is
    routed by the VirtualService bound to the older Gateway, even if that VirtualService
    is the younger one, and the other is reported."""
    text = (
        HTTP_GATEWAY.format(name="old-gw")
        + HTTP_GATEWAY.format(name="young-gw")
        + BOUND.format(name="early", gateway="young-gw")
        + BOUND.format(name="late", gateway="old-gw")
    )
    snap = MeshSnapshot.build(
        1, {"reviews": (instance("reviews", 1),)}, resources(text, 1, 2, 3, 4)
    )
    assert [str(c) for c in snap.conflicts] == [
        "host shop.example.com on gateway port 80: VirtualService/default/early loses to "
        "VirtualService/default/late (oldest wins)"
    ]
    proxy = Proxy(
        id="gw",
        service="ingressgateway",
        namespace="istio-system",
        labels={"istio": "ingressgateway"},
        kind="gateway",
    )
    (table,) = RouteGenerator().generate(
        PushContext.build(snap), proxy, frozenset({"http.80"}), None
    )
    vhosts = route_pb2.RouteConfiguration.FromString(table.value_bytes).virtual_hosts
    owner = [v.name for v in vhosts if "shop.example.com" in v.domains]
    assert owner == ["istio-system/old-gw|default/late:80"]
