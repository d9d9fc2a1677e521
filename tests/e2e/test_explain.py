"""`meshctl explain` against the wire: what it says a request meets is what the request
through the real sidecars gets.

One shop-like mesh (Consul, Galley, Pilot, Citadel; productpage calling reviews v1/v2
over mTLS) with a VirtualService (header routing to v2, a fault abort, default v1),
an AuthorizationPolicy (DENY /admin, ALLOW GETs from productpage, and /team only to
JWT-holders of the admins group) and a RequestAuthentication. For each request, explain
runs the user's way (`meshctl explain -o json` against Pilot's HTTP address) and the
same request goes through productpage's sidecar: the status must agree, and for
served requests the instance that answered must be the one explain names.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Mesh, Workload, eventually
from tests.e2e.test_authz_attributes import ISSUER, _jwks, token

pytestmark = pytest.mark.e2e

CONFIG = f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - name: jason-to-v2
    match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
  - name: teapot
    match: [{{uri: {{prefix: /fault}}}}]
    fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: reviews, subset: v1}}}}]
  - name: everyone-else
    route: [{{destination: {{host: reviews, subset: v1}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-admin}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  action: DENY
  rules: [{{to: [{{operation: {{paths: ["/admin*"]}}}}]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: shoppers}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/default/sa/productpage]}}}}]
    to: [{{operation: {{methods: [GET], notPaths: ["/team*"]}}}}]
  - to: [{{operation: {{paths: ["/team*"]}}}}]
    when: [{{key: "request.auth.claims[group]", values: [admins]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: '{_jwks()}'
"""


@dataclass(frozen=True)
class Probe:
    path: str = "/"
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    claims: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def shop(
    envoy_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Mesh, Workload]]:
    with Mesh.running(Path(tmp_path_factory.mktemp("explain")), envoy_bin, citadel=True) as mesh:
        front = _add(mesh, "productpage", "productpage-1", "v1", "productpage")
        _add(mesh, "reviews", "reviews-v1", "v1", "reviews")
        _add(mesh, "reviews", "reviews-v2", "v2", "reviews")
        mesh.apply(CONFIG)
        yield mesh, front


def _add(mesh: Mesh, service: str, instance: str, version: str, account: str) -> Workload:
    """A workload labelled app=<service> (policies select it by that), with an identity."""
    w = Workload(
        service,
        instance,
        "default",
        {"app": service, "version": version},
        service_account=account,
        identity_sa=account,
    )
    mesh.workloads[instance] = w
    mesh.start_app(w)
    mesh.start_sidecar(w)
    mesh.register(w)
    return w


def _wire(front: Workload, probe: Probe) -> tuple[int, str | None]:
    """(status, instance that answered) of the request sent the app's way: to its
    sidecar as http_proxy."""
    headers = dict(probe.headers)
    if probe.claims:
        headers["Authorization"] = "Bearer " + token("someone", **probe.claims)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{front.outbound_port}"})
    )
    req = urllib.request.Request(
        f"http://reviews{probe.path}", method=probe.method, headers=headers
    )
    try:
        with opener.open(req, timeout=5) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    try:
        instance = json.loads(body).get("instance")
    except (ValueError, AttributeError):
        instance = None
    return status, instance


def _answers(front: Workload, probe: Probe, expected: tuple[int, str | None]) -> bool:
    status, instance = _wire(front, probe)
    return status == expected[0] and expected[1] in (None, instance)


def _explain(mesh: Mesh, probe: Probe) -> tuple[int, dict[str, Any]]:
    args = [
        "explain",
        f"--pilot-http=127.0.0.1:{mesh.pilot_http}",
        "--from=productpage",
        f"{probe.method} http://reviews{probe.path}",
        "-o",
        "json",
    ]
    args += [f"--header={k}: {v}" for k, v in probe.headers.items()]
    args += [f"--claim={k}={v}" for k, v in probe.claims.items()]
    out = mesh.meshctl(*args)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


# (probe, what the test knows the wire must answer once config is in force)
PROBES = [
    (Probe(headers={"end-user": "jason"}), (200, "reviews-v2")),
    (Probe(), (200, "reviews-v1")),
    (Probe(method="POST"), (403, None)),
    (Probe(path="/admin/users"), (403, None)),
    (Probe(path="/fault"), (418, None)),
    (Probe(path="/team", claims={"group": "admins"}), (200, "reviews-v1")),
    (Probe(path="/team", claims={"group": "guests"}), (403, None)),
    (Probe(path="/team", claims={"iss": "https://elsewhere", "group": "admins"}), (401, None)),
]


def test_explain_agrees_with_the_wire(shop: tuple[Mesh, Workload]) -> None:
    mesh, front = shop
    # Config in force on every sidecar: each probe gets what the config says.
    for probe, expected in PROBES:
        eventually(
            lambda p=probe, e=expected: _answers(front, p, e),  # type: ignore[misc]
            timeout=30,
            what=f"{probe} answered {expected}",
        )
    for probe, _ in PROBES:
        status, instance = _wire(front, probe)
        code, report = _explain(mesh, probe)
        verdict = report["verdict"]
        where = f"{probe}: explain {verdict}, wire {status} from {instance}"
        if status == 200:
            assert (code, verdict["outcome"]) == (0, "allowed"), where
            [dest] = report["destinations"]
            served_by = {e["proxy"] for e in dest["endpoints"]}
            assert served_by == {instance}, where
            assert all(e["tls"] == "mesh mTLS" for e in dest["endpoints"]), where
        else:
            assert code == 1 and verdict["status"] == status, where


def test_explain_names_route_policy_and_identity(shop: tuple[Mesh, Workload]) -> None:
    mesh, front = shop
    eventually(lambda: _wire(front, Probe(path="/admin"))[0] == 403, timeout=30)
    _, report = _explain(mesh, Probe(path="/admin", headers={"end-user": "jason"}))
    assert report["route"]["route"] == "jason-to-v2"
    assert report["route"]["targets"][0]["subset"] == "v2"
    assert report["source"]["principal"] == "spiffe://cluster.local/ns/default/sa/productpage"
    assert report["verdict"]["detail"] == "denied by AuthorizationPolicy default/no-admin rules[0]"
    [endpoint] = report["destinations"][0]["endpoints"]
    assert endpoint["sans"] == ["spiffe://cluster.local/ns/default/sa/reviews"]
    assert endpoint["inbound"]["mtls_mode"] == "PERMISSIVE"
    assert endpoint["inbound"]["connection"] == "mTLS"
    _, fault = _explain(mesh, Probe(path="/fault"))
    assert fault["route"]["route"] == "teapot" and fault["verdict"]["outcome"] == "fault"
    bad = mesh.meshctl(
        "explain", f"--pilot-http=127.0.0.1:{mesh.pilot_http}", "--from=nosuch", "GET http://r/"
    )
    assert bad.returncode == 2 and "no connected proxy or service" in bad.stderr
