"""Plan before apply, for real: `meshctl diff` through Galley and Pilot with real Envoys
listening, nothing stored or sent until the apply; and an apply the real Envoy would
refuse is refused by Envoy's check before anything is stored."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshctl.procs import bin_path
from tests.e2e.harness import Mesh, Workload, eventually

pytestmark = pytest.mark.e2e

SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""
SPLIT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
"""
ROUTE = "outbound|http|default"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    workdir = Path(tmp_path_factory.mktemp("plan"))
    with Mesh.running(workdir, "envoy") as m:
        for version in ("v1", "v2"):  # instances only: the plan needs no traffic
            w = Workload("reviews", f"reviews-{version}", "default", {"version": version})
            m.register(w, check=False)
        for name in ("client-1", "client-2"):  # two sidecars of one service
            w = Workload("client", name, "default", {})
            m.workloads[name] = w
            m.start_sidecar(w, inbound=False)
        m.apply(SUBSETS)
        yield m


ROUTES = "/config_dump?resource=dynamic_route_configs"  # the route tables Envoy has in force


def _routes(w: Workload) -> str:
    return w.admin(ROUTES)


def _shows(w: Workload, path: str, text: str) -> Callable[[], bool]:
    return lambda: text in w.admin(path)


def _diff(mesh: Mesh, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bin_path("meshctl"), "diff", "-f", "-", *mesh.galley_args(), *args],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _galley(
    mesh: Mesh, method: str, path: str, body: str | None = None
) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{mesh.galley_http}{path}",
        data=body.encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/yaml", "Authorization": f"Bearer {mesh.token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


VS = "/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews"
DR = "/apis/networking.istio.io/v1/namespaces/default/destinationrules/reviews"


def test_diff_shows_the_route_change_grouped_and_stores_nothing(mesh: Mesh) -> None:
    clients = [mesh.workloads["client-1"], mesh.workloads["client-2"]]
    # Both sidecars have the subsets' clusters: the DestinationRule is on the wire.
    for w in clients:
        eventually(_shows(w, "/clusters", "|v2|reviews"), 30, what="subsets on the wire")
    before = [_routes(w) for w in clients]
    assert "weightedClusters" not in before[0] and "weighted_clusters" not in before[0]

    out = _diff(mesh, SPLIT)
    assert out.returncode == 1, out.stderr + out.stdout
    assert "2 of 2 connected proxies would change (1 group)" in out.stdout
    assert "2 sidecars of client (default): client-1, client-2" in out.stdout
    assert f"rds ~ {ROUTE}" in out.stdout
    lines = out.stdout.splitlines()
    assert any(line.startswith("+") and '"weight": 90' in line for line in lines), out.stdout
    # The subsets' clusters are there already: only the route table changes.
    assert not [line for line in lines if line.startswith(("  cds", "  eds", "  lds"))]
    assert out.stdout.rstrip().endswith("Envoy: accepted"), out.stdout

    # Nothing stored, nothing sent.
    assert _galley(mesh, "GET", VS)[0] == 404
    assert [_routes(w) for w in clients] == before

    # Bad input: clear errors, exit 2.
    unknown = _diff(mesh, SPLIT, "--proxy=nobody")
    assert unknown.returncode == 2 and "no Pilot serves a proxy 'nobody'" in unknown.stderr
    broken = _diff(mesh, "kind: [")
    assert broken.returncode == 2 and "error:" in broken.stderr, broken.stderr
    one = _diff(mesh, SPLIT, "--proxy=client-2", "--stat")
    assert one.returncode == 1 and "1 sidecar of client (default): client-2" in one.stdout

    # Applied, it reaches the wire; planned again, it changes nothing.
    mesh.apply(SPLIT)
    for w in clients:
        eventually(_shows(w, ROUTES, '"weight": 90'), 30, what="the split on the wire")
    again = _diff(mesh, SPLIT)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 of 2 connected proxies would change" in again.stdout


def test_an_apply_envoy_would_refuse_is_refused_and_nothing_stored(
    mesh: Mesh, tmp_path: Path
) -> None:
    """A CA file whose block has a certificate's outer shape but not its contents:
    validation cannot know (the file is the proxies'), Pilot checks only the shape and
    sends it, and every sidecar would NACK the clusters."""
    not_a_cert = tmp_path / "ca.pem"
    shaped = base64.b64encode(bytes.fromhex("300a30030201013000030100")).decode()
    not_a_cert.write_text(f"-----BEGIN CERTIFICATE-----\n{shaped}\n-----END CERTIFICATE-----\n")
    refused = SUBSETS.replace(
        "  subsets:",
        f"  trafficPolicy:\n    tls: {{mode: SIMPLE, caCertificates: {not_a_cert}}}\n  subsets:",
    )
    status, stored = _galley(mesh, "GET", DR)
    assert status == 200
    code, body = _galley(mesh, "POST", "/v1/apply", refused)
    assert code == 422, body
    message = body["error"]["message"]
    assert message.startswith("Envoy refuses the config 2 sidecars of client (default) would")
    assert f"Failed to load trusted CA certificates from {not_a_cert}" in message
    assert message.endswith("nothing was stored")
    # The stored rule is the one before, and so is what the sidecars have.
    assert _galley(mesh, "GET", DR)[1]["metadata"] == stored["metadata"]
    assert str(not_a_cert) not in mesh.workloads["client-1"].admin("/config_dump")
    # The single-resource PUT is checked the same way.
    put = refused.replace(
        "metadata: {name: reviews}",
        f"metadata: {{name: reviews, resourceVersion: '{stored['metadata']['resourceVersion']}'}}",
    )
    assert _galley(mesh, "PUT", DR, put)[0] == 422
    # meshctl diff says so too, with Envoy's error, exit 2.
    out = _diff(mesh, refused)
    assert out.returncode == 2
    assert "Envoy: refused: 2 sidecars of client (default): Failed to load" in out.stdout
