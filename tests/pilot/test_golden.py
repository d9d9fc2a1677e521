"""Golden files for the Envoy config Pilot generates (update: pytest --update-golden)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from api.resources import Resource, check_text
from pilot.http import _MESSAGES
from pilot.model import MeshSnapshot
from pilot.networking.names import INBOUND_AUTH_FILTERS
from pilot.xds.cds import ClusterGenerator
from pilot.xds.context import PushContext
from pilot.xds.ecds import ExtensionConfigGenerator
from pilot.xds.eds import EndpointGenerator
from pilot.xds.lds import ListenerGenerator
from pilot.xds.rds import RouteGenerator
from tests.pilot.fixtures import sidecar, snapshot

GOLDEN = Path(__file__).parent / "golden"


CONFIG = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 2s}
      http: {http1MaxPendingRequests: 5, maxRequestsPerConnection: 3}
    outlierDetection: {consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 30s}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash: {httpHeaderName: x-user}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match:
    - headers: {end-user: {exact: jason}}
      uri: {prefix: /api}
    fault:
      delay: {fixedDelay: 2s, percentage: {value: 10}}
    route:
    - destination: {host: reviews, subset: v2}
  - retries: {attempts: 3, retryOn: "5xx,503", perTryTimeout: 1s}
    timeout: 4s
    mirror: {host: ratings.backend.svc.cluster.local}
    mirrorPercentage: {value: 25}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 20
"""


def _config() -> list[Resource]:
    return [c.resource for c in check_text(CONFIG, "golden.yaml") if c.resource is not None]


def _render(namespace: str, with_config: bool = False) -> dict[str, list[object]]:
    snap = snapshot()
    if with_config:
        snap = MeshSnapshot.build(
            1,
            {
                "reviews": tuple(
                    snap.services[k].instances[0] for k in snap.services if k.name == "reviews"
                )
                + tuple(
                    snap.services[k].instances[1] for k in snap.services if k.name == "reviews"
                ),
                "ratings": tuple(
                    i
                    for k, svc in snap.services.items()
                    if k.name == "ratings"
                    for i in svc.instances
                ),
            },
            _config(),
        )
    ctx = PushContext.build(snap)
    proxy = sidecar(namespace)
    out: dict[str, list[object]] = {}
    for gen, names in (
        (ClusterGenerator(), frozenset()),
        (EndpointGenerator(), frozenset(ctx.assignments)),
        (ListenerGenerator(), frozenset()),
        (ExtensionConfigGenerator(), frozenset(INBOUND_AUTH_FILTERS)),
        (RouteGenerator(), frozenset({f"outbound|http|{namespace}"})),
    ):
        message = _MESSAGES[gen.type_url]
        out[gen.type_url.rsplit(".", 1)[1]] = [
            json_format.MessageToDict(message.FromString(r.value_bytes))
            for r in gen.generate(ctx, proxy, names, None)
        ]
    return out


@pytest.mark.parametrize(
    ("namespace", "with_config"), [("default", False), ("backend", False), ("default", True)]
)
def test_sidecar_config_matches_golden(
    namespace: str, with_config: bool, request: pytest.FixtureRequest
) -> None:
    path = GOLDEN / f"sidecar-{namespace}{'-config' if with_config else ''}.json"
    got = json.dumps(_render(namespace, with_config), indent=2, sort_keys=True) + "\n"
    if request.config.getoption("--update-golden"):
        path.write_text(got)
    assert path.exists(), f"{path} missing: run pytest --update-golden"
    assert got == path.read_text()
