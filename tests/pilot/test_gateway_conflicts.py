"""Two Gateways whose TLS servers claim one SNI name on one port: the older serves it,
the younger is reported, and the listener has one chain for the name (never two, which
Envoy would refuse)."""

from __future__ import annotations

import json

from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format

from pilot.model import MeshSnapshot, Proxy
from pilot.xds.context import PushContext
from pilot.xds.lds import ListenerGenerator
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
